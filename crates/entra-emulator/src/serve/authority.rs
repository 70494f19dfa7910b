//! The Entra authority's token endpoint, `POST /{tenant}/oauth2/v2.0/token` (and the
//! tenant's OpenID configuration, which MSAL-based clients read first), for the
//! client credentials grant as `azure_identity`'s `ClientSecretCredential`,
//! `ClientCertificateCredential` and `WorkloadIdentityCredential` send it: a service
//! principal's secret, a client assertion signed with its certificate
//! ([`crate::cert_assertion`]), or a federated token (client assertion) from a trusted issuer. Served over HTTPS only (the
//! credentials refuse an authority that is not), by [`crate::https`].
//!
//! Like Entra, and unlike the managed identity endpoints, it keeps no token cache: every
//! request mints a token (the credentials cache on their side). Errors are Entra's JSON
//! with its `AADSTS` codes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::entra::error_answer::entra_error;
use crate::entra::token::{self, TokenProblem, now_secs};
use crate::state::{Principal, PrincipalKind, Shared, bump};

/// `client_assertion_type` of a JWT client assertion.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token_endpoint))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            get(openid_configuration),
        )
        .with_state(shared)
}

/// The tenant's OpenID configuration, which MSAL (Python, .NET, Java, JavaScript) reads
/// before its first token request to find the token endpoint (`azure_identity` for Rust
/// does not). Its URLs use the host the client asked for.
async fn openid_configuration(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
) -> Response {
    if tenant != shared.tenant_id {
        return unknown_tenant(&tenant);
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let base = format!("https://{host}/{tenant}");
    Json(json!({
        "token_endpoint": format!("{base}/oauth2/v2.0/token"),
        "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
        "device_authorization_endpoint": format!("{base}/oauth2/v2.0/devicecode"),
        "end_session_endpoint": format!("{base}/oauth2/v2.0/logout"),
        "jwks_uri": format!("{base}/discovery/v2.0/keys"),
        "issuer": format!("{base}/v2.0"),
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "tenant_region_scope": null,
        "cloud_instance_name": "microsoftonline.com",
    }))
    .into_response()
}

fn unknown_tenant(tenant: &str) -> Response {
    entra_error(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        90002,
        &format!(
            "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
        ),
    )
}

async fn token_endpoint(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = super::identity_faults::identity_faults(&shared).await {
        return r;
    }
    // Parsed here, not by axum's `Form`, so that a malformed request gets Entra's answer.
    let form: HashMap<String, String> = url::form_urlencoded::parse(&body).into_owned().collect();
    // This endpoint's URL as the client addressed it: a client assertion's audience.
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let endpoint = format!("https://{host}/{tenant}/oauth2/v2.0/token");
    let answer = client_credentials(&shared, &tenant, &form, &endpoint);
    if answer.status() != StatusCode::OK {
        bump(&shared.counters.identity_requests_refused);
    }
    answer
}

fn client_credentials(
    shared: &Shared,
    tenant: &str,
    form: &HashMap<String, String>,
    endpoint: &str,
) -> Response {
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if tenant != shared.tenant_id {
        return unknown_tenant(tenant);
    }
    if field("grant_type").is_empty() {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'grant_type'.",
        );
    }
    if field("grant_type") != "client_credentials" {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type. This endpoint serves client_credentials only.",
        );
    }
    let scope = field("scope");
    let Some(resource) = scope.strip_suffix("/.default").filter(|r| !r.is_empty()) else {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            &format!(
                "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
            ),
        );
    };
    let client_id = field("client_id");
    let found = shared
        .registry
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .by_client_id(client_id);
    let Some((_, principal)) = found else {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant."
            ),
        );
    };
    let refused = match (form.get("client_secret"), form.get("client_assertion")) {
        (Some(secret), None) => check_secret(&principal, secret),
        (None, Some(assertion)) if field("client_assertion_type") == JWT_BEARER => {
            // An app signs its own assertion with a certificate; any other issuer's token
            // is a federated credential's.
            if super::cert_assertion::is_certificate_assertion(shared, client_id, assertion) {
                super::cert_assertion::check(shared, client_id, assertion, endpoint)
            } else {
                check_federated(shared, client_id, assertion)
            }
        }
        _ => Some(entra_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )),
    };
    if let Some(r) = refused {
        return r;
    }
    let Some(subject) = principal.subject() else {
        return entra_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{tenant}'."
            ),
        );
    };
    let now = now_secs();
    let lifetime = shared.token_lifetime();
    let claims = token::claims(
        &shared.tenant_id,
        resource,
        &subject,
        now,
        lifetime,
        &shared.issued.next_uti(),
    );
    bump(&shared.counters.tokens_issued_authority);
    let expires_in = lifetime.as_secs().max(1);
    Json(json!({
        "token_type": "Bearer",
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "access_token": shared.signer.sign(&claims),
    }))
    .into_response()
}

/// `None`: the secret is the service principal's.
fn check_secret(principal: &Principal, secret: &str) -> Option<Response> {
    match &principal.kind {
        PrincipalKind::App(sp) if sp.secret == secret => None,
        _ => Some(entra_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000215,
            "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app.",
        )),
    }
}

/// `None`: the assertion is a valid token of a federated credential of `client_id`.
fn check_federated(shared: &Shared, client_id: &str, assertion: &str) -> Option<Response> {
    let invalid = |code: u32, what: &str| {
        Some(entra_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            code,
            what,
        ))
    };
    let claims = match shared.federation.verify(assertion) {
        Ok(c) => c,
        Err(TokenProblem::Expired) => {
            return invalid(
                700024,
                "Client assertion is not within its valid time range.",
            );
        }
        Err(TokenProblem::Invalid(why)) => {
            // A token from an issuer this emulator does not know cannot be checked
            // against any key: Entra names the issuer it found no record for.
            let issuer = token::decode_claims(assertion)
                .and_then(|c| c.get("iss").and_then(Value::as_str).map(str::to_owned))
                .unwrap_or_default();
            if !issuer.is_empty() && issuer != shared.oidc_issuer {
                return invalid(
                    700211,
                    &format!(
                        "No matching federated identity record found for presented assertion issuer '{issuer}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion."
                    ),
                );
            }
            return invalid(50027, &format!("JWT token is invalid or malformed: {why}."));
        }
    };
    let text = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or("");
    let registry = shared.registry.read().unwrap_or_else(|e| e.into_inner());
    let mine: Vec<_> = registry
        .federated
        .iter()
        .filter(|f| f.client_id == client_id)
        .collect();
    let issuer = text("iss");
    if !mine.iter().any(|f| f.issuer == issuer) {
        return invalid(
            700211,
            &format!(
                "No matching federated identity record found for presented assertion issuer '{issuer}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion."
            ),
        );
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == crate::entra::apps::FEDERATION_AUDIENCE,
        Some(Value::Array(a)) => a
            .iter()
            .any(|v| v.as_str() == Some(crate::entra::apps::FEDERATION_AUDIENCE)),
        _ => false,
    };
    if !audience_ok {
        return invalid(
            700212,
            &format!(
                "No matching federated identity record found for presented assertion audience. The audience must be '{}'.",
                crate::entra::apps::FEDERATION_AUDIENCE
            ),
        );
    }
    let subject = text("sub");
    if !mine
        .iter()
        .any(|f| f.issuer == issuer && f.subject == subject)
    {
        return invalid(
            700213,
            &format!(
                "No matching federated identity record found for presented assertion subject '{subject}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion."
            ),
        );
    }
    None
}
