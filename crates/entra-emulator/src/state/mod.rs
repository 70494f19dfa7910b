//! Shared state: faults, counters, the principal registry and the open sessions.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use crate::entra::token::Signer;

const NONE: u64 = u64::MAX;

mod counters;
mod faults;
mod principals;

pub use counters::Counters;
pub(crate) use counters::{AtomicCounters, bump};
pub use faults::{FaultSettings, Faults};
pub(crate) use principals::{Principal, PrincipalKind, Registry, RoleType};

pub(crate) struct SessionTable {
    next: u64,
    /// Bumped by every kill: logins in flight during a kill are dropped too.
    epoch: u64,
    open: HashMap<u64, tokio::task::AbortHandle>,
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
    pub issued: crate::entra::issued::IssuedTokens,
    pub rate_limit: crate::entra::rate_limit::RateLimit,
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
                crate::names::TENANT_ID,
                crate::entra::ids::guid()
            ),
            issued: crate::entra::issued::IssuedTokens::new(token_cache, None),
            rate_limit: crate::entra::rate_limit::RateLimit::default(),
            default_token_cache: token_cache,
            identity_header,
            tenant_id: crate::names::TENANT_ID.to_string(),
            subscription_id: crate::names::SUBSCRIPTION_ID.to_string(),
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
