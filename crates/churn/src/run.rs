//! The engine: warm-up, rounds (A B C D A B C D ...), the per-second sampler, the fault
//! timeline, and the result.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::fault::{Applied, FaultSink, FaultSpec, timeline};
use crate::metrics::{Percentiles, Slots, rss_kib};
use crate::pools::PoolKind;
use crate::pools::{PoolCounters, PoolUnderTest};
use crate::report::{
    FailoverImpact, FaultRecovery, Marker, PoolResult, Ratios, RoundResult, RunResult, Sample,
    ServerDelta,
};
use crate::workload::{Workload, task_loop};

/// Counters of the server side (the emulator), read once per second.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ServerCounters {
    /// Requests to the identity endpoint.
    pub identity_requests: u64,
    /// Logins offered an expired token (a bug in the pool).
    pub expired_token_logins: u64,
    /// Logins accepted.
    pub logins_accepted: u64,
    /// The full snapshot, for the JSON output.
    pub raw: serde_json::Value,
}

/// Reads the server's counters.
pub trait ServerProbe: Send + Sync {
    /// A snapshot.
    fn snapshot(&self) -> ServerCounters;
}

/// Options of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Concurrent tasks.
    pub tasks: usize,
    /// Measured time per pool.
    pub duration: Duration,
    /// Request budget per pool (replaces `duration`).
    pub requests: Option<u64>,
    /// Round length.
    pub round: Duration,
    /// Unmeasured warm-up per pool.
    pub warmup: Duration,
    /// The workload.
    pub workload: Workload,
    /// Faults on the timeline.
    pub faults: Vec<FaultSpec>,
    /// Show a live progress line (only honoured on a terminal).
    pub progress: bool,
}

struct PoolState {
    pool: Arc<dyn PoolUnderTest>,
    slots: Slots,
    budget: Option<Arc<AtomicI64>>,
    active: Duration,
    done: bool,
    start_counters: PoolCounters,
    prev_counters: PoolCounters,
    prev_ok: u64,
    prev_errors: u64,
    prev_waited: u64,
    prev_checkouts: u64,
    round_ok: u64,
    server: ServerDelta,
}

/// Runs the load against `pools` and returns everything measured.
pub async fn run(
    pools: Vec<Arc<dyn PoolUnderTest>>,
    opts: &RunOptions,
    probe: Option<Arc<dyn ServerProbe>>,
    sink: Option<Arc<dyn FaultSink>>,
) -> RunResult {
    let show = opts.progress && std::io::stderr().is_terminal();
    let bar = if show {
        let b = indicatif::ProgressBar::new_spinner();
        b.enable_steady_tick(Duration::from_millis(200));
        Some(b)
    } else {
        None
    };
    let wl = opts.workload;

    // Warm-up: unmeasured, each pool in turn.
    if !opts.warmup.is_zero() {
        for p in &pools {
            if let Some(b) = &bar {
                b.set_message(format!("warming up {}", p.kind().name()));
            }
            let deadline = Instant::now() + opts.warmup;
            let handles: Vec<_> = (0..opts.tasks)
                .map(|i| tokio::spawn(task_loop(i, p.clone(), None, deadline, None, wl)))
                .collect();
            join_by(handles, deadline + Duration::from_secs(2)).await;
        }
    }

    let mut states: Vec<PoolState> = pools
        .iter()
        .map(|p| {
            let c = p.counters();
            PoolState {
                pool: p.clone(),
                slots: Slots::new(opts.tasks),
                budget: opts.requests.map(|n| Arc::new(AtomicI64::new(n as i64))),
                active: Duration::ZERO,
                done: false,
                start_counters: c.clone(),
                prev_counters: c,
                prev_ok: 0,
                prev_errors: 0,
                prev_waited: 0,
                prev_checkouts: 0,
                round_ok: 0,
                server: ServerDelta::default(),
            }
        })
        .collect();

    let server_start = probe.as_ref().map(|p| p.snapshot());
    let mut prev_server = server_start.clone();
    let t0 = Instant::now();

    // The fault timeline runs on its own, from t0.
    let fault_marks: Arc<Mutex<Vec<Marker>>> = Arc::default();
    let applied: Arc<Mutex<Vec<Applied>>> = Arc::default();
    let fault_task = sink.as_ref().map(|sink| {
        let sink = sink.clone();
        let marks = fault_marks.clone();
        let applied = applied.clone();
        let events = timeline(&opts.faults);
        tokio::spawn(async move {
            for e in events {
                tokio::time::sleep_until(t0 + e.at).await;
                // Network faults run `iptables`: off the runtime's workers.
                let (s, kind, on) = (sink.clone(), e.kind.clone(), e.on);
                let note = tokio::task::spawn_blocking(move || s.apply(&kind, on))
                    .await
                    .unwrap_or_else(|e| Some(format!("NOT APPLIED: {e}")));
                let t = t0.elapsed().as_secs_f64();
                let label = match &note {
                    Some(n) if !n.is_empty() => format!("{} ({n})", e.label),
                    _ => e.label.clone(),
                };
                tracing::info!(fault = %label, on = e.on, "fault");
                marks
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Marker {
                        t,
                        pool: None,
                        label,
                    });
                applied
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Applied {
                        index: e.index,
                        on: e.on,
                        t,
                    });
            }
        })
    });

    let mut series: Vec<Sample> = Vec::new();
    let mut rotations: Vec<Marker> = Vec::new();
    let mut round = 0usize;
    let mut round_results: Vec<RoundResult> = Vec::new();
    loop {
        let mut any = false;
        for idx in 0..states.len() {
            if states[idx].done {
                continue;
            }
            any = true;
            let seg = match opts.requests {
                Some(_) => opts.round,
                None => opts
                    .round
                    .min(opts.duration.saturating_sub(states[idx].active)),
            };
            let st = &states[idx];
            let start = Instant::now();
            let deadline = start + seg;
            let handles: Vec<_> = (0..opts.tasks)
                .map(|i| {
                    tokio::spawn(task_loop(
                        i,
                        st.pool.clone(),
                        Some(st.slots.clone()),
                        deadline,
                        st.budget.clone(),
                        wl,
                    ))
                })
                .collect();
            let hard_stop = deadline + Duration::from_secs(2);
            let mut last = start;
            let mut tick =
                tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
            let finished = {
                let all = join_by(handles, hard_stop);
                tokio::pin!(all);
                loop {
                    tokio::select! {
                        _ = &mut all => break,
                        _ = tick.tick() => {
                            let now = Instant::now();
                            sample(&mut states, idx, now - last, now - t0, &probe, &mut prev_server, &mut series, &mut rotations);
                            last = now;
                            if let Some(b) = &bar {
                                progress_line(b, &states[idx], series.last(), round, t0);
                            }
                        }
                    }
                }
                Instant::now()
            };
            if finished > last {
                sample(
                    &mut states,
                    idx,
                    finished - last,
                    finished - t0,
                    &probe,
                    &mut prev_server,
                    &mut series,
                    &mut rotations,
                );
            }
            let st = &mut states[idx];
            let seg_secs = (finished.min(deadline).max(start) - start).as_secs_f64();
            let ok_now = st.slots.take_window().ok;
            round_results.push(RoundResult {
                round,
                pool: st.pool.kind(),
                secs: seg_secs,
                ok: ok_now.saturating_sub(st.round_ok),
                rps: ok_now.saturating_sub(st.round_ok) as f64 / seg_secs.max(1e-9),
            });
            st.round_ok = ok_now;
            st.active += finished.min(deadline).max(start) - start;
            let budget_spent = st
                .budget
                .as_ref()
                .is_some_and(|b| b.load(std::sync::atomic::Ordering::Relaxed) <= 0);
            if budget_spent || (opts.requests.is_none() && st.active >= opts.duration) {
                st.done = true;
            }
        }
        if !any {
            break;
        }
        round += 1;
    }
    let elapsed = t0.elapsed();
    if let Some(t) = fault_task {
        t.abort();
    }
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    let server_end = probe.as_ref().map(|p| p.snapshot());

    let mut results: Vec<PoolResult> = states
        .iter()
        .map(|st| {
            let m = st.slots.merged();
            let end = st.pool.counters();
            let active = st.active.as_secs_f64().max(1e-9);
            let errors: u64 = m.errors.values().sum();
            PoolResult {
                request: Percentiles::of(&m.request),
                abandoned: m.abandoned,
                pool: st.pool.kind(),
                active_secs: st.active.as_secs_f64(),
                requests_ok: m.ok,
                errors,
                errors_by_kind: m.errors.clone(),
                error_examples: m.error_examples.clone(),
                throughput_rps: m.ok as f64 / active,
                checkout: Percentiles::of(&m.checkout),
                query: Percentiles::of(&m.query),
                login_checkout: Percentiles::of(&m.login_checkout),
                checkouts: m.checkouts,
                waited_for_login: m.waited_for_login,
                waited_for_login_pct: if m.checkouts == 0 {
                    0.0
                } else {
                    100.0 * m.waited_for_login as f64 / m.checkouts as f64
                },
                counters: counters_delta(&st.start_counters, &end),
                server: st.server.clone(),
                extra: st.pool.extra(),
                ratios: None,
            }
        })
        .collect();
    // Each pool against its own baseline (plain sqlx for the sqlx pools), when it ran.
    let bases: Vec<_> = results.clone();
    for r in &mut results {
        if let Some(base) = bases.iter().find(|b| b.pool == r.pool.baseline()) {
            let mut x = Ratios::against(r, base);
            x.throughput_median_of_rounds = median_round_ratio(&round_results, r.pool);
            r.ratios = Some(x);
        }
    }
    let markers: Vec<Marker> = fault_marks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let failovers = FailoverImpact::compute(&markers, &series, &results);
    let applied = applied.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let fault_recovery = FaultRecovery::compute(&opts.faults, &applied, &series);
    RunResult {
        round_results,
        failovers,
        fault_recovery,
        elapsed_secs: elapsed.as_secs_f64(),
        rounds: round,
        pools: results,
        series,
        faults: markers,
        rotations,
        server_start: server_start.map(|s| s.raw),
        server_end: server_end.map(|s| s.raw),
        rss_kib_end: rss_kib(),
        ..RunResult::default()
    }
}

/// Waits for every handle, aborting those still running at `hard_stop` (a request hung
/// on a dead session is abandoned there and counted, see `workload::InFlight`).
async fn join_by(handles: Vec<tokio::task::JoinHandle<()>>, hard_stop: Instant) {
    for mut h in handles {
        if tokio::time::timeout_at(hard_stop, &mut h).await.is_err() {
            h.abort();
            // Until the task is dropped, so that its abandoned request is counted before
            // the segment's last sample; an aborted task ends at once.
            let _ = h.await;
        }
    }
}

fn counters_delta(a: &PoolCounters, b: &PoolCounters) -> PoolCounters {
    let mut retirements = BTreeMap::new();
    for (k, v) in &b.retirements {
        retirements.insert(
            k.clone(),
            v.saturating_sub(a.retirements.get(k).copied().unwrap_or(0)),
        );
    }
    PoolCounters {
        logins: b.logins.saturating_sub(a.logins),
        login_failures: b.login_failures.saturating_sub(a.login_failures),
        token_refreshes: b.token_refreshes.saturating_sub(a.token_refreshes),
        token_refresh_failures: b
            .token_refresh_failures
            .saturating_sub(a.token_refresh_failures),
        identity_calls: b.identity_calls.saturating_sub(a.identity_calls),
        retirements,
        logins_waited_for_token: match (a.logins_waited_for_token, b.logins_waited_for_token) {
            (Some(x), Some(y)) => Some(y.saturating_sub(x)),
            (_, y) => y,
        },
    }
}

#[allow(clippy::too_many_arguments)]
fn sample(
    states: &mut [PoolState],
    active: usize,
    dt: Duration,
    t: Duration,
    probe: &Option<Arc<dyn ServerProbe>>,
    prev_server: &mut Option<ServerCounters>,
    series: &mut Vec<Sample>,
    rotations: &mut Vec<Marker>,
) {
    let ts = t.as_secs_f64();
    let now = probe.as_ref().map(|p| p.snapshot());
    let (d_ident, d_expired) = match (&now, prev_server.as_ref()) {
        (Some(n), Some(p)) => (
            n.identity_requests.saturating_sub(p.identity_requests),
            n.expired_token_logins
                .saturating_sub(p.expired_token_logins),
        ),
        _ => (0, 0),
    };
    if now.is_some() {
        *prev_server = now;
    }
    let rss = rss_kib();
    for (i, st) in states.iter_mut().enumerate() {
        let kind = st.pool.kind();
        let c = st.pool.counters();
        // Token rotations of every pool (idle ones rotate too); per-connect fetches a
        // token per login, which is not a rotation.
        if c.token_refreshes > st.prev_counters.token_refreshes && kind != PoolKind::PerConnect {
            rotations.push(Marker {
                t: ts,
                pool: Some(kind),
                label: format!("{} token refresh", kind.name()),
            });
        }
        if i == active {
            let w = st.slots.take_window();
            let secs = dt.as_secs_f64().max(1e-3);
            let p = Percentiles::of(&w.checkout);
            st.server.identity_requests += d_ident;
            st.server.expired_token_logins += d_expired;
            let occ = st.pool.occupancy();
            series.push(Sample {
                t: ts,
                dt: secs,
                pool: kind,
                throughput_rps: w.ok.saturating_sub(st.prev_ok) as f64 / secs,
                errors: w.errors.saturating_sub(st.prev_errors),
                checkouts: w.checkouts.saturating_sub(st.prev_checkouts),
                checkout_p50_ms: p.p50_ms,
                checkout_p99_ms: p.p99_ms,
                checkout_max_ms: p.max_ms,
                request_max_ms: w.request_max_us as f64 / 1000.0,
                waited_for_login: w.waited.saturating_sub(st.prev_waited),
                logins: c.logins.saturating_sub(st.prev_counters.logins),
                token_refreshes: c
                    .token_refreshes
                    .saturating_sub(st.prev_counters.token_refreshes),
                identity_calls: c
                    .identity_calls
                    .saturating_sub(st.prev_counters.identity_calls),
                server_identity_requests: d_ident,
                expired_token_logins: d_expired,
                pool_size: occ.size,
                pool_available: occ.available,
                pool_waiting: occ.waiting,
                rss_kib: rss,
            });
            st.prev_ok = w.ok;
            st.prev_errors = w.errors;
            st.prev_waited = w.waited;
            st.prev_checkouts = w.checkouts;
        }
        st.prev_counters = c;
    }
}

fn progress_line(
    b: &indicatif::ProgressBar,
    st: &PoolState,
    last: Option<&Sample>,
    round: usize,
    t0: Instant,
) {
    let Some(s) = last else { return };
    b.set_message(format!(
        "t={:>5.0}s round {} {:<11} {:>8.0} req/s  p99 checkout {:>7.2} ms  errors {}  pool {}/{} waiting {}",
        t0.elapsed().as_secs_f64(),
        round + 1,
        st.pool.kind().name(),
        s.throughput_rps,
        s.checkout_p99_ms,
        st.prev_errors,
        s.pool_size - s.pool_available.min(s.pool_size),
        s.pool_size,
        s.pool_waiting,
    ));
}

/// The median over rounds of `pool`'s throughput divided by its baseline's in the same
/// round: robust against a noisy machine, where one disturbed round skews a plain ratio.
fn median_round_ratio(rounds: &[RoundResult], pool: PoolKind) -> Option<f64> {
    let mut ratios: Vec<f64> = rounds
        .iter()
        .filter(|r| r.pool == pool && r.secs > 0.0)
        .filter_map(|r| {
            rounds
                .iter()
                .find(|b| b.pool == pool.baseline() && b.round == r.round && b.rps > 0.0)
                .map(|b| r.rps / b.rps)
        })
        .collect();
    if ratios.is_empty() {
        return None;
    }
    ratios.sort_by(f64::total_cmp);
    let n = ratios.len();
    Some(if n % 2 == 1 {
        ratios[n / 2]
    } else {
        (ratios[n / 2 - 1] + ratios[n / 2]) / 2.0
    })
}
