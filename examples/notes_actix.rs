//! The notes service for actix-web: the pool is shared with `web::Data`.
//!
//! Same routes and answers as [`crate::notes_axum`]: `GET /healthz` (503 when unhealthy),
//! `POST /notes`, `GET /notes`, `GET /notes/{id}`, `DELETE /notes/{id}`.

use actix_web::{
    App, HttpResponse, HttpServer, ResponseError,
    dev::Server,
    http::StatusCode,
    web::{self, Data, Json, Path},
};
use deadpool_entra::Pool;
use serde_json::json;

use crate::notes::{self, NewNote, NotesError};

/// Registers the routes; the pool must be in the app's data (see [`server`]).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/notes", web::get().to(list))
        .route("/notes", web::post().to(create))
        .route("/notes/{id}", web::get().to(get_one))
        .route("/notes/{id}", web::delete().to(delete));
}

/// Builds the server on an already bound listener (use port 0 in tests).
///
/// `handle_signals`: let actix-web stop gracefully on Ctrl-C/SIGTERM itself (the
/// program), or not (tests stop it through [`Server::handle`]). Awaiting the returned
/// [`Server`] runs it; close the pool once it returns.
pub fn server(
    pool: Pool,
    listener: std::net::TcpListener,
    handle_signals: bool,
) -> std::io::Result<Server> {
    let data = Data::new(pool);
    let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(configure))
        .workers(2)
        .listen(listener)?;
    let server = if handle_signals {
        server
    } else {
        server.disable_signals()
    };
    Ok(server.run())
}

async fn healthz(pool: Data<Pool>) -> HttpResponse {
    let report = pool.health().await;
    if report.healthy {
        HttpResponse::Ok().json(report)
    } else {
        HttpResponse::ServiceUnavailable().json(report)
    }
}

async fn create(pool: Data<Pool>, new: Json<NewNote>) -> Result<HttpResponse, ApiError> {
    let note = notes::create(&pool, &new).await?;
    Ok(HttpResponse::Created().json(note))
}

async fn list(pool: Data<Pool>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(notes::list(&pool).await?))
}

async fn get_one(pool: Data<Pool>, id: Path<i64>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(notes::get(&pool, id.into_inner()).await?))
}

async fn delete(pool: Data<Pool>, id: Path<i64>) -> Result<HttpResponse, ApiError> {
    notes::delete(&pool, id.into_inner()).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// [`NotesError`] as an HTTP response: 404, 400, 503 or 500 with `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError(NotesError);

impl From<NotesError> for ApiError {
    fn from(e: NotesError) -> Self {
        Self(e)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match &self.0 {
            NotesError::NotFound(_) => StatusCode::NOT_FOUND,
            NotesError::Invalid(_) => StatusCode::BAD_REQUEST,
            NotesError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            NotesError::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if self.status_code().is_server_error() {
            tracing::warn!(error = %self.0, "request failed");
        }
        HttpResponse::build(self.status_code()).json(json!({ "error": self.0.to_string() }))
    }
}
