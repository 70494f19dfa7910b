//! Entra's error answers, as the authority sends them: `error`, `AADSTS<code>:
//! description`, `error_codes`, and the trace fields MSAL logs.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::token::now_secs;

/// An Entra error answer: `error`, `AADSTS<code>: description`, `error_codes`.
pub(crate) fn entra_error(
    status: StatusCode,
    error: &str,
    code: u32,
    description: &str,
) -> Response {
    (
        status,
        Json(json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description}"),
            "error_codes": [code],
            "timestamp": crate::entra::ids::local_time_string(now_secs()).replace(".000000", "Z"),
            "trace_id": crate::entra::ids::guid(),
            "correlation_id": crate::entra::ids::guid(),
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        })),
    )
        .into_response()
}
