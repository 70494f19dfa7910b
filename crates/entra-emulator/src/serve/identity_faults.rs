//! The faults both identity endpoints share (the managed identity endpoint and the
//! authority): an outage, latency, injected errors, the rate limit and throttling.

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use crate::state::{Shared, bump};

/// An identity endpoint's error answer: `error` and `error_description`.
pub(crate) fn error_json(status: StatusCode, code: &str, msg: &str) -> Response {
    (
        status,
        Json(json!({"error": code, "error_description": msg})),
    )
        .into_response()
}

/// Faults common to both identity endpoints. `Some(response)` = refused.
pub(crate) async fn identity_faults(shared: &Shared) -> Option<Response> {
    bump(&shared.counters.identity_requests);
    let refuse = |r: Response| {
        bump(&shared.counters.identity_requests_refused);
        Some(r)
    };
    if shared.identity_outage() {
        let mut r = error_json(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "The identity endpoint is down.",
        );
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return refuse(r);
    }
    let latency = shared.identity_latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if let Some(status) = shared.identity_error() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return refuse(error_json(
            status,
            "server_error",
            "The identity endpoint failed (injected fault).",
        ));
    }
    if let Some(wait) = shared.rate_limit.check(std::time::Instant::now()) {
        bump(&shared.counters.identity_requests_rate_limited);
        let mut r = error_json(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            "Too many requests: the rate limit of the identity endpoint was exceeded. Retry later.",
        );
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        return refuse(r);
    }
    if let Some(secs) = shared.identity_throttle() {
        let mut r = error_json(
            StatusCode::TOO_MANY_REQUESTS,
            "throttled",
            "Too many requests. Retry later.",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return refuse(r);
    }
    None
}
