//! Shared state: faults, counters, the principal registry and the open sessions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::token::Signer;

const NONE: u64 = u64::MAX;

/// Every counter the emulator keeps, as atomics.
#[derive(Default)]
pub(crate) struct AtomicCounters {
    pub tokens_issued_app_service: AtomicU64,
    pub tokens_issued_cli: AtomicU64,
    pub tokens_issued_authority: AtomicU64,
    pub identity_requests: AtomicU64,
    pub identity_requests_refused: AtomicU64,
    pub logins_accepted: AtomicU64,
    pub logins_refused_expired: AtomicU64,
    pub logins_refused_audience: AtomicU64,
    pub logins_refused_signature: AtomicU64,
    pub logins_refused_unknown_role: AtomicU64,
    pub logins_refused_oid_mismatch: AtomicU64,
    pub logins_refused_token_type: AtomicU64,
    pub logins_refused_plaintext: AtomicU64,
    pub logins_refused_bad_password: AtomicU64,
    pub logins_refused_revoked: AtomicU64,
    pub logins_refused_validation: AtomicU64,
    pub identity_requests_rate_limited: AtomicU64,
    pub sessions_killed: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A snapshot of the emulator's counters.
///
/// `expired_token_logins` equals `logins_refused_expired`: an expired token offered at login
/// is the bug a token-aware pool exists to prevent, so it has its own, easy-to-assert name.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counters {
    /// Tokens handed out by the App Service managed identity endpoint.
    pub tokens_issued_app_service: u64,
    /// Tokens handed out through the `az` and `azd` stand-ins.
    pub tokens_issued_cli: u64,
    /// Tokens handed out by the Entra authority's token endpoint (client credentials: a
    /// service principal's secret, or a federated token for workload identity).
    pub tokens_issued_authority: u64,
    /// Tokens newly signed (by either identity endpoint or the admin API); a token served
    /// again from the endpoints' cache is not counted here.
    pub tokens_minted: u64,
    /// Identity answers served from the endpoints' token cache (the same token again).
    pub token_cache_hits: u64,
    /// Identity requests answered 429 by the rate limit (counted in
    /// `identity_requests_refused` too).
    pub identity_requests_rate_limited: u64,
    /// Requests that reached the identity endpoints (managed identity and `az`), refused or not.
    pub identity_requests: u64,
    /// Identity requests refused: faults (error, throttling, outage), bad header, unknown identity,
    /// logged-out CLI.
    pub identity_requests_refused: u64,
    /// Logins the front accepted (token or static password).
    pub logins_accepted: u64,
    /// Logins refused because the token had expired.
    pub logins_refused_expired: u64,
    /// Logins refused because the token's audience was not the database resource.
    pub logins_refused_audience: u64,
    /// Logins refused because the token was malformed or its signature did not verify.
    pub logins_refused_signature: u64,
    /// Logins refused because the role does not exist, or is a user's or a group's role
    /// the token's principal may not log in to.
    pub logins_refused_unknown_role: u64,
    /// Logins refused because the role was created for a service principal (a managed
    /// identity, an app) with another object id than the token's ("Service principal oid
    /// mismatch for role ...").
    pub logins_refused_oid_mismatch: u64,
    /// Logins refused because the token's type does not fit the role's: a user's token for
    /// a service principal's role, or an application's token for a user's role.
    pub logins_refused_token_type: u64,
    /// Connections refused because they did not ask for TLS.
    pub logins_refused_plaintext: u64,
    /// Logins refused because a static password was wrong.
    pub logins_refused_bad_password: u64,
    /// Token logins refused by the `refuse_logins` fault (as if the token had been revoked).
    pub logins_refused_revoked: u64,
    /// Logins refused by the `refuse_issued_tokens` fault: a valid token the server would
    /// not accept ("An error occurred while validating the access token").
    pub logins_refused_validation: u64,
    /// Expired tokens offered at login (same value as `logins_refused_expired`).
    pub expired_token_logins: u64,
    /// Sessions currently passed through to the cluster.
    pub sessions_open: u64,
    /// Sessions ended by `kill_all_sessions`.
    pub sessions_killed: u64,
}

/// The faults currently configured, as the admin API shows and accepts them.
///
/// In `POST /faults` every field is optional; a field that is absent is left unchanged.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct FaultSettings {
    /// Added delay before the identity endpoints answer, in milliseconds.
    pub identity_latency_ms: Option<u64>,
    /// HTTP status the identity endpoints answer with (e.g. 500); 0 clears it.
    pub identity_error_status: Option<u16>,
    /// When set, the identity endpoints answer 429 with this `Retry-After` (seconds); 0 clears it.
    pub identity_throttle_retry_after_secs: Option<u64>,
    /// The identity endpoints are down: new connections are reset.
    pub identity_outage: Option<bool>,
    /// The `az` stand-in answers "Please run 'az login'".
    pub cli_logged_out: Option<bool>,
    /// The front refuses every token login as if the token had been revoked.
    pub refuse_logins: Option<bool>,
    /// Added delay before the front answers a login, in milliseconds.
    pub login_latency_ms: Option<u64>,
    /// Lifetime of newly issued tokens, in seconds.
    pub token_lifetime_secs: Option<u64>,
    /// The identity endpoints serve their cached token again while it has more than the
    /// refresh window left (on unless the emulator was built without it).
    pub token_cache: Option<bool>,
    /// The cache's refresh window in milliseconds; 0: the default (five minutes, or a
    /// twelfth of the token's lifetime when under an hour).
    pub token_cache_window_ms: Option<u64>,
    /// `true`: the next identity request mints a new token whatever the cache holds (as
    /// after a revocation). Reads back as `false` once used.
    pub mint_next: Option<bool>,
    /// The front refuses every token minted so far, though valid ("An error occurred while
    /// validating the access token"); tokens minted later are accepted.
    pub refuse_issued_tokens: Option<bool>,
    /// Identity requests allowed per second (Azure's IMDS allows about 5); more get 429
    /// with `Retry-After`. 0: no limit (the default).
    pub identity_rate_limit_per_sec: Option<u32>,
}

pub(crate) struct SessionTable {
    next: u64,
    /// Bumped by every kill: logins in flight during a kill are dropped too.
    epoch: u64,
    open: HashMap<u64, tokio::task::AbortHandle>,
}

/// A registered Entra ID principal and the PostgreSQL role it maps to.
#[derive(Clone, Debug)]
pub(crate) enum PrincipalKind {
    Identity(crate::ManagedIdentity),
    User {
        upn: String,
        object_id: String,
    },
    App(crate::ServicePrincipal),
    /// An Entra group: its members log in to its role with their own tokens.
    Group {
        object_id: String,
        /// Object ids of the members.
        members: Vec<String>,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct Principal {
    pub kind: PrincipalKind,
}

/// The principal type `pgaadauth_create_principal` records in a role's security label
/// (`aadauth,oid=...,type=...`); Azure checks a token's type against it at login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RoleType {
    /// A user (UPN): only user tokens log in.
    User,
    /// A service principal (an app, a managed identity): only application tokens with
    /// the recorded object id log in.
    Service,
    /// A group: its members log in with their own tokens.
    Group,
}

impl RoleType {
    /// The `type` of the security label.
    pub fn label(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Service => "service",
            Self::Group => "group",
        }
    }
}

impl Principal {
    pub fn object_id(&self) -> &str {
        match &self.kind {
            PrincipalKind::Identity(mi) => &mi.object_id,
            PrincipalKind::User { object_id, .. } => object_id,
            PrincipalKind::App(sp) => &sp.object_id,
            PrincipalKind::Group { object_id, .. } => object_id,
        }
    }

    /// The type its role was created with.
    pub fn role_type(&self) -> RoleType {
        match &self.kind {
            PrincipalKind::Identity(_) | PrincipalKind::App(_) => RoleType::Service,
            PrincipalKind::User { .. } => RoleType::User,
            PrincipalKind::Group { .. } => RoleType::Group,
        }
    }

    /// Whether a token for the principal with object id `oid` logs in to this
    /// principal's role: its own, or a member's of a group.
    pub fn admits(&self, oid: &str) -> bool {
        match &self.kind {
            PrincipalKind::Group { members, .. } => members.iter().any(|m| m == oid),
            _ => self.object_id() == oid,
        }
    }

    /// Who its tokens are for: the claims that name the principal (`None`: a group,
    /// which gets no tokens of its own).
    pub fn subject(&self) -> Option<crate::token::Subject<'_>> {
        Some(match &self.kind {
            PrincipalKind::Identity(mi) => crate::token::Subject {
                object_id: &mi.object_id,
                app_id: &mi.client_id,
                upn: None,
                mi_resource_id: Some(mi.resource_id.as_str()),
            },
            PrincipalKind::User { upn, object_id } => crate::token::Subject {
                object_id,
                app_id: crate::token::AZURE_CLI_APP_ID,
                upn: Some(upn),
                mi_resource_id: None,
            },
            PrincipalKind::App(sp) => crate::token::Subject {
                object_id: &sp.object_id,
                app_id: &sp.client_id,
                upn: None,
                mi_resource_id: None,
            },
            PrincipalKind::Group { .. } => return None,
        })
    }
}

#[derive(Default)]
pub(crate) struct Registry {
    /// Entra principals by name (identity name or UPN); the role has the same name.
    pub principals: HashMap<String, Principal>,
    /// Static-password roles.
    pub passwords: HashMap<String, String>,
    /// Federated identity credentials (workload identity).
    pub federated: Vec<crate::FederatedCredential>,
    /// Certificates registered on apps (service principals).
    pub certificates: Vec<crate::app_certs::RegisteredCertificate>,
}

impl Registry {
    /// The principal (app or managed identity) whose client id is `client_id`, by name.
    pub fn by_client_id(&self, client_id: &str) -> Option<(String, Principal)> {
        self.principals.iter().find_map(|(name, p)| {
            let id = match &p.kind {
                PrincipalKind::Identity(mi) => &mi.client_id,
                PrincipalKind::App(sp) => &sp.client_id,
                PrincipalKind::User { .. } | PrincipalKind::Group { .. } => return None,
            };
            (id == client_id).then(|| (name.clone(), p.clone()))
        })
    }

    pub fn identity_by(
        &self,
        f: impl Fn(&crate::ManagedIdentity) -> bool,
    ) -> Option<crate::ManagedIdentity> {
        self.principals.values().find_map(|p| match &p.kind {
            PrincipalKind::Identity(mi) if f(mi) => Some(mi.clone()),
            _ => None,
        })
    }
}

/// State shared by the front, the HTTP servers and the handles.
pub(crate) struct Shared {
    pub counters: AtomicCounters,
    identity_latency_ms: AtomicU64,
    identity_error_status: AtomicU64,
    identity_throttle_secs: AtomicU64,
    identity_outage: AtomicBool,
    cli_logged_out: AtomicBool,
    refuse_logins: AtomicBool,
    login_latency_ms: AtomicU64,
    token_lifetime_ms: AtomicU64,
    default_token_lifetime_ms: u64,
    sessions: Mutex<SessionTable>,
    pub registry: RwLock<Registry>,
    pub signer: Signer,
    /// The key of the OIDC issuer that signs federated tokens (a Kubernetes cluster's
    /// service account tokens): not Entra's key.
    pub federation: Signer,
    /// That issuer's URL, the `iss` of its tokens.
    pub oidc_issuer: String,
    pub issued: crate::issued::IssuedTokens,
    pub rate_limit: crate::rate_limit::RateLimit,
    default_token_cache: bool,
    pub identity_header: String,
    pub tenant_id: String,
    pub subscription_id: String,
    pub default_identity: String,
    pub default_user: String,
}

impl Shared {
    pub fn new(
        signer: Signer,
        federation: Signer,
        identity_header: String,
        token_lifetime: Duration,
        default_identity: String,
        default_user: String,
        token_cache: bool,
    ) -> Self {
        let ms = duration_ms(token_lifetime);
        Shared {
            counters: AtomicCounters::default(),
            identity_latency_ms: AtomicU64::new(0),
            identity_error_status: AtomicU64::new(NONE),
            identity_throttle_secs: AtomicU64::new(NONE),
            identity_outage: AtomicBool::new(false),
            cli_logged_out: AtomicBool::new(false),
            refuse_logins: AtomicBool::new(false),
            login_latency_ms: AtomicU64::new(0),
            token_lifetime_ms: AtomicU64::new(ms),
            default_token_lifetime_ms: ms,
            sessions: Mutex::new(SessionTable {
                next: 0,
                epoch: 0,
                open: HashMap::new(),
            }),
            registry: RwLock::new(Registry::default()),
            signer,
            federation,
            oidc_issuer: format!(
                "https://oidc.prod-aks.entra-emulator.invalid/{}/{}/",
                crate::TENANT_ID,
                crate::guid()
            ),
            issued: crate::issued::IssuedTokens::new(token_cache, None),
            rate_limit: crate::rate_limit::RateLimit::default(),
            default_token_cache: token_cache,
            identity_header,
            tenant_id: crate::TENANT_ID.to_string(),
            subscription_id: crate::SUBSCRIPTION_ID.to_string(),
            default_identity,
            default_user,
        }
    }

    pub fn identity_latency(&self) -> Duration {
        Duration::from_millis(self.identity_latency_ms.load(Ordering::Relaxed))
    }
    pub fn identity_error(&self) -> Option<u16> {
        let v = self.identity_error_status.load(Ordering::Relaxed);
        (v != NONE).then_some(v as u16)
    }
    pub fn identity_throttle(&self) -> Option<u64> {
        let v = self.identity_throttle_secs.load(Ordering::Relaxed);
        (v != NONE).then_some(v)
    }
    pub fn identity_outage(&self) -> bool {
        self.identity_outage.load(Ordering::Relaxed)
    }
    pub fn cli_logged_out(&self) -> bool {
        self.cli_logged_out.load(Ordering::Relaxed)
    }
    pub fn refuse_logins(&self) -> bool {
        self.refuse_logins.load(Ordering::Relaxed)
    }
    pub fn login_latency(&self) -> Duration {
        Duration::from_millis(self.login_latency_ms.load(Ordering::Relaxed))
    }
    pub fn token_lifetime(&self) -> Duration {
        Duration::from_millis(self.token_lifetime_ms.load(Ordering::Relaxed))
    }

    /// The current kill epoch (taken when a connection is accepted).
    pub fn session_epoch(&self) -> u64 {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .epoch
    }

    /// Register an open session; `None` (and the session is counted as killed) if a kill
    /// happened since the connection was accepted at `epoch`.
    pub fn register_session(&self, handle: tokio::task::AbortHandle, epoch: u64) -> Option<u64> {
        let mut t = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if t.epoch != epoch {
            drop(t);
            handle.abort();
            self.counters
                .sessions_killed
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        t.next += 1;
        let id = t.next;
        t.open.insert(id, handle);
        Some(id)
    }
    pub fn unregister_session(&self, id: u64) {
        let mut t = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        t.open.remove(&id);
    }
    pub fn sessions_open(&self) -> u64 {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .open
            .len() as u64
    }
    pub fn kill_all_sessions(&self) -> usize {
        let drained: Vec<_> = {
            let mut t = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            t.epoch += 1;
            t.open.drain().map(|(_, h)| h).collect()
        };
        for h in &drained {
            h.abort();
        }
        self.counters
            .sessions_killed
            .fetch_add(drained.len() as u64, Ordering::Relaxed);
        drained.len()
    }

    pub fn snapshot(&self) -> Counters {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counters {
            tokens_issued_app_service: l(&c.tokens_issued_app_service),
            tokens_issued_cli: l(&c.tokens_issued_cli),
            tokens_issued_authority: l(&c.tokens_issued_authority),
            tokens_minted: self.issued.minted(),
            token_cache_hits: l(&self.issued.cache_hits),
            identity_requests_rate_limited: l(&c.identity_requests_rate_limited),
            identity_requests: l(&c.identity_requests),
            identity_requests_refused: l(&c.identity_requests_refused),
            logins_accepted: l(&c.logins_accepted),
            logins_refused_expired: l(&c.logins_refused_expired),
            logins_refused_audience: l(&c.logins_refused_audience),
            logins_refused_signature: l(&c.logins_refused_signature),
            logins_refused_unknown_role: l(&c.logins_refused_unknown_role),
            logins_refused_oid_mismatch: l(&c.logins_refused_oid_mismatch),
            logins_refused_token_type: l(&c.logins_refused_token_type),
            logins_refused_plaintext: l(&c.logins_refused_plaintext),
            logins_refused_bad_password: l(&c.logins_refused_bad_password),
            logins_refused_revoked: l(&c.logins_refused_revoked),
            logins_refused_validation: l(&c.logins_refused_validation),
            expired_token_logins: l(&c.logins_refused_expired),
            sessions_open: self.sessions_open(),
            sessions_killed: l(&c.sessions_killed),
        }
    }

    pub fn fault_settings(&self) -> FaultSettings {
        FaultSettings {
            identity_latency_ms: Some(self.identity_latency_ms.load(Ordering::Relaxed)),
            identity_error_status: self.identity_error(),
            identity_throttle_retry_after_secs: self.identity_throttle(),
            identity_outage: Some(self.identity_outage()),
            cli_logged_out: Some(self.cli_logged_out()),
            refuse_logins: Some(self.refuse_logins()),
            login_latency_ms: Some(self.login_latency_ms.load(Ordering::Relaxed)),
            token_lifetime_secs: Some(self.token_lifetime().as_secs()),
            token_cache: Some(self.issued.enabled()),
            token_cache_window_ms: Some(self.issued.window().map(duration_ms).unwrap_or(0)),
            mint_next: Some(false),
            refuse_issued_tokens: Some(self.issued.refusing()),
            identity_rate_limit_per_sec: Some(self.rate_limit.get().unwrap_or(0)),
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX - 1)
}

/// Faults on demand. Every setter acts at once, on every endpoint and on the front.
///
/// Obtained from [`crate::Emulator::faults`]; the admin HTTP API drives the same switches.
#[derive(Clone)]
pub struct Faults {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Faults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Faults")
            .field(&self.shared.fault_settings())
            .finish()
    }
}

impl Faults {
    /// Delay every identity endpoint answer (managed identity and `az`) by `d`.
    pub fn set_identity_latency(&self, d: Duration) {
        self.shared
            .identity_latency_ms
            .store(duration_ms(d), Ordering::Relaxed);
    }
    /// Answer every identity request with this HTTP status (e.g. `Some(500)`); `None` ends it.
    pub fn set_identity_error(&self, status: Option<u16>) {
        let v = status.map(u64::from).unwrap_or(NONE);
        self.shared
            .identity_error_status
            .store(v, Ordering::Relaxed);
    }
    /// While `Some`, answer identity requests with 429 and this `Retry-After` (whole seconds,
    /// rounded up).
    pub fn set_identity_throttle(&self, retry_after: Option<Duration>) {
        let v = retry_after
            .map(|d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
            .unwrap_or(NONE);
        self.shared
            .identity_throttle_secs
            .store(v, Ordering::Relaxed);
    }
    /// Take the identity endpoints down: new connections are accepted and reset at once,
    /// requests on kept-alive connections get 503 with `Connection: close`.
    pub fn set_identity_outage(&self, down: bool) {
        self.shared.identity_outage.store(down, Ordering::Relaxed);
    }
    /// The `az` stand-in fails with "Please run 'az login' to setup account.".
    pub fn set_cli_logged_out(&self, logged_out: bool) {
        self.shared
            .cli_logged_out
            .store(logged_out, Ordering::Relaxed);
    }
    /// The front refuses every token login (SQLSTATE 28000), as if the token had been revoked.
    /// Static-password logins are not affected.
    pub fn set_refuse_logins(&self, refuse: bool) {
        self.shared.refuse_logins.store(refuse, Ordering::Relaxed);
    }
    /// Delay every login decision at the front by `d`.
    pub fn set_login_latency(&self, d: Duration) {
        self.shared
            .login_latency_ms
            .store(duration_ms(d), Ordering::Relaxed);
    }
    /// A failover: drop every open session at once. Returns how many were dropped.
    pub fn kill_all_sessions(&self) -> usize {
        self.shared.kill_all_sessions()
    }
    /// Lifetime of tokens issued from now on (seconds work).
    pub fn set_token_lifetime(&self, d: Duration) {
        self.shared
            .token_lifetime_ms
            .store(duration_ms(d).max(1), Ordering::Relaxed);
    }
    /// The identity endpoints serve their cached token again for the same principal and
    /// resource while it has more than the refresh window left, as Azure's do (`true`, the
    /// default), or mint a new token on every call (`false`: kinder than Azure; for tests
    /// that need a different token per call, which must say why).
    pub fn set_token_cache(&self, on: bool) {
        self.shared.issued.set_enabled(on);
    }
    /// The cache's refresh window: a cached token with less than this left is replaced.
    /// `None`: five minutes, or a twelfth of the token's lifetime when that is under an hour.
    pub fn set_token_cache_window(&self, window: Option<Duration>) {
        self.shared.issued.set_window(window);
    }
    /// The next identity request mints a new token whatever the cache holds, as after a
    /// revocation or a key rotation.
    pub fn mint_next(&self) {
        self.shared.issued.set_mint_next();
    }
    /// While `true`, the front refuses every token minted before the call, though its
    /// signature and `exp` are fine (SQLSTATE 28000, "An error occurred while validating the
    /// access token"): the server's view of the token differs from the client's (clock
    /// skew, a revoked session). The endpoints' cache keeps serving those tokens until their
    /// window, so a client that asks again gets the same refused token unless it forces a
    /// new one ([`Faults::mint_next`]).
    pub fn set_refuse_issued_tokens(&self, refuse: bool) {
        if refuse {
            self.shared.issued.refuse_issued_so_far();
        } else {
            self.shared.issued.accept_all();
        }
    }
    /// At most `per_sec` identity requests per second (a sliding one-second window, as
    /// Azure's instance metadata service limits token requests to about 5 per second);
    /// more are answered 429 with `Retry-After`. `None`: no limit.
    pub fn set_identity_rate_limit(&self, per_sec: Option<u32>) {
        self.shared.rate_limit.set(per_sec.filter(|&n| n > 0));
    }
    /// Clear every fault and restore the token lifetime the emulator started with.
    pub fn clear(&self) {
        self.set_identity_rate_limit(None);
        self.set_refuse_issued_tokens(false);
        self.set_token_cache(self.shared.default_token_cache);
        self.set_token_cache_window(None);
        self.set_identity_latency(Duration::ZERO);
        self.set_identity_error(None);
        self.set_identity_throttle(None);
        self.set_identity_outage(false);
        self.set_cli_logged_out(false);
        self.set_refuse_logins(false);
        self.set_login_latency(Duration::ZERO);
        self.shared
            .token_lifetime_ms
            .store(self.shared.default_token_lifetime_ms, Ordering::Relaxed);
    }
    /// The faults currently set.
    pub fn settings(&self) -> FaultSettings {
        self.shared.fault_settings()
    }
    /// Apply the fields present in `s` (the admin API's `POST /faults`).
    pub fn apply(&self, s: &FaultSettings) {
        if let Some(ms) = s.identity_latency_ms {
            self.set_identity_latency(Duration::from_millis(ms));
        }
        if s.identity_error_status.is_some() {
            self.set_identity_error(s.identity_error_status.filter(|&v| v != 0));
        }
        if let Some(secs) = s.identity_throttle_retry_after_secs {
            self.set_identity_throttle((secs > 0).then(|| Duration::from_secs(secs)));
        }
        if let Some(b) = s.identity_outage {
            self.set_identity_outage(b);
        }
        if let Some(b) = s.cli_logged_out {
            self.set_cli_logged_out(b);
        }
        if let Some(b) = s.refuse_logins {
            self.set_refuse_logins(b);
        }
        if let Some(ms) = s.login_latency_ms {
            self.set_login_latency(Duration::from_millis(ms));
        }
        if let Some(secs) = s.token_lifetime_secs {
            self.set_token_lifetime(Duration::from_secs(secs));
        }
        if let Some(on) = s.token_cache {
            self.set_token_cache(on);
        }
        if let Some(ms) = s.token_cache_window_ms {
            self.set_token_cache_window((ms > 0).then(|| Duration::from_millis(ms)));
        }
        if s.mint_next == Some(true) {
            self.mint_next();
        }
        if let Some(b) = s.refuse_issued_tokens {
            self.set_refuse_issued_tokens(b);
        }
        if let Some(n) = s.identity_rate_limit_per_sec {
            self.set_identity_rate_limit(Some(n));
        }
    }
}
