//! `GET /admin/doctor` for axum: the `deadpool-entra doctor` report as JSON, behind a
//! bearer token, so that an operator can ask a running replica why it cannot log in
//! (with the replica's own environment, identity and network).
//!
//! 200 when the login works, 503 when a check fails, 401 without the right
//! `Authorization: Bearer <ADMIN_TOKEN>`. The report never holds the database token.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode, header::AUTHORIZATION},
    response::{IntoResponse, Response},
    routing::get,
};
use deadpool_entra::doctor::{Options, diagnose_env};

/// The route's state: the admin secret and the environment to diagnose.
#[derive(Clone)]
struct Admin {
    token: Arc<str>,
    env: Arc<Vec<(String, String)>>,
}

/// `/admin/doctor`, answering to `Authorization: Bearer <admin_token>` only, diagnosing
/// the deployment that `env` configures (the process's environment, in a service).
pub fn doctor_router(admin_token: &str, env: Vec<(String, String)>) -> Router {
    Router::new()
        .route("/admin/doctor", get(doctor))
        .with_state(Admin {
            token: admin_token.into(),
            env: Arc::new(env),
        })
}

async fn doctor(State(admin): State<Admin>, headers: HeaderMap) -> Response {
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !same_secret(presented.as_bytes(), admin.token.as_bytes()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let report = diagnose_env(admin.env.iter().cloned(), Options::default()).await;
    let status = if report.login_works {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}

/// Compares two secrets in time that depends on their length only. An empty admin
/// secret matches nothing.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    !b.is_empty() && a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}
