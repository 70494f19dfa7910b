//! Client assertions signed with an app's certificate (`private_key_jwt`), as
//! `ClientCertificateCredential` sends them: the header's `x5t` (SHA-1) or `x5t#S256`
//! names a certificate registered for the app, whose key must verify the RS256 signature;
//! `iss` and `sub` are the client id, `aud` the token endpoint of the authority the request
//! came to. Refusals carry Entra's codes.

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;

use crate::entra::error_answer::entra_error;
use crate::entra::token::{self, TokenProblem};
use crate::state::Shared;

/// Whether `assertion` is for this module: its issuer is the app itself, or its header
/// names a certificate registered for the app (an app's own assertion with a wrong
/// issuer is then refused as such, not as an unknown federated issuer).
pub(crate) fn is_certificate_assertion(shared: &Shared, client_id: &str, assertion: &str) -> bool {
    let issuer = token::decode_claims(assertion)
        .and_then(|c| c.get("iss").and_then(Value::as_str).map(str::to_owned));
    issuer.as_deref() == Some(client_id)
        || token::decode_header(assertion)
            .and_then(|h| thumbprint(&h))
            .is_some_and(|t| registered_key(shared, client_id, &t).is_some())
}

/// The certificate's thumbprint the header names: `x5t#S256` (SHA-256) or `x5t` (SHA-1),
/// in standard base64 (`azure_identity`) or base64url (MSAL).
fn thumbprint(header: &serde_json::Map<String, Value>) -> Option<Vec<u8>> {
    let value = header
        .get("x5t#S256")
        .or_else(|| header.get("x5t"))
        .and_then(Value::as_str)?;
    STANDARD
        .decode(value)
        .or_else(|_| URL_SAFE_NO_PAD.decode(value.trim_end_matches('=')))
        .ok()
        .filter(|t| !t.is_empty())
}

/// The public key of the certificate of `client_id` with this SHA-1 or SHA-256 thumbprint.
fn registered_key(shared: &Shared, client_id: &str, thumbprint: &[u8]) -> Option<Vec<u8>> {
    let registry = shared.registry.read().unwrap_or_else(|e| e.into_inner());
    registry
        .certificates
        .iter()
        .find(|c| c.client_id == client_id && (c.sha1 == thumbprint || c.sha256 == thumbprint))
        .map(|c| c.public_key.clone())
}

/// `None`: `assertion` is signed by a certificate registered for `client_id` and is meant
/// for `token_endpoint` (the URL of the endpoint the request came to) or its v1 form.
pub(crate) fn check(
    shared: &Shared,
    client_id: &str,
    assertion: &str,
    token_endpoint: &str,
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
    let named = thumbprint(&header).unwrap_or_default();
    let hex: String = named.iter().map(|b| format!("{b:02X}")).collect();
    let key_not_found = |reason: &str| {
        invalid(
            700027,
            &format!(
                "Client assertion contains an invalid signature. [Reason - {reason}, Thumbprint of key used by client: '{hex}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '{client_id}'. Review the documentation at https://docs.microsoft.com/en-us/graph/deployments if you are not using the application you think you are using.]"
            ),
        )
    };
    let Some(public_key) = registered_key(shared, client_id, &named) else {
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
        Err(TokenProblem::Invalid(token::NOT_YET_VALID)) => {
            return invalid(
                700024,
                "Client assertion is not within its valid time range.",
            );
        }
        Err(TokenProblem::Invalid(token::BAD_SIGNATURE)) => {
            return key_not_found(
                "The provided signature value did not match the expected signature value.",
            );
        }
        Err(TokenProblem::Invalid(why)) => {
            return invalid(50027, &format!("JWT token is invalid or malformed: {why}."));
        }
    };
    let text = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or("");
    if text("iss") != client_id || text("sub") != client_id {
        return invalid(
            700021,
            "Client assertion application identifier doesn't match 'client_id' parameter. Review the documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials .",
        );
    }
    // Entra takes the token endpoint it serves, v2 or v1, as the audience.
    let audience = text("aud");
    let v1 = token_endpoint.replace("/oauth2/v2.0/token", "/oauth2/token");
    if audience != token_endpoint && audience != v1 {
        return invalid(
            700023,
            "Client assertion audience claim does not match Realm issuer. Review the documentation at https://docs.microsoft.com/en-us/azure/active-directory/develop/active-directory-certificate-credentials .",
        );
    }
    None
}
