//! The notes service on sqlx: an axum router whose state is a plain `sqlx::PgPool`, built
//! by `sqlx-entra` so that its logins use Entra tokens. A handler does not know.
//!
//! `GET /healthz` runs `SELECT 1` (503 when it fails); `GET /notes` lists, `POST /notes`
//! adds one (`{"body": "..."}`).

use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Deserialize;
use serde_json::json;
use sqlx::PgPool;

/// The table, created if missing (the same as the deadpool examples').
pub const SCHEMA: &str = crate::notes::SCHEMA;

/// The application: `PgPool` is `Clone` (an `Arc` inside), so it is the state itself.
pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/notes", get(list).post(create))
        .with_state(pool)
}

/// Creates the table.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(SCHEMA).execute(pool).await.map(|_| ())
}

async fn healthz(State(pool): State<PgPool>) -> Response {
    match sqlx::query("SELECT 1").execute(&pool).await {
        Ok(_) => Json(json!({"healthy": true})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"healthy": false, "error": e.to_string()})),
        )
            .into_response(),
    }
}

#[derive(Deserialize)]
struct NewNote {
    body: String,
}

async fn list(State(pool): State<PgPool>) -> Response {
    let rows: Result<Vec<(i64, String)>, _> =
        sqlx::query_as("SELECT id, body FROM notes ORDER BY id DESC LIMIT 100")
            .fetch_all(&pool)
            .await;
    match rows {
        Ok(rows) => Json(
            rows.into_iter()
                .map(|(id, body)| json!({"id": id, "body": body}))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(e) => unavailable(e),
    }
}

async fn create(State(pool): State<PgPool>, Json(note): Json<NewNote>) -> Response {
    let row: Result<(i64,), _> =
        sqlx::query_as("INSERT INTO notes (body) VALUES ($1) RETURNING id")
            .bind(&note.body)
            .fetch_one(&pool)
            .await;
    match row {
        Ok((id,)) => (
            StatusCode::CREATED,
            Json(json!({"id": id, "body": note.body})),
        )
            .into_response(),
        Err(e) => unavailable(e),
    }
}

fn unavailable(e: sqlx::Error) -> Response {
    tracing::warn!(error = %e, "query failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"error": "database unavailable"})),
    )
        .into_response()
}
