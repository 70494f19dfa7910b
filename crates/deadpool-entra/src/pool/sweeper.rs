//! The background sweeper: retires idle connections that are due (when a replacement can
//! log in and is ready), has replacements logged in ahead of need (spares) and keeps the
//! `min_connections` floor; while logins fail and connections are
//! overdue, it tries one login now and then (a probe) to learn when they work again; and
//! it says once when the pool starts serving on sessions past their token's expiry, and
//! once when it stops.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use deadpool_postgres::Connect;
use tokio::time::Instant;

use super::spare_logins;
use crate::{
    connect::EntraConnect,
    retire::{
        RetireReason,
        gate::{self, Decision, Gate, decide},
        spares::{self, Need},
        survey::Survey,
        table::key,
    },
    shared::Shared,
};
use entra_pg_token::token::backoff::backoff;

/// The sweeper's interval: the policy's, but never more than a quarter of the shortest
/// token lifetime seen (and never below 10 ms).
pub(crate) fn sweep_interval(shared: &Shared) -> Duration {
    let mut d = shared.retire.sweep_interval;
    if let Some(l) = shared.cache.shortest_lifetime() {
        d = d.min(l / 4);
    }
    d.max(Duration::from_millis(10))
}

/// How often the sweeper looks whether deadpool's pool was closed behind our back
/// (`pool.inner().close()`), when its sweeps are further apart.
const CLOSE_CHECK: Duration = Duration::from_secs(1);

/// The shortest time between two sweeps that checkouts asked for.
const MIN_NUDGE_GAP: Duration = Duration::from_millis(50);

/// The sweeper's memory between sweeps.
struct SweeperState {
    /// When the last sweep ran.
    last_sweep: Instant,
    /// Warned that sessions serve past their token's expiry, not yet said it ended.
    past_expiry_warned: bool,
    /// Failed probes in a row (sets the backoff).
    probe_failures: u32,
    next_probe: Option<Instant>,
    probe_in_flight: Arc<AtomicBool>,
    /// The generation of the server's addresses the connections were last marked for.
    dns_generation: u64,
}

impl Default for SweeperState {
    fn default() -> Self {
        Self {
            last_sweep: Instant::now(),
            past_expiry_warned: false,
            probe_failures: 0,
            next_probe: None,
            probe_in_flight: Arc::default(),
            dns_generation: 0,
        }
    }
}

/// Starts the background sweeper. It holds only weak references between sweeps and ends
/// when the pool is dropped or closed.
pub(crate) fn spawn_sweeper(shared: &Arc<Shared>, inner: &deadpool_postgres::Pool) {
    let weak_shared = Arc::downgrade(shared);
    let weak_pool = inner.weak();
    let mut closed = shared.closed.subscribe();
    tokio::spawn(async move {
        let mut state = SweeperState::default();
        loop {
            let (interval, nudge) = match weak_shared.upgrade() {
                Some(s) => (sweep_interval(&s), s.sweep_now.clone()),
                None => return,
            };
            tokio::select! {
                // Awake at least every `CLOSE_CHECK`, to notice deadpool's own `close()`.
                _ = tokio::time::sleep(interval.min(CLOSE_CHECK)) => {
                    if state.last_sweep.elapsed() < interval {
                        match (weak_shared.upgrade(), weak_pool.upgrade()) {
                            (Some(s), Some(p)) if p.is_closed() => {
                                s.shut_down();
                                return;
                            }
                            (Some(_), Some(_)) => continue,
                            _ => return,
                        }
                    }
                }
                // A checkout holds a due connection until a spare is ready: sweep now, but
                // not more often than every `MIN_NUDGE_GAP` (while no spare can be made,
                // every checkout of that connection nudges).
                () = nudge.notified() => {
                    tokio::time::sleep(MIN_NUDGE_GAP.saturating_sub(state.last_sweep.elapsed())).await;
                }
                r = closed.changed() => {
                    if r.is_err() || *closed.borrow() { return; }
                    continue;
                }
            }
            state.last_sweep = Instant::now();
            let (Some(shared), Some(inner)) = (weak_shared.upgrade(), weak_pool.upgrade()) else {
                return;
            };
            if inner.is_closed() {
                shared.shut_down();
                return;
            }
            let now = Instant::now();
            shared
                .spares
                .max_size
                .store(inner.status().max_size, Ordering::Release);
            follow_network(&shared, &mut state, now);
            sweep(
                &shared,
                &inner,
                now,
                entra_pg_token::time::later(now, interval),
            );
            let gate = shared.gate(now);
            for r in shared
                .spares
                .expire(&gate, now, shared.conns.live(), shared.min_connections)
            {
                shared.counters.count_retired(r, 1);
                tracing::debug!(target: "deadpool_entra", reason = r.as_str(), spare = true, "connection retired");
            }
            replenish(&shared, &inner, &gate, now, interval);
            sample_metrics(&shared, &inner, now);
            let survey = shared.survey(&gate, now);
            report_past_expiry(&shared, &survey, &mut state, now);
            maybe_probe(&shared, &mut state, now);
        }
    });
}

/// Resolves the server's name when due; after it moved, marks the sessions to the old
/// addresses stale (the sweep and checkouts retire them); ends the suspicion of sessions
/// that have all proved alive.
fn follow_network(shared: &Shared, state: &mut SweeperState, now: Instant) {
    shared.net.maybe_resolve(now);
    if let Some((generation, addrs)) = shared.net.addresses()
        && generation != state.dns_generation
    {
        state.dns_generation = generation;
        let stale = shared.conns.mark_stale(&addrs);
        tracing::info!(
            target: "deadpool_entra",
            sessions = stale,
            "sessions to the server's old address are retired as soon as a replacement can log in"
        );
    }
    if shared.net.checks_pending() {
        let e = shared.net.epoch();
        shared
            .net
            .settle_suspicion(e, shared.conns.all_checked(e), now);
    }
}

/// The gauges of the metrics recorder (feature `metrics`), once a sweep.
fn sample_metrics(shared: &Shared, inner: &deadpool_postgres::Pool, now: Instant) {
    let status = inner.status();
    let token = shared.cache.peek();
    let sample = crate::metrics::Sample {
        size: status.size,
        idle: status.available,
        max: status.max_size,
        min: shared.min_connections,
        waiting: Some(status.waiting),
        spares: shared.spares.ready(),
        ..Default::default()
    };
    shared
        .counters
        .metrics
        .sample(&sample.with_token(token.as_deref(), now));
}

/// How many sweeps ahead the sweeper has replacements logged in for connections that
/// will be due: enough for a login to finish before the connection leaves.
const LOOKAHEAD_SWEEPS: u32 = 3;

/// Starts the background logins the pool needs: a spare for each connection due within
/// [`LOOKAHEAD_SWEEPS`] sweeps, and the `min_connections` floor.
fn replenish(
    shared: &Arc<Shared>,
    inner: &deadpool_postgres::Pool,
    gate: &Gate,
    now: Instant,
    interval: Duration,
) {
    if !spare_logins::may_log_in(shared, gate, now) {
        return;
    }
    let lookahead = entra_pg_token::time::later(now, interval.saturating_mul(LOOKAHEAD_SWEEPS));
    let status = inner.status();
    let need = Need {
        due_soon: shared.conns.due_by(gate, lookahead) + shared.spares.due_by(gate, lookahead),
        // Claimed spares stand for connections that have left the pool.
        size: status.size + shared.spares.claimed(),
        max_size: status.max_size,
        min_connections: shared.min_connections,
        ready: shared.spares.free(),
        owed: shared.spares.owed(),
        in_flight: shared.spares.in_flight(),
    };
    let n = spares::to_start(&need);
    if n > 0 {
        tracing::debug!(target: "deadpool_entra", ?need, starting = n, "background logins");
        spare_logins::start(shared, n);
    }
}

/// Drops idle connections that are closed, or due by `horizon` while a replacement can
/// log in (as seen at `now`) and a spare is ready to take their place (or none can be
/// made).
fn sweep(shared: &Shared, inner: &deadpool_postgres::Pool, now: Instant, horizon: Instant) {
    let gate = shared.gate(now);
    let mut reasons: Vec<RetireReason> = Vec::new();
    // Lowered as connections leave in this pass: each later one is weighed against the
    // pool as it will be, so that several due together do not leave against one spare.
    let mut live = shared.conns.live();
    let removed = {
        let mut map = shared.conns.write();
        let result = inner.retain(|w, _| {
            let info = map.get(&key(w));
            let leaves = if w.is_closed() {
                Some(RetireReason::Broken)
            } else if let Some(info) = info
                && info.stale
                && (gate.unconditional || gate.logins_ok_since.is_some())
            {
                Some(RetireReason::AddressChanged)
            } else if let Some(info) = info {
                match decide(&info.plan, &gate, horizon) {
                    Decision::Retire(reason)
                        if gate.unconditional
                            || shared
                                .spares
                                .may_retire(live, spares::must_leave(&info.plan, reason, now)) =>
                    {
                        Some(reason)
                    }
                    Decision::Retire(_) | Decision::Overdue(_) | Decision::Keep => None,
                }
            } else {
                None
            };
            match leaves {
                Some(reason) => {
                    reasons.push(reason);
                    live = live.saturating_sub(1);
                    false
                }
                None => true,
            }
        });
        for w in &result.removed {
            map.remove(&key(w));
        }
        // Forget connections that left the pool some other way.
        shared.conns.prune_and_reschedule(&mut map);
        result.removed
    };
    drop(removed);
    for r in reasons {
        shared.counters.count_retired(r, 1);
        tracing::debug!(target: "deadpool_entra", reason = r.as_str(), idle = true, "connection retired");
    }
}

/// Warns once when sessions start serving past their token's expiry, and says once when
/// none does any more.
fn report_past_expiry(shared: &Shared, survey: &Survey, state: &mut SweeperState, now: Instant) {
    match (survey.past_token_expiry > 0, state.past_expiry_warned) {
        (true, false) => {
            state.past_expiry_warned = true;
            tracing::warn!(
                target: "deadpool_entra",
                sessions = survey.past_token_expiry,
                overdue = survey.overdue,
                identity_failing_for_secs = shared.cache.failing_since().map(|s| now.saturating_duration_since(s).as_secs_f64()),
                logins_failing_for_secs = shared.logins.failing_since().map(|s| now.saturating_duration_since(s).as_secs_f64()),
                last_token_error = shared.cache.last_error(),
                "serving on sessions whose login token has expired (the server allows it); they are retired once a new token works"
            );
        }
        (false, true) => {
            state.past_expiry_warned = false;
            tracing::info!(
                target: "deadpool_entra",
                "no session is past its token's expiry any more"
            );
        }
        _ => {}
    }
}

/// While logins fail, tries one login per backoff step with the cached token (never
/// without one: the refresher gets tokens), since checkouts then wait for idle sessions
/// instead of logging in and retirements are paused: something has to find out when
/// logins work again. Its outcome, like every login's, goes to the pool's login health;
/// the probe connection is closed.
fn maybe_probe(shared: &Arc<Shared>, state: &mut SweeperState, now: Instant) {
    if shared.logins.failing_since().is_none() {
        state.probe_failures = 0;
        state.next_probe = None;
        return;
    }
    if state.next_probe.is_some_and(|t| now < t)
        || state.probe_in_flight.load(Ordering::Acquire)
        || gate::ready_token(&shared.cache, now, &shared.retire).is_none()
    {
        return;
    }
    state.probe_failures = state.probe_failures.saturating_add(1);
    state.next_probe = Some(now + probe_backoff(shared.cache.policy(), state.probe_failures));
    state.probe_in_flight.store(true, Ordering::Release);
    let in_flight = state.probe_in_flight.clone();
    let shared = shared.clone();
    tokio::spawn(async move {
        let limit = shared.create_timeout.unwrap_or(Duration::from_secs(30));
        let connect = EntraConnect {
            shared: shared.clone(),
        };
        // Cleared however the probe ends, so that a probe that dies cannot stop the next.
        let _in_flight = ClearOnDrop(in_flight);
        let outcome = tokio::time::timeout(limit, connect.connect(&shared.pg_config)).await;
        shared.counters.probe_logins.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            target: "deadpool_entra",
            ok = matches!(outcome, Ok(Ok(_))),
            "probe login"
        );
        drop(outcome);
    });
}

struct ClearOnDrop(Arc<AtomicBool>);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The wait before the next probe: the refresh backoff (1 s doubling by default), but at
/// most `MAX_PROBE_INTERVAL`, so that the pool learns within seconds that logins work
/// again (measured: with the refresh policy's 30 s cap, a pool took up to 30 s after a
/// 60 s login refusal ended to start re-logging in its overdue sessions).
pub(crate) fn probe_backoff(
    policy: &entra_pg_token::token::RefreshPolicy,
    failures: u32,
) -> Duration {
    backoff(policy, failures).min(MAX_PROBE_INTERVAL)
}

/// The longest wait between two probe logins.
pub(crate) const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(5);
