//! Client assertions signed with an app's certificate (`private_key_jwt`), as
//! `ClientCertificateCredential` sends them: the header's `x5t` names a certificate
//! registered for the app, whose key must verify the RS256 signature; `iss` and `sub` are
//! the client id, `aud` the token endpoint. Refusals carry Entra's codes.

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;

use crate::authority::entra_error;
use crate::state::Shared;
use crate::token::{self, TokenProblem};

/// `None`: `assertion` is signed by a certificate registered for `client_id` and is meant
/// for the token endpoint of `tenant`.
pub(crate) fn check(
    shared: &Shared,
    tenant: &str,
    client_id: &str,
    assertion: &str,
) -> Option<Response> {
    let invalid = |code: u32, what: &str| {
        Some(entra_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            code,
            what,
        ))
    };
    let Some(header) = token::decode_header(assertion) else {
        return invalid(
            50027,
            "JWT token is invalid or malformed: its header is not valid base64url JSON.",
        );
    };
    let x5t = header.get("x5t").and_then(Value::as_str).unwrap_or("");
    // `azure_identity` sends the thumbprint in standard base64, MSAL in base64url.
    let sha1 = STANDARD
        .decode(x5t)
        .or_else(|_| URL_SAFE_NO_PAD.decode(x5t.trim_end_matches('=')))
        .unwrap_or_default();
    let thumbprint: String = sha1.iter().map(|b| format!("{b:02X}")).collect();
    let key_not_found = |reason: &str| {
        invalid(
            700027,
            &format!(
                "Client assertion contains an invalid signature. [Reason - {reason}, Thumbprint of key used by client: '{thumbprint}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{client_id}'. Review the documentation at https://docs.microsoft.com/en-us/graph/deployments if you are not using the application you think you are using.]"
            ),
        )
    };
    let public_key = {
        let registry = shared.registry.read().unwrap_or_else(|e| e.into_inner());
        registry
            .certificates
            .iter()
            .find(|c| c.client_id == client_id && !sha1.is_empty() && c.sha1 == sha1)
            .map(|c| c.public_key.clone())
    };
    let Some(public_key) = public_key else {
        return key_not_found("The key was not found.");
    };
    let claims = match token::verify_rs256(assertion, &public_key) {
        Ok(claims) => claims,
        Err(TokenProblem::Expired) => {
            return invalid(
                700024,
                "Client assertion is not within its valid time range.",
            );
        }
        Err(TokenProblem::Invalid(_)) => {
            return key_not_found(
                "The provided signature value did not match the expected signature value.",
            );
        }
    };
    let text = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or("");
    if text("iss") != client_id || text("sub") != client_id {
        return invalid(
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials .",
        );
    }
    let audience = text("aud");
    let endpoint = format!("/{tenant}/oauth2/v2.0/token");
    if !audience.starts_with("https://") || !audience.ends_with(&endpoint) {
        return invalid(
            50027,
            &format!(
                "JWT token is invalid or malformed: its audience '{audience}' is not this tenant's token endpoint."
            ),
        );
    }
    None
}
