//! Counters, the stats snapshot and the health report.

use std::sync::atomic::{AtomicU64, Ordering};

pub use entra_pg_token::stats::TokenStats;
pub(crate) use entra_pg_token::stats::secs_since;

use crate::{
    metrics::{LoginOrigin, PoolMetrics, Stopwatch},
    retire::RetireReason,
};

#[derive(Default)]
pub(crate) struct PoolCounters {
    pub(crate) logins_ok: AtomicU64,
    pub(crate) logins_failed: AtomicU64,
    pub(crate) logins_waited_for_token: AtomicU64,
    pub(crate) forced_refresh_retries: AtomicU64,
    pub(crate) same_token_after_refusal: AtomicU64,
    pub(crate) retired_token_age: AtomicU64,
    pub(crate) retired_max_lifetime: AtomicU64,
    pub(crate) retired_broken: AtomicU64,
    pub(crate) retired_address_changed: AtomicU64,
    pub(crate) created_on_checkout: AtomicU64,
    pub(crate) created_in_background: AtomicU64,
    pub(crate) spares_used: AtomicU64,
    pub(crate) logins_on_outgoing_token: AtomicU64,
    pub(crate) probe_logins: AtomicU64,
    pub(crate) checkouts_waited_for_session: AtomicU64,
    /// The same events, for the metrics recorder (feature `metrics`).
    pub(crate) metrics: PoolMetrics,
}

/// Each event is recorded here once, for both readers: the counters behind [`Stats`] and
/// the metrics recorder.
impl PoolCounters {
    /// A login that ended, timed from `took`, made for `origin`.
    pub(crate) fn login_ended(&self, took: &Stopwatch, ok: bool, origin: LoginOrigin) {
        if ok {
            self.logins_ok.fetch_add(1, Ordering::Relaxed);
            let created = match origin {
                LoginOrigin::Checkout => Some(&self.created_on_checkout),
                LoginOrigin::Background => Some(&self.created_in_background),
                // A probe's session is closed at once: no connection was created.
                LoginOrigin::Probe => None,
            };
            if let Some(c) = created {
                c.fetch_add(1, Ordering::Relaxed);
            }
        } else {
            self.logins_failed.fetch_add(1, Ordering::Relaxed);
        }
        self.metrics.login(took, ok, origin);
    }

    /// A spare handed to a checkout.
    pub(crate) fn spare_used(&self) {
        self.spares_used.fetch_add(1, Ordering::Relaxed);
        self.metrics.spare_used();
    }

    pub(crate) fn count_retired(&self, reason: RetireReason, n: u64) {
        let c = match reason {
            RetireReason::TokenAge => &self.retired_token_age,
            RetireReason::MaxLifetime => &self.retired_max_lifetime,
            RetireReason::Broken => &self.retired_broken,
            RetireReason::AddressChanged => &self.retired_address_changed,
        };
        c.fetch_add(n, Ordering::Relaxed);
        self.metrics.retired(reason, n);
    }
}

/// What the pool knows about one connection ([`crate::pool::Pool::connection_info`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// When it logged in: before the checkout for a reused connection or for a spare
    /// logged in by the background, during it when the checkout waited for the login.
    pub logged_in_at: std::time::Instant,
    /// When the token it logged in with expires (`None`: never, or unknown).
    pub token_expires_at: Option<std::time::Instant>,
    /// When it is scheduled to retire (`None`: never). It leaves then only if a
    /// replacement is ready, and otherwise keeps serving.
    pub retires_at: Option<std::time::Instant>,
}

/// The pool's size in a [`Stats`] snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct PoolStatus {
    /// Connections open (idle and in use).
    pub size: usize,
    /// Idle connections.
    pub available: usize,
    /// Spares: connections logged in by the background and not yet handed to a checkout
    /// (not counted in `size`; a checkout that needs a new connection takes one).
    pub spares: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
    /// Maximum size.
    pub max_size: usize,
}

/// A snapshot of the pool's counters; cheap to take.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Stats {
    /// Token state.
    pub token: TokenStats,
    /// Successful logins.
    pub logins_ok: u64,
    /// Failed logins (token failures included).
    pub logins_failed: u64,
    /// Logins that had to wait for a token fetch (no valid token cached).
    pub logins_waited_for_token: u64,
    /// Logins retried with a new token after the server refused the one they used.
    pub forced_refresh_retries: u64,
    /// Refused logins not retried because the token source returned the same token
    /// (the caller got [`crate::error::Error::TokenRefused`]).
    pub same_token_after_refusal: u64,
    /// Connections retired before their token's expiry.
    pub retired_token_age: u64,
    /// Connections retired at their maximum lifetime.
    pub retired_max_lifetime: u64,
    /// Connections found closed (server restart, failover, network) or dead (a
    /// liveness check got no answer).
    pub retired_broken: u64,
    /// Connections retired because the server's name resolves to another address now
    /// (a failover moved it).
    pub retired_address_changed: u64,
    /// Logins made inside a checkout: the caller waited for them.
    pub created_on_checkout: u64,
    /// Logins made in the background (spares for connections about to retire, and the
    /// `min_connections` floor); no caller waited for them.
    pub created_in_background: u64,
    /// Checkouts that needed a new connection and got a spare made in the background
    /// (no login on the checkout).
    pub spares_used: u64,
    /// Logins made with a token past its refresh point (the outgoing token). 0 in steady
    /// state with a healthy identity endpoint: connections are replaced after the
    /// refresh, with the newer token.
    pub logins_on_outgoing_token: u64,
    /// Logins the sweeper tried, while logins were failing, to learn when they work again
    /// (the connection is closed at once).
    pub probe_logins: u64,
    /// Checkouts that found no idle session while logins were failing (or no token was
    /// valid) and waited for one to come back instead of logging in.
    pub checkouts_waited_for_session: u64,
    /// Degraded-but-serving state: sessions kept past their due time, past their token.
    pub degraded: Degraded,
    /// What the pool saw of the network: dead sessions, DNS changes, recovery time.
    pub network: NetworkStats,
    /// Pool size.
    pub pool: PoolStatus,
}

/// What the pool saw of the network ([`Stats::network`]).
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct NetworkStats {
    /// The addresses the server's name resolved to last (empty when the pool does not
    /// follow a name: several hosts, `hostaddr`, a Unix socket, or not resolved yet).
    pub addresses: Vec<String>,
    /// Times the name resolved to another set of addresses.
    pub dns_changes: u64,
    /// Sessions found dead because sent data or keepalive probes went unanswered
    /// (`tcp_user_timeout`, keepalives).
    pub dead_timeout: u64,
    /// Sessions found dead because the connection was reset or closed mid-message.
    pub dead_reset: u64,
    /// Suspect sessions that did not answer a liveness check before a checkout.
    pub dead_liveness_check: u64,
    /// Sessions that ended with another I/O error.
    pub dead_other: u64,
    /// Liveness checks made on suspect sessions (after a sibling died).
    pub liveness_checks: u64,
    /// Logins that could not reach a usable server (timeouts, resets, refusals of the
    /// connection, a read-only server when a writer was asked for).
    pub logins_unreachable: u64,
    /// Of those, logins that reached a read-only server with
    /// `target_session_attrs=read-write` (the session was not kept).
    pub logins_read_only: u64,
    /// Seconds from the first dead session of the last network incident to the first
    /// healthy login after it.
    pub last_recovery_secs: Option<f64>,
}

impl NetworkStats {
    /// The network state of `net`.
    pub(crate) fn of(net: &crate::network::NetWatch) -> Self {
        let c = &net.counters;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NetworkStats {
            addresses: net
                .addresses()
                .map(|(_, a)| a.iter().map(ToString::to_string).collect())
                .unwrap_or_default(),
            dns_changes: n(&c.dns_changes),
            dead_timeout: n(&c.dead_timeout),
            dead_reset: n(&c.dead_reset),
            dead_liveness_check: n(&c.dead_liveness_check),
            dead_other: n(&c.dead_other),
            liveness_checks: n(&c.liveness_checks),
            logins_unreachable: n(&c.logins_unreachable),
            logins_read_only: n(&c.logins_read_only),
            last_recovery_secs: net.last_recovery().map(|d| d.as_secs_f64()),
        }
    }
}

/// Sessions kept in service because no replacement could log in. The server checks a
/// token only at login, so they keep working; they are retired, spread out, once a fresh
/// token works and a login succeeds.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Degraded {
    /// Sessions (pooled connections and spares) due for retirement and still serving.
    pub overdue: usize,
    /// Sessions (pooled connections and spares) whose login token has expired (still
    /// serving).
    pub sessions_past_token_expiry: usize,
    /// Seconds until the oldest token a live session logged in with expires (negative:
    /// expired that long ago).
    pub oldest_session_token_expires_in_secs: Option<f64>,
    /// Seconds since logins began failing (`None`: the last login worked).
    pub logins_failing_for_secs: Option<f64>,
    /// Seconds since token fetches began failing (`None`: the last fetch worked).
    pub identity_failing_for_secs: Option<f64>,
    /// Seconds since a session died of a network error (or a login could not reach the
    /// server) with no healthy login since: a failover or a partition in progress
    /// (`None`: none).
    pub network_failing_for_secs: Option<f64>,
    /// Sessions to an address the server's name no longer resolves to, not yet replaced
    /// (after a failover).
    pub sessions_on_old_address: usize,
}

impl Degraded {
    /// Is anything degraded?
    pub fn is_degraded(&self) -> bool {
        self.overdue > 0
            || self.sessions_past_token_expiry > 0
            || self.sessions_on_old_address > 0
            || self.network_failing_for_secs.is_some()
            || self.logins_failing_for_secs.is_some()
            || self.identity_failing_for_secs.is_some()
    }
}

/// The result of [`crate::pool::Pool::health`], for a `/healthz` endpoint.
///
/// `healthy` follows the database: a pool serving on sessions past their token's expiry
/// (an identity outage, logins refused) is healthy and `degraded`, so that a load balancer
/// does not pull an instance that still serves.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct HealthReport {
    /// `SELECT 1` through a checkout worked (the token state is in `degraded`).
    pub healthy: bool,
    /// Serving, but something needs attention: see `degraded_state`.
    pub degraded: bool,
    /// What is degraded.
    pub degraded_state: Degraded,
    /// `SELECT 1` succeeded within the timeout.
    pub database_ok: bool,
    /// How long checkout plus `SELECT 1` took.
    pub database_latency_ms: Option<f64>,
    /// Seconds until the cached token expires.
    pub token_expires_in_secs: Option<f64>,
    /// The token source in use.
    pub token_source: String,
    /// The last token refresh failure, if the last attempt failed.
    pub last_refresh_error: Option<String>,
    /// Why the check failed.
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::Degraded;

    #[test]
    fn a_network_incident_or_sessions_on_an_old_address_are_degraded() {
        assert!(!Degraded::default().is_degraded());
        let old = Degraded {
            sessions_on_old_address: 1,
            ..Degraded::default()
        };
        assert!(old.is_degraded());
        let incident = Degraded {
            network_failing_for_secs: Some(0.5),
            ..Degraded::default()
        };
        assert!(incident.is_degraded());
    }
}
