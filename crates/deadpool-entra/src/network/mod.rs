//! The network below the sessions: where the server name points, which sessions are
//! suspect after one of them died, and how long the pool took to recover.
//!
//! Azure's failovers leave the old primary's sessions half-open and move the server's
//! DNS name to the standby; its load balancers drop idle connections silently. The TCP
//! settings (see `config::tcp`) make a dead session fail within seconds; this module
//! makes the pool act on it:
//!
//! - every login resolves the host name first and is pinned to one address, so each
//!   session's address is known ([`NetWatch::login_addrs`]);
//! - a session that dies of a network error (or a login that cannot reach the server)
//!   opens an *incident*: the name is resolved again at once, every session older than
//!   the death is checked with a cheap query before its next checkout, and sessions to
//!   an address the name no longer resolves to are retired (the pool layer acts on
//!   [`NetWatch::addresses`]);
//! - the name is also resolved every [`RESOLVE_EVERY`] so that a planned failover is
//!   followed without any session dying first.
//!
//! Nothing here knows about pools: the pool layer asks and reports.

pub(crate) mod addrs;
pub(crate) mod cause;
pub(crate) mod metrics;

use std::{
    net::IpAddr,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::time::Instant;

pub(crate) use addrs::Target;
pub(crate) use cause::{DeadCause, network_cause};

/// How often the server name is resolved again without a reason. Azure repoints the
/// name at the end of a failover (60 to 120 s); 10 s adds little to that, and one
/// lookup per pool every 10 s costs nothing a server would notice. Google's Cloud SQL
/// connector does the same every 30 s.
pub(crate) const RESOLVE_EVERY: Duration = Duration::from_secs(10);

/// The longest a liveness check of a suspect session may take before the session is
/// dropped. A healthy server answers an empty query in a round trip; a session whose
/// peer vanished never answers.
pub(crate) const LIVENESS_TIMEOUT: Duration = Duration::from_secs(1);

/// Sessions found dead, by cause, and what the pool saw of the network.
#[derive(Default)]
pub(crate) struct NetCounters {
    pub(crate) dead_timeout: AtomicU64,
    pub(crate) dead_reset: AtomicU64,
    pub(crate) dead_liveness_check: AtomicU64,
    pub(crate) dead_other: AtomicU64,
    /// Logins that could not reach the server (any network cause, read-only included).
    pub(crate) logins_unreachable: AtomicU64,
    /// Logins refused because the server was read-only and a writer was asked for.
    pub(crate) logins_read_only: AtomicU64,
    /// Times the name resolved to another set of addresses.
    pub(crate) dns_changes: AtomicU64,
    /// Liveness checks made on suspect sessions.
    pub(crate) liveness_checks: AtomicU64,
}

impl NetCounters {
    fn dead(&self, cause: DeadCause) -> &AtomicU64 {
        match cause {
            DeadCause::Timeout => &self.dead_timeout,
            DeadCause::Reset => &self.dead_reset,
            DeadCause::LivenessCheck => &self.dead_liveness_check,
            DeadCause::ReadOnly | DeadCause::Other => &self.dead_other,
        }
    }
}

#[derive(Default)]
struct State {
    /// The latest confirmed answer for the name (empty before the first).
    addrs: Vec<IpAddr>,
    /// A different answer seen once, waiting for a second one to confirm it.
    pending: Option<Vec<IpAddr>>,
    /// Bumped on every change of `addrs` after the first answer.
    generation: u64,
    resolved_at: Option<Instant>,
    /// Since when sessions die or logins cannot reach the server, with no healthy login
    /// since.
    incident_since: Option<Instant>,
    /// The last incident's length, from its first dead session to its first healthy login.
    last_recovery: Option<Duration>,
    /// When the suspicion epoch was last bumped.
    suspected_at: Option<Instant>,
}

/// The pool's view of the network (see the module docs).
pub(crate) struct NetWatch {
    target: Option<Target>,
    state: Mutex<State>,
    /// Bumped whenever a session dies or a login cannot reach the server: sessions that
    /// logged in before the current value are suspect until checked.
    epoch: AtomicU64,
    /// Every live session has been checked (or logged in) at this epoch or later.
    verified_upto: AtomicU64,
    resolve_wanted: AtomicBool,
    resolve_in_flight: AtomicBool,
    /// How long suspicion lasts for sessions never checked out: by then keepalives have
    /// found every dead idle session.
    lapse: Duration,
    pub(crate) counters: NetCounters,
    metrics: metrics::NetMetrics,
}

impl NetWatch {
    /// The watch for a login configuration (no metrics).
    #[cfg(test)]
    pub(crate) fn new(pg: &tokio_postgres::Config) -> Self {
        Self::with_metrics(pg, metrics::NetMetrics::default())
    }

    /// The watch for a login configuration, reporting to `metrics`.
    pub(crate) fn with_metrics(pg: &tokio_postgres::Config, metrics: metrics::NetMetrics) -> Self {
        Self {
            target: addrs::target_of(pg),
            state: Mutex::default(),
            epoch: AtomicU64::new(0),
            verified_upto: AtomicU64::new(0),
            resolve_wanted: AtomicBool::new(false),
            resolve_in_flight: AtomicBool::new(false),
            lapse: suspicion_lapse(pg),
            counters: NetCounters::default(),
            metrics,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        entra_pg_token::sync::lock(&self.state)
    }

    /// The addresses a login should try, in order (`None`: let tokio-postgres resolve,
    /// because the configuration is not one host name, or the lookup failed and
    /// tokio-postgres will report it).
    pub(crate) async fn login_addrs(&self) -> Option<Vec<IpAddr>> {
        match self.target.as_ref()? {
            Target::Literal(ip) => Some(vec![*ip]),
            Target::Name { host, port } => {
                let found = addrs::resolve(host, *port).await.ok()?;
                if found.is_empty() {
                    return None;
                }
                self.observe(&found, Instant::now());
                Some(found)
            }
        }
    }

    /// Records an answer for the name. A different answer counts as a move only once a
    /// second answer in a row confirms it (the next lookup is asked for at once), so that
    /// a name that answers with one of several addresses at random (DNS round robin) does
    /// not retire sessions on every lookup as often.
    pub(crate) fn observe(&self, found: &[IpAddr], now: Instant) {
        let mut s = self.state();
        s.resolved_at = Some(now);
        if addrs::same_set(&s.addrs, found) {
            s.pending = None;
            return;
        }
        if s.addrs.is_empty() {
            s.addrs = found.to_vec();
            return;
        }
        let confirmed = s
            .pending
            .as_deref()
            .is_some_and(|p| addrs::same_set(p, found));
        if !confirmed {
            s.pending = Some(found.to_vec());
            drop(s);
            self.resolve_wanted.store(true, Ordering::Release);
            return;
        }
        s.pending = None;
        let before = std::mem::replace(&mut s.addrs, found.to_vec());
        s.generation += 1;
        drop(s);
        self.counters.dns_changes.fetch_add(1, Ordering::Relaxed);
        self.metrics.dns_change();
        tracing::warn!(
            target: "deadpool_entra",
            host = self.host().unwrap_or_default(),
            from = %addrs::text(&before),
            to = %addrs::text(found),
            "the server's name now resolves to another address (a failover?): new logins go there, sessions to the old address are retired"
        );
    }

    /// The latest addresses of the name and their generation (`None`: not known, or
    /// nothing to follow).
    pub(crate) fn addresses(&self) -> Option<(u64, Vec<IpAddr>)> {
        let s = self.state();
        (!s.addrs.is_empty()).then(|| (s.generation, s.addrs.clone()))
    }

    fn host(&self) -> Option<&str> {
        match self.target.as_ref()? {
            Target::Name { host, .. } => Some(host),
            Target::Literal(_) => None,
        }
    }

    /// A session to `addr` died of a network error at `now`.
    pub(crate) fn found_dead(&self, addr: Option<IpAddr>, cause: DeadCause, now: Instant) {
        self.counters.dead(cause).fetch_add(1, Ordering::Relaxed);
        self.metrics.dead(cause);
        self.suspect(now);
        tracing::warn!(
            target: "deadpool_entra",
            addr = addr.map(|a| a.to_string()),
            cause = cause.as_str(),
            "a session died of a network error: the name is resolved again and older sessions are checked before use"
        );
    }

    /// A login to `addr` could not reach the server (or reached a read-only one) at `now`.
    pub(crate) fn login_unreachable(&self, addr: Option<IpAddr>, cause: DeadCause, now: Instant) {
        self.counters
            .logins_unreachable
            .fetch_add(1, Ordering::Relaxed);
        if cause == DeadCause::ReadOnly {
            self.counters
                .logins_read_only
                .fetch_add(1, Ordering::Relaxed);
        }
        self.metrics.dead(cause);
        self.suspect(now);
        tracing::debug!(
            target: "deadpool_entra",
            addr = addr.map(|a| a.to_string()),
            cause = cause.as_str(),
            "login could not reach a usable server"
        );
    }

    fn suspect(&self, now: Instant) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.resolve_wanted.store(true, Ordering::Release);
        let mut s = self.state();
        s.incident_since.get_or_insert(now);
        s.suspected_at = Some(now);
    }

    /// Ends the suspicion of epoch `e` at `now` when every live session has proved alive
    /// since (`all_checked`), or when keepalives have had time to find the dead ones
    /// among the sessions nobody checked out.
    pub(crate) fn settle_suspicion(&self, e: u64, all_checked: bool, now: Instant) {
        let lapsed = self
            .state()
            .suspected_at
            .is_some_and(|at| now.saturating_duration_since(at) >= self.lapse);
        if all_checked || lapsed {
            self.verified(e);
        }
    }

    /// A login succeeded at `now`: an open incident ends.
    pub(crate) fn login_ok(&self, now: Instant) {
        let mut s = self.state();
        if let Some(since) = s.incident_since.take() {
            let took = now.saturating_duration_since(since);
            s.last_recovery = Some(took);
            drop(s);
            tracing::info!(
                target: "deadpool_entra",
                recovered_in_secs = took.as_secs_f64(),
                "a login succeeded after sessions died of network errors"
            );
        }
    }

    /// The current suspicion epoch: sessions that logged in (or were checked) before it
    /// are checked before their next checkout.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Whether some session may need a liveness check (two atomic loads: the warm path).
    pub(crate) fn checks_pending(&self) -> bool {
        self.epoch.load(Ordering::Acquire) > self.verified_upto.load(Ordering::Acquire)
    }

    /// Every live session was checked (or logged in) at epoch `e` or later.
    pub(crate) fn verified(&self, e: u64) {
        self.verified_upto.fetch_max(e, Ordering::AcqRel);
    }

    /// Since when an incident is open (`None`: none).
    pub(crate) fn incident_since(&self) -> Option<Instant> {
        self.state().incident_since
    }

    /// The last incident's length, from the first dead session to the first healthy login.
    pub(crate) fn last_recovery(&self) -> Option<Duration> {
        self.state().last_recovery
    }

    /// Starts a lookup of the name in the background when one is wanted (a session
    /// died) or [`RESOLVE_EVERY`] has passed, and none is running.
    pub(crate) fn maybe_resolve(self: &Arc<Self>, now: Instant) {
        let Some(Target::Name { host, port }) = self.target.clone() else {
            return;
        };
        let last = self.state().resolved_at;
        if !resolve_due(last, self.resolve_wanted.load(Ordering::Acquire), now)
            || self.resolve_in_flight.swap(true, Ordering::AcqRel)
        {
            return;
        }
        self.resolve_wanted.store(false, Ordering::Release);
        let me = self.clone();
        tokio::spawn(async move {
            let found = addrs::resolve(&host, port).await;
            match found {
                Ok(a) if !a.is_empty() => me.observe(&a, Instant::now()),
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(target: "deadpool_entra", host = %host, error = %e, "name lookup failed");
                    me.state().resolved_at = Some(Instant::now());
                }
            }
            me.resolve_in_flight.store(false, Ordering::Release);
        });
    }
}

/// How long suspicion lasts: the time keepalives take to find a dead idle session
/// (idle time, then the user timeout or the probes), plus 5 s; two minutes without
/// keepalives.
fn suspicion_lapse(pg: &tokio_postgres::Config) -> Duration {
    if !pg.get_keepalives() {
        return Duration::from_secs(120);
    }
    let probes = match pg.get_tcp_user_timeout() {
        Some(t) if !t.is_zero() => *t,
        _ => pg
            .get_keepalives_interval()
            .unwrap_or(Duration::from_secs(75))
            .saturating_mul(pg.get_keepalives_retries().unwrap_or(9)),
    };
    // Saturating: the settings come from the user and may be absurd.
    pg.get_keepalives_idle()
        .saturating_add(probes)
        .saturating_add(Duration::from_secs(5))
        .min(Duration::from_secs(600))
}

/// Whether to resolve the name again at `now`: asked for, or [`RESOLVE_EVERY`] since the
/// last answer (or never resolved).
pub(crate) fn resolve_due(last: Option<Instant>, wanted: bool, now: Instant) -> bool {
    wanted || last.is_none_or(|l| now.saturating_duration_since(l) >= RESOLVE_EVERY)
}

#[cfg(test)]
mod tests;
