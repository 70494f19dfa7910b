//! HTTP: the App Service managed identity endpoint, the endpoint behind the `az` and `azd` stand-ins, and the
//! admin API.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};

use super::identity_faults::{error_json, identity_faults};
use crate::entra::issued::Issued;
use crate::entra::token::{self, Subject, now_secs};
use crate::state::{FaultSettings, Faults, PrincipalKind, Shared, bump};
use crate::{admin::Admin, entra::identity::IdentitySpec};

/// A listener that resets new connections while the identity outage fault is on.
pub(crate) struct OutageListener {
    pub inner: TcpListener,
    pub shared: Arc<Shared>,
}

impl axum::serve::Listener for OutageListener {
    type Io = TcpStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((s, a)) => {
                    if self.shared.identity_outage() {
                        bump(&self.shared.counters.identity_requests);
                        bump(&self.shared.counters.identity_requests_refused);
                        // Linger 0 would send RST; a plain close is just as much an outage.
                        drop(s);
                        continue;
                    }
                    let _ = s.set_nodelay(true);
                    return (s, a);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

pub(crate) fn identity_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/msi/token", get(msi_token))
        .route("/cli/token", get(cli_token))
        .route("/cli/login", get(cli_login))
        .route("/cli/account", get(cli_account))
        .route("/cli/logout", get(cli_logout))
        .with_state(shared)
}

/// The token the endpoint's cache holds for this principal and resource while it may be
/// served again, else a newly minted one (then cached).
fn issue_or_reuse(shared: &Shared, resource: &str, subject: &Subject<'_>) -> Issued {
    if let Some(hit) = shared.issued.cached(subject.object_id, resource) {
        return hit;
    }
    let now = now_secs();
    let claims = token::claims(
        &shared.tenant_id,
        resource,
        subject,
        now,
        shared.token_lifetime(),
        &shared.issued.next_uti(),
    );
    let issued = Issued {
        token: shared.signer.sign(&claims),
        exp: claims["exp"].as_u64().unwrap_or(now),
        iat: now,
    };
    shared
        .issued
        .store(subject.object_id, resource, issued.clone());
    issued
}

async fn msi_token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = identity_faults(&shared).await {
        return r;
    }
    let refuse = |r: Response| {
        bump(&shared.counters.identity_requests_refused);
        r
    };
    match headers
        .get("x-identity-header")
        .and_then(|v| v.to_str().ok())
    {
        None => {
            return refuse(error_json(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Required header X-IDENTITY-HEADER is missing.",
            ));
        }
        Some(v) if v != shared.identity_header => {
            return refuse(error_json(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "X-IDENTITY-HEADER does not match.",
            ));
        }
        Some(_) => {}
    }
    if q.get("api-version").map(String::as_str) != Some("2019-08-01") {
        return refuse(error_json(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "api-version 2019-08-01 is required.",
        ));
    }
    let Some(resource) = q.get("resource").filter(|r| !r.is_empty()) else {
        return refuse(error_json(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Required query parameter resource is missing.",
        ));
    };
    let resource = resource
        .strip_suffix("/.default")
        .unwrap_or(resource)
        .to_string();
    let reg = shared.registry.read().unwrap_or_else(|e| e.into_inner());
    let mi = if let Some(id) = q.get("client_id") {
        reg.identity_by(|m| &m.client_id == id)
    } else if let Some(id) = q.get("object_id").or(q.get("principal_id")) {
        reg.identity_by(|m| &m.object_id == id)
    } else if let Some(id) = q.get("mi_res_id").or(q.get("msi_res_id")) {
        reg.identity_by(|m| m.resource_id.eq_ignore_ascii_case(id))
    } else {
        reg.identity_by(|m| m.name == shared.default_identity)
    };
    drop(reg);
    let Some(mi) = mi else {
        return refuse(error_json(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The requested identity has not been assigned to this resource.",
        ));
    };
    let issued = issue_or_reuse(
        &shared,
        &resource,
        &Subject {
            object_id: &mi.object_id,
            app_id: &mi.client_id,
            upn: None,
            // System-assigned: the resource that owns the identity; user-assigned: the
            // identity's own resource id. Azure puts either in `xms_mirid`.
            mi_resource_id: Some(mi.resource_id.as_str()),
        },
    );
    let (tok, exp) = (issued.token, issued.exp);
    bump(&shared.counters.tokens_issued_app_service);
    Json(json!({
        "access_token": tok,
        "expires_on": exp.to_string(),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": mi.client_id,
    }))
    .into_response()
}

async fn cli_token(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Some(r) = identity_faults(&shared).await {
        return r;
    }
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .trim()
            .to_string()
    };
    if shared.cli_logged_out() {
        bump(&shared.counters.identity_requests_refused);
        return (
            StatusCode::UNAUTHORIZED,
            "ERROR: Please run 'az login' to setup account.\n",
        )
            .into_response();
    }
    let (scope, resource) = (h("x-az-scope"), h("x-az-resource"));
    let resource = if !scope.is_empty() {
        scope
            .strip_suffix("/.default")
            .unwrap_or(&scope)
            .to_string()
    } else if !resource.is_empty() {
        resource
    } else {
        "https://management.core.windows.net/".to_string()
    };
    let subscription = h("x-az-subscription");
    if !subscription.is_empty()
        && !subscription.eq_ignore_ascii_case(&shared.subscription_id)
        && !subscription.eq_ignore_ascii_case(SUBSCRIPTION_NAME)
    {
        bump(&shared.counters.identity_requests_refused);
        return (
            StatusCode::BAD_REQUEST,
            format!("ERROR: Subscription '{subscription}' not found. Check the spelling and casing and try again.\n"),
        )
            .into_response();
    }
    let tenant = h("x-az-tenant");
    if !tenant.is_empty() && tenant != shared.tenant_id {
        bump(&shared.counters.identity_requests_refused);
        return (
            StatusCode::BAD_REQUEST,
            format!(
                "ERROR: AADSTS90002: Tenant '{tenant}' not found. The signed-in user is in tenant '{}'.\n",
                shared.tenant_id
            ),
        )
            .into_response();
    }
    let user = shared.default_user.clone();
    let oid = {
        let reg = shared.registry.read().unwrap_or_else(|e| e.into_inner());
        reg.principals.get(&user).map(|p| p.object_id().to_string())
    };
    let Some(oid) = oid else {
        bump(&shared.counters.identity_requests_refused);
        return (
            StatusCode::UNAUTHORIZED,
            "ERROR: Please run 'az login' to setup account.\n",
        )
            .into_response();
    };
    let issued = issue_or_reuse(
        &shared,
        &resource,
        &Subject {
            object_id: &oid,
            app_id: token::AZURE_CLI_APP_ID,
            upn: Some(&user),
            mi_resource_id: None,
        },
    );
    let (tok, exp) = (issued.token, issued.exp);
    bump(&shared.counters.tokens_issued_cli);
    let mut answer = json!({
        "accessToken": tok,
        "expiresOn": crate::entra::ids::local_time_string(exp),
        "expires_on": exp,
        "subscription": shared.subscription_id,
        "tenant": shared.tenant_id,
        "tokenType": "Bearer",
    });
    // Asked for a tenant, Azure CLI answers without a subscription.
    if let (false, Some(m)) = (tenant.is_empty(), answer.as_object_mut()) {
        m.remove("subscription");
    }
    Json(answer).into_response()
}

/// The name of the emulator's one subscription (`az account show`'s `name`).
const SUBSCRIPTION_NAME: &str = "entra-emulator";

/// The signed-in account, as `az account show` prints it.
fn account(shared: &Shared) -> serde_json::Value {
    json!({
        "environmentName": "AzureCloud",
        "homeTenantId": shared.tenant_id,
        "id": shared.subscription_id,
        "isDefault": true,
        "managedByTenants": [],
        "name": SUBSCRIPTION_NAME,
        "state": "Enabled",
        "tenantId": shared.tenant_id,
        "user": {"name": shared.default_user, "type": "user"},
    })
}

/// `az login`: clears the logged-out fault and prints the account, like Azure CLI does.
async fn cli_login(State(shared): State<Arc<Shared>>) -> Response {
    Faults {
        shared: shared.clone(),
    }
    .set_cli_logged_out(false);
    Json(json!([account(&shared)])).into_response()
}

/// `az account show`: the account, or the CLI's "not logged in" refusal.
async fn cli_account(State(shared): State<Arc<Shared>>) -> Response {
    if shared.cli_logged_out() {
        return (
            StatusCode::UNAUTHORIZED,
            "ERROR: Please run 'az login' to setup account.\n",
        )
            .into_response();
    }
    Json(account(&shared)).into_response()
}

/// `az logout`: sets the logged-out fault.
async fn cli_logout(State(shared): State<Arc<Shared>>) -> Response {
    if shared.cli_logged_out() {
        return (
            StatusCode::BAD_REQUEST,
            "ERROR: There are no active accounts.\n",
        )
            .into_response();
    }
    Faults { shared }.set_cli_logged_out(true);
    StatusCode::OK.into_response()
}

// ---------------------------------------------------------------- admin API

pub(crate) fn admin_router(admin: Admin) -> Router {
    Router::new()
        .route("/", get(admin_index))
        .route("/counters", get(counters))
        .route("/faults", get(get_faults).post(set_faults))
        .route("/faults/clear", post(clear_faults))
        .route("/kill-sessions", post(kill_sessions))
        .route("/token-lifetime", post(token_lifetime))
        .route("/principals", get(list_principals).post(add_principal))
        .route("/principals/{name}", delete(remove_principal))
        .route("/tokens", post(issue_token))
        .route("/env", get(env))
        .with_state(admin)
}

async fn admin_index() -> &'static str {
    crate::admin::ADMIN_API_HELP
}

async fn counters(State(a): State<Admin>) -> Response {
    Json(a.shared.snapshot()).into_response()
}

async fn get_faults(State(a): State<Admin>) -> Response {
    Json(a.shared.fault_settings()).into_response()
}

async fn set_faults(State(a): State<Admin>, Json(s): Json<FaultSettings>) -> Response {
    let f = Faults {
        shared: a.shared.clone(),
    };
    f.apply(&s);
    Json(f.settings()).into_response()
}

async fn clear_faults(State(a): State<Admin>) -> Response {
    let f = Faults {
        shared: a.shared.clone(),
    };
    f.clear();
    Json(f.settings()).into_response()
}

async fn kill_sessions(State(a): State<Admin>) -> Response {
    let n = a.shared.kill_all_sessions();
    Json(json!({"killed": n})).into_response()
}

#[derive(Deserialize)]
struct Lifetime {
    seconds: u64,
}

async fn token_lifetime(State(a): State<Admin>, Json(l): Json<Lifetime>) -> Response {
    let f = Faults {
        shared: a.shared.clone(),
    };
    f.set_token_lifetime(Duration::from_secs(l.seconds.max(1)));
    Json(json!({"token_lifetime_secs": l.seconds.max(1)})).into_response()
}

async fn list_principals(State(a): State<Admin>) -> Response {
    let reg = a.shared.registry.read().unwrap_or_else(|e| e.into_inner());
    let mut list: Vec<_> = reg
        .principals
        .iter()
        .map(|(name, p)| match &p.kind {
            PrincipalKind::Identity(mi) => json!({
                "kind": "identity", "name": mi.name, "role": mi.name, "client_id": mi.client_id,
                "object_id": mi.object_id, "resource_id": mi.resource_id, "user_assigned": mi.user_assigned,
            }),
            PrincipalKind::User { upn, object_id } => json!({"kind": "user", "name": upn, "role": upn, "object_id": object_id}),
            PrincipalKind::Group { object_id, members } => json!({
                "kind": "group", "name": name, "role": name, "object_id": object_id,
                "members": members,
            }),
            PrincipalKind::App(sp) => json!({
                "kind": "service_principal", "name": sp.name, "role": sp.name,
                "client_id": sp.client_id, "object_id": sp.object_id,
            }),
        })
        .collect();
    list.extend(
        reg.passwords
            .keys()
            .map(|r| json!({"kind": "password_role", "name": r, "role": r})),
    );
    Json(list).into_response()
}

#[derive(Deserialize)]
struct NewPrincipal {
    kind: String,
    name: String,
    #[serde(default)]
    user_assigned: bool,
    client_id: Option<String>,
    object_id: Option<String>,
    password: Option<String>,
}

async fn add_principal(State(a): State<Admin>, Json(p): Json<NewPrincipal>) -> Response {
    let r = match p.kind.as_str() {
        "identity" => a
            .add_identity(IdentitySpec { name: p.name, user_assigned: p.user_assigned, client_id: p.client_id, object_id: p.object_id })
            .await
            .map(|mi| json!({"kind": "identity", "name": mi.name, "client_id": mi.client_id, "object_id": mi.object_id, "resource_id": mi.resource_id, "user_assigned": mi.user_assigned})),
        "user" => a.add_user(&p.name, p.object_id).await.map(|oid| json!({"kind": "user", "name": p.name, "object_id": oid})),
        "password_role" => match p.password {
            Some(pw) => a.add_password_role(&p.name, &pw).await.map(|()| json!({"kind": "password_role", "name": p.name})),
            None => return error_json(StatusCode::BAD_REQUEST, "invalid_request", "password is required"),
        },
        _ => return error_json(StatusCode::BAD_REQUEST, "invalid_request", "kind must be identity, user or password_role"),
    };
    match r {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e) => error_json(StatusCode::BAD_REQUEST, "failed", &e.to_string()),
    }
}

async fn remove_principal(State(a): State<Admin>, Path(name): Path<String>) -> Response {
    if a.remove_principal(&name) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error_json(StatusCode::NOT_FOUND, "not_found", "no such principal")
    }
}

#[derive(Deserialize)]
struct TokenRequest {
    principal: String,
    resource: Option<String>,
    lifetime_secs: Option<u64>,
    #[serde(default)]
    expired: bool,
}

async fn issue_token(State(a): State<Admin>, Json(t): Json<TokenRequest>) -> Response {
    let resource = t
        .resource
        .unwrap_or_else(|| crate::postgres::front::OSSRDBMS_RESOURCE.to_string());
    let tok = if t.expired {
        a.issue_expired_token(&t.principal)
    } else {
        let lifetime = t
            .lifetime_secs
            .map(Duration::from_secs)
            .unwrap_or_else(|| a.shared.token_lifetime());
        a.issue_token(&t.principal, &resource, lifetime)
    };
    Json(json!({"access_token": tok})).into_response()
}

async fn env(State(a): State<Admin>) -> Response {
    let map: serde_json::Map<String, serde_json::Value> =
        a.env.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    Json(map).into_response()
}
