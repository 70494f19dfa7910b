//! The result of a run: what each pool measured, per round and per second, with the
//! fault's impact and the ratios to the baseline (serialized as the JSON report). Its
//! renderings, the summary table and the Markdown rows, are in `render.rs`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::fault::{FaultKind, FaultSpec};
use crate::metrics::Percentiles;
use crate::pools::PoolCounters;
use crate::pools::PoolKind;

/// Everything a run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunResult {
    /// `churn` version.
    pub churn_version: String,
    /// Unix time the run started.
    pub started_unix: u64,
    /// The command line.
    pub command: String,
    /// The machine.
    pub machine: Machine,
    /// Settings of the run.
    pub settings: serde_json::Value,
    /// Wall time of the measured part.
    pub elapsed_secs: f64,
    /// Rounds run.
    pub rounds: usize,
    /// Per pool.
    pub pools: Vec<PoolResult>,
    /// Per round, per pool: throughput of each segment.
    pub round_results: Vec<RoundResult>,
    /// Per second, per active pool.
    pub series: Vec<Sample>,
    /// Faults as they were applied.
    pub faults: Vec<Marker>,
    /// Token rotations (ours: refreshes; rebuild: pool rebuilt).
    pub rotations: Vec<Marker>,
    /// What each failover did to the pool that was active when it struck.
    pub failovers: Vec<FailoverImpact>,
    /// What each network fault did to the pool that was active when it struck.
    pub fault_recovery: Vec<FaultRecovery>,
    /// Whether the run had network faults (the emulator's Azure network, in a private
    /// network namespace).
    pub azure_network: bool,
    /// Server (emulator) counters at the start of the measured run.
    pub server_start: Option<serde_json::Value>,
    /// Server (emulator) counters at the end.
    pub server_end: Option<serde_json::Value>,
    /// Resident memory at the end, KiB.
    pub rss_kib_end: Option<u64>,
}

/// The machine a run ran on.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// Kernel release.
    pub kernel: String,
    /// Total memory, MiB.
    pub mem_mib: u64,
}

impl Machine {
    /// Reads `/proc`.
    pub fn detect() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let mem_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse::<u64>().ok())
            })
            .map(|kib| kib / 1024)
            .unwrap_or(0);
        Machine {
            cpu,
            cpus,
            kernel,
            mem_mib,
        }
    }

    /// One line for reports.
    pub fn line(&self) -> String {
        format!(
            "{}, {} logical CPUs, {} MiB, Linux {}",
            self.cpu, self.cpus, self.mem_mib, self.kernel
        )
    }
}

/// One pool's segment of one round.
#[derive(Debug, Clone, Serialize)]
pub struct RoundResult {
    /// Round number, from 0.
    pub round: usize,
    /// The pool.
    pub pool: PoolKind,
    /// Seconds driven.
    pub secs: f64,
    /// Successful requests.
    pub ok: u64,
    /// Successful requests per second.
    pub rps: f64,
}

/// A point on the timeline (a fault, a token rotation).
#[derive(Debug, Clone, Serialize)]
pub struct Marker {
    /// Seconds from the start of the measured run.
    pub t: f64,
    /// The pool it concerns, if one.
    pub pool: Option<PoolKind>,
    /// What happened.
    pub label: String,
}

/// What a failover did to the pool that was active.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverImpact {
    /// When it struck, seconds from the start.
    pub t: f64,
    /// The active pool.
    pub pool: PoolKind,
    /// Failed requests of that pool in the 3 s after it.
    pub errors_within_3s: u64,
    /// Upper bound (1 s sampling) on the time until that pool ran a whole sampling interval
    /// error-free at half its average throughput again; `None` if it did not within the run.
    pub recovered_within_secs: Option<f64>,
}

impl FailoverImpact {
    /// Computes the impact of every failover marker from the time series.
    pub fn compute(
        faults: &[Marker],
        series: &[Sample],
        pools: &[PoolResult],
    ) -> Vec<FailoverImpact> {
        let mut out = Vec::new();
        for m in faults.iter().filter(|m| m.label.starts_with("failover")) {
            let Some(cur) = series
                .iter()
                .find(|s| s.t - s.dt <= m.t + 1e-6 && m.t <= s.t + 1e-6)
            else {
                continue;
            };
            let pool = cur.pool;
            let avg = pools
                .iter()
                .find(|p| p.pool == pool)
                .map(|p| p.throughput_rps)
                .unwrap_or(0.0);
            let mine: Vec<&Sample> = series
                .iter()
                .filter(|s| s.pool == pool && s.t >= m.t - 1e-6)
                .collect();
            let errors_within_3s = mine
                .iter()
                .filter(|s| s.t - s.dt < m.t + 3.0)
                .map(|s| s.errors)
                .sum();
            let recovered_within_secs = mine
                .iter()
                .find(|s| {
                    s.t - s.dt >= m.t - 0.05
                        && s.errors == 0
                        && s.throughput_rps > 0.0
                        && s.throughput_rps >= 0.5 * avg
                })
                .map(|s| s.t - m.t);
            out.push(FailoverImpact {
                t: m.t,
                pool,
                errors_within_3s,
                recovered_within_secs,
            });
        }
        out
    }
}

/// Seconds before a fault over which "throughput before" is averaged.
const BEFORE_SECS: f64 = 3.0;

/// What a network fault did to the pool that was active when it struck, from the
/// per-second series (so times are upper bounds at 1 s resolution).
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecovery {
    /// The fault as given (`vanish@10s`, `partition@10s+20s`).
    pub fault: String,
    /// The pool active when it struck.
    pub pool: PoolKind,
    /// When it struck, seconds from the start of the measured run.
    pub t: f64,
    /// When it ended (a partition's heal), if it did within the run.
    pub healed_t: Option<f64>,
    /// Mean throughput of the pool in the 3 s before it struck.
    pub rps_before: f64,
    /// Seconds from the fault (from the heal, for a fault with an end) to the end of the
    /// first whole second at half `rps_before` or more; `None`: not within the run.
    pub half_throughput_after_secs: Option<f64>,
    /// Failed requests of the pool (abandoned ones included) from the fault to the end of
    /// the run.
    pub failed_from_fault: u64,
    /// The longest request (checkout and query; an abandoned one counts the time it had
    /// run) that ended from the fault on: the longest a caller waited.
    pub longest_request_ms: f64,
}

impl FaultRecovery {
    /// One record per network fault that struck during the run (not `idle-drop`, which
    /// is there from the start), from the applied events (`index` into `faults`).
    pub fn compute(
        faults: &[FaultSpec],
        applied: &[crate::fault::Applied],
        series: &[Sample],
    ) -> Vec<FaultRecovery> {
        let mut out = Vec::new();
        for a in applied.iter().filter(|a| a.on) {
            let Some(spec) = faults.get(a.index) else {
                continue;
            };
            if !spec.kind.is_network() || matches!(spec.kind, FaultKind::IdleDrop(_)) {
                continue;
            }
            let Some(cur) = series
                .iter()
                .find(|s| s.t - s.dt <= a.t + 1e-6 && a.t <= s.t + 1e-6)
                .or_else(|| series.iter().rev().find(|s| s.t <= a.t))
            else {
                continue;
            };
            let pool = cur.pool;
            let mine: Vec<&Sample> = series.iter().filter(|s| s.pool == pool).collect();
            let before: Vec<&&Sample> = mine
                .iter()
                .filter(|s| s.t <= a.t + 1e-6 && s.t - s.dt >= a.t - BEFORE_SECS - 0.05)
                .collect();
            let secs: f64 = before.iter().map(|s| s.dt).sum();
            let rps_before = if secs > 0.0 {
                before.iter().map(|s| s.throughput_rps * s.dt).sum::<f64>() / secs
            } else {
                0.0
            };
            let healed_t = applied
                .iter()
                .find(|e| e.index == a.index && !e.on && e.t >= a.t)
                .map(|e| e.t);
            let from = healed_t.unwrap_or(a.t);
            let half_throughput_after_secs = mine
                .iter()
                .find(|s| {
                    s.t - s.dt >= from - 0.05
                        && s.throughput_rps > 0.0
                        && s.throughput_rps >= 0.5 * rps_before
                })
                .map(|s| s.t - from);
            let after = mine.iter().filter(|s| s.t > a.t + 1e-6);
            let (failed_from_fault, longest_request_ms) = after.fold((0, 0.0f64), |(n, m), s| {
                (n + s.errors, m.max(s.request_max_ms))
            });
            out.push(FaultRecovery {
                fault: spec.spec.clone(),
                pool,
                t: a.t,
                healed_t,
                rps_before,
                half_throughput_after_secs,
                failed_from_fault,
                longest_request_ms,
            });
        }
        out
    }

    /// From the fault or from its heal.
    fn counted_from(&self) -> &'static str {
        if self.healed_t.is_some() {
            "heal"
        } else {
            "fault"
        }
    }
}

/// Server-side counters attributed to a pool (changes while it was the active pool).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServerDelta {
    /// Identity endpoint requests.
    pub identity_requests: u64,
    /// Logins offered an expired token.
    pub expired_token_logins: u64,
}

/// One second of one pool.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// End of the interval, seconds from the start of the measured run.
    pub t: f64,
    /// Length of the interval.
    pub dt: f64,
    /// The active pool.
    pub pool: PoolKind,
    /// Successful requests per second.
    pub throughput_rps: f64,
    /// Failed requests in the interval.
    pub errors: u64,
    /// Checkouts in the interval.
    pub checkouts: u64,
    /// Checkout latency median.
    pub checkout_p50_ms: f64,
    /// Checkout latency p99.
    pub checkout_p99_ms: f64,
    /// Checkout latency max.
    pub checkout_max_ms: f64,
    /// The longest request (checkout and query) that ended in the interval.
    pub request_max_ms: f64,
    /// Checkouts that waited for a login.
    pub waited_for_login: u64,
    /// Logins.
    pub logins: u64,
    /// Token refreshes of the pool.
    pub token_refreshes: u64,
    /// Identity endpoint calls the pool made.
    pub identity_calls: u64,
    /// Identity endpoint requests the server saw (all pools).
    pub server_identity_requests: u64,
    /// Expired-token logins the server saw (all pools).
    pub expired_token_logins: u64,
    /// Open connections.
    pub pool_size: usize,
    /// Idle connections.
    pub pool_available: usize,
    /// Waiting callers.
    pub pool_waiting: usize,
    /// Resident memory, KiB.
    pub rss_kib: Option<u64>,
}

/// Ratios to the baseline pool.
#[derive(Debug, Clone, Serialize)]
pub struct Ratios {
    /// Throughput / baseline throughput.
    pub throughput: f64,
    /// Median over rounds of (throughput / baseline throughput in the same round).
    pub throughput_median_of_rounds: Option<f64>,
    /// p99 checkout / baseline p99 checkout.
    pub checkout_p99: f64,
    /// p50 checkout / baseline p50 checkout.
    pub checkout_p50: f64,
    /// Median latency of checkouts that waited for a login / baseline's.
    pub login_checkout_p50: Option<f64>,
    /// p99 latency of checkouts that waited for a login / baseline's.
    pub login_checkout_p99: Option<f64>,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { f64::NAN }
}

impl Ratios {
    /// `r` against `base`.
    pub fn against(r: &PoolResult, base: &PoolResult) -> Ratios {
        let login = |f: fn(&Percentiles) -> f64| {
            (r.login_checkout.count > 0 && base.login_checkout.count > 0)
                .then(|| ratio(f(&r.login_checkout), f(&base.login_checkout)))
        };
        Ratios {
            throughput: ratio(r.throughput_rps, base.throughput_rps),
            throughput_median_of_rounds: None,
            checkout_p99: ratio(r.checkout.p99_ms, base.checkout.p99_ms),
            checkout_p50: ratio(r.checkout.p50_ms, base.checkout.p50_ms),
            login_checkout_p50: login(|p| p.p50_ms),
            login_checkout_p99: login(|p| p.p99_ms),
        }
    }
}

/// The summary of one pool.
#[derive(Debug, Clone, Serialize)]
pub struct PoolResult {
    /// Which pool.
    pub pool: PoolKind,
    /// Seconds it was driven.
    pub active_secs: f64,
    /// Requests that worked.
    pub requests_ok: u64,
    /// Requests that failed.
    pub errors: u64,
    /// Failures by kind.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// One message per failure kind.
    pub error_examples: BTreeMap<String, String>,
    /// Successful requests per second of active time.
    pub throughput_rps: f64,
    /// Checkout latency.
    pub checkout: Percentiles,
    /// Query latency.
    pub query: Percentiles,
    /// Checkout latency of the checkouts that waited for a login (the connect latency users feel).
    pub login_checkout: Percentiles,
    /// Request latency (checkout and query, worked or failed, abandoned ones at the time
    /// they were abandoned).
    pub request: Percentiles,
    /// Requests abandoned in flight at a segment's hard stop (counted in `errors`).
    pub abandoned: u64,
    /// Checkouts.
    pub checkouts: u64,
    /// Checkouts that created their connection (waited for a login).
    pub waited_for_login: u64,
    /// The same in percent of checkouts.
    pub waited_for_login_pct: f64,
    /// The pool's own counters over the measured run (including while idle).
    pub counters: PoolCounters,
    /// Server counters while this pool was active.
    pub server: ServerDelta,
    /// Pool-specific details (ours: the library's stats).
    pub extra: Option<serde_json::Value>,
    /// Ratios to the baseline, when the baseline ran.
    pub ratios: Option<Ratios>,
}

mod render;

pub use render::{markdown, table};

#[cfg(test)]
mod tests;
