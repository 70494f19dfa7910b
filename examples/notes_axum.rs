//! The notes service for axum: the pool lives in the router's `State`.
//!
//! `GET /healthz` returns the pool's health report (a `SELECT 1` with a timeout plus the
//! token's state) as JSON, with 503 when unhealthy so a load balancer or a Kubernetes
//! probe takes the replica out. `/notes` is a small CRUD resource. `GET /metrics` (when
//! served with a Prometheus recorder) exports the pool's and the token's metrics.

use std::future::Future;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{StatusCode, header::CONTENT_TYPE},
    response::{IntoResponse, Response},
    routing::get,
};
use deadpool_entra::Pool;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::notes::{self, NewNote, NotesError};

/// Builds the application. `Pool` is `Clone` (an `Arc` inside), so it is the state itself.
pub fn router(pool: Pool) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/notes", get(list).post(create))
        .route("/notes/{id}", get(get_one).delete(delete))
        .with_state(pool)
}

/// `GET /metrics`: the process's metrics in Prometheus' text format, from the recorder
/// installed with [`PrometheusBuilder::install_recorder`] (before the pool is built: the
/// pool registers its metrics with the recorder installed then). The pool's are
/// OpenTelemetry's connection-pool metrics (`db_client_connection_count`,
/// `db_client_connection_wait_time`, ...) and its token's (`deadpool_entra_token_*`).
///
/// [`PrometheusBuilder::install_recorder`]: metrics_exporter_prometheus::PrometheusBuilder::install_recorder
pub fn metrics_router(handle: PrometheusHandle) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let text = handle.render();
            async move { ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text) }
        }),
    )
}

/// Serves `router(pool)` (and `/metrics` when given a recorder's handle) on `listener`
/// until `shutdown` resolves, then lets in-flight requests finish. The caller closes the
/// pool afterwards.
pub async fn serve(
    listener: tokio::net::TcpListener,
    pool: Pool,
    metrics: Option<PrometheusHandle>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, pool, metrics, None, shutdown).await
}

/// [`serve`], with more routes merged in (the admin routes).
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    pool: Pool,
    metrics: Option<PrometheusHandle>,
    extra: Option<Router>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut app = router(pool);
    if let Some(h) = metrics {
        app = app.merge(metrics_router(h));
    }
    if let Some(extra) = extra {
        app = app.merge(extra);
    }
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn healthz(State(pool): State<Pool>) -> Response {
    let report = pool.health().await;
    let status = if report.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

async fn create(
    State(pool): State<Pool>,
    Json(new): Json<NewNote>,
) -> Result<impl IntoResponse, ApiError> {
    let note = notes::create(&pool, &new).await?;
    Ok((StatusCode::CREATED, Json(note)))
}

async fn list(State(pool): State<Pool>) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(notes::list(&pool).await?))
}

async fn get_one(
    State(pool): State<Pool>,
    Path(id): Path<i64>,
) -> Result<impl IntoResponse, ApiError> {
    Ok(Json(notes::get(&pool, id).await?))
}

async fn delete(State(pool): State<Pool>, Path(id): Path<i64>) -> Result<StatusCode, ApiError> {
    notes::delete(&pool, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// [`NotesError`] as an HTTP response: 404, 400, 503 or 500 with `{"error": "..."}`.
pub struct ApiError(NotesError);

impl From<NotesError> for ApiError {
    fn from(e: NotesError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self.0 {
            NotesError::NotFound(_) => StatusCode::NOT_FOUND,
            NotesError::Invalid(_) => StatusCode::BAD_REQUEST,
            NotesError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            NotesError::Db(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::warn!(error = %self.0, "request failed");
        }
        (status, Json(json!({ "error": self.0.to_string() }))).into_response()
    }
}
