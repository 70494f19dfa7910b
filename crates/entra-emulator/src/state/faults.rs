//! Faults on demand: the settings as the admin API shows and takes them, and the handle
//! whose setters act at once on every endpoint and on the front.

use std::sync::{Arc, atomic::Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{NONE, Shared, duration_ms};

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

/// Faults on demand. Every setter acts at once, on every endpoint and on the front.
///
/// Obtained from [`crate::emulator::Emulator::faults`]; the admin HTTP API drives the same switches.
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
