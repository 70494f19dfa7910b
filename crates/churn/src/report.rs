//! The result of a run and its renderings: summary table, JSON, Markdown rows.

use std::collections::BTreeMap;
use std::fmt::Write as _;

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

/// The summary table.
pub fn table(r: &RunResult) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "churn: {} rounds, {:.1} s measured, {}",
        r.rounds,
        r.elapsed_secs,
        r.machine.line()
    );
    let _ = writeln!(
        s,
        "{:<11} {:>9} {:>10} {:>7} | {:>8} {:>8} {:>8} {:>8} {:>8} | {:>8} {:>8} | {:>7} {:>7} {:>8} {:>7} {:>7} {:>8}",
        "pool",
        "req/s",
        "ok",
        "errors",
        "co p50",
        "co p90",
        "co p99",
        "co p99.9",
        "co max",
        "q p50",
        "q p99",
        "logins",
        "waited%",
        "refresh",
        "id.calls",
        "expired",
        "retired"
    );
    for p in &r.pools {
        let retired: u64 = p.counters.retirements.values().sum();
        let _ = writeln!(
            s,
            "{:<11} {:>9.0} {:>10} {:>7} | {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>8.3} | {:>8.3} {:>8.3} | {:>7} {:>7.3} {:>8} {:>7} {:>7} {:>8}",
            p.pool.name(),
            p.throughput_rps,
            p.requests_ok,
            p.errors,
            p.checkout.p50_ms,
            p.checkout.p90_ms,
            p.checkout.p99_ms,
            p.checkout.p999_ms,
            p.checkout.max_ms,
            p.query.p50_ms,
            p.query.p99_ms,
            p.counters.logins,
            p.waited_for_login_pct,
            p.counters.token_refreshes,
            p.counters.identity_calls,
            p.server.expired_token_logins,
            retired,
        );
    }
    let _ = writeln!(
        s,
        "(latencies in ms; co = checkout, q = query; waited% = checkouts that waited for a login)"
    );
    for p in &r.pools {
        if let Some(x) = &p.ratios
            && p.pool != PoolKind::Baseline
        {
            let _ = writeln!(
                s,
                "{:<11} vs baseline: throughput x{:.3} (median of rounds x{}), p99 checkout x{:.3}, p50 checkout x{:.3}{}",
                p.pool.name(),
                x.throughput,
                x.throughput_median_of_rounds
                    .map(|v| format!("{v:.3}"))
                    .unwrap_or_else(|| "-".into()),
                x.checkout_p99,
                x.checkout_p50,
                x.login_checkout_p50
                    .map(|v| format!(", login-checkout p50 x{v:.3}"))
                    .unwrap_or_default()
            );
        }
        for (k, v) in &p.errors_by_kind {
            let ex = p.error_examples.get(k).cloned().unwrap_or_default();
            let _ = writeln!(s, "{:<11} error {k}: {v} (e.g. {ex})", p.pool.name());
        }
        if !p.counters.retirements.is_empty() {
            let list: Vec<String> = p
                .counters
                .retirements
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(s, "{:<11} retirements: {}", p.pool.name(), list.join(", "));
        }
    }
    if !r.faults.is_empty() {
        let list: Vec<String> = r
            .faults
            .iter()
            .map(|m| format!("{:.1}s {}", m.t, m.label))
            .collect();
        let _ = writeln!(s, "faults: {}", list.join("; "));
    }
    for f in &r.failovers {
        let _ = writeln!(
            s,
            "failover at {:.1}s hit {}: {} failed requests within 3 s, back to error-free half throughput within {}",
            f.t,
            f.pool.name(),
            f.errors_within_3s,
            f.recovered_within_secs
                .map(|v| format!("{v:.1} s"))
                .unwrap_or_else(|| "the run: never".into())
        );
    }
    if r.azure_network || r.pools.iter().any(|p| p.abandoned > 0) {
        for p in &r.pools {
            let _ = writeln!(
                s,
                "{:<11} longest request {:.0} ms (checkout + query); {} abandoned in flight",
                p.pool.name(),
                p.request.max_ms,
                p.abandoned
            );
        }
    }
    for f in &r.fault_recovery {
        let _ = writeln!(
            s,
            "{} at {:.1}s hit {} ({:.0} req/s in the 3 s before): half throughput {} after the {}, {} failed requests from the fault on, longest request ending after it {:.0} ms",
            f.fault,
            f.t,
            f.pool.name(),
            f.rps_before,
            f.half_throughput_after_secs
                .map(|v| format!("within {v:.1} s"))
                .unwrap_or_else(|| "never in the run".into()),
            f.counted_from(),
            f.failed_from_fault,
            f.longest_request_ms,
        );
    }
    if let Some(rss) = r.rss_kib_end {
        let _ = writeln!(
            s,
            "resident memory at the end: {:.1} MiB",
            rss as f64 / 1024.0
        );
    }
    s
}

/// Markdown rows (one per pool) with ratios to the baseline.
pub fn markdown(r: &RunResult) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "Command: `{}`  ", r.command);
    let _ = writeln!(s, "Machine: {}  ", r.machine.line());
    let _ = writeln!(
        s,
        "Measured {:.0} s in {} rounds.\n",
        r.elapsed_secs, r.rounds
    );
    let _ = writeln!(
        s,
        "| pool | req/s | x baseline | x baseline, median of rounds | checkout p50 ms | checkout p99 ms | p99 x baseline | p99.9 ms | max ms | errors | waited for login | login-checkout p50 ms (x baseline) | refreshes | identity calls | expired-token logins |"
    );
    let _ = writeln!(
        s,
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for p in &r.pools {
        let (tx, mx, px, lx) = match &p.ratios {
            Some(x) => (
                format!("{:.3}", x.throughput),
                x.throughput_median_of_rounds
                    .map(|v| format!("{v:.3}"))
                    .unwrap_or_else(|| "–".into()),
                format!("{:.3}", x.checkout_p99),
                x.login_checkout_p50
                    .map(|v| format!(" (x{v:.2})"))
                    .unwrap_or_default(),
            ),
            None => ("–".into(), "–".into(), "–".into(), String::new()),
        };
        let _ = writeln!(
            s,
            "| {} | {:.0} | {} | {} | {:.3} | {:.3} | {} | {:.3} | {:.3} | {} | {} ({:.3} %) | {:.2}{} | {} | {} | {} |",
            p.pool.name(),
            p.throughput_rps,
            tx,
            mx,
            p.checkout.p50_ms,
            p.checkout.p99_ms,
            px,
            p.checkout.p999_ms,
            p.checkout.max_ms,
            p.errors,
            p.waited_for_login,
            p.waited_for_login_pct,
            p.login_checkout.p50_ms,
            lx,
            p.counters.token_refreshes,
            p.counters.identity_calls,
            p.server.expired_token_logins,
        );
    }
    if r.azure_network {
        let _ = writeln!(s);
        for p in &r.pools {
            let _ = writeln!(
                s,
                "- {}: longest request {:.0} ms (checkout + query; an abandoned one counts until it was abandoned), {} failed, {} abandoned in flight",
                p.pool.name(),
                p.request.max_ms,
                p.errors,
                p.abandoned
            );
        }
        for m in &r.faults {
            let _ = writeln!(s, "- {:.1} s: {}", m.t, m.label);
        }
    }
    if !r.fault_recovery.is_empty() {
        let _ = writeln!(
            s,
            "\nFault recovery (1 s samples: times are upper bounds):\n"
        );
        let _ = writeln!(
            s,
            "| fault | pool | at s | req/s in the 3 s before | half throughput again, s after | failed requests from the fault on | abandoned in flight (pool, run) | longest request after the fault ms |"
        );
        let _ = writeln!(s, "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: |");
        for f in &r.fault_recovery {
            let abandoned = r
                .pools
                .iter()
                .find(|p| p.pool == f.pool)
                .map_or(0, |p| p.abandoned);
            let _ = writeln!(
                s,
                "| `{}` | {} | {:.1} | {:.0} | {} | {} | {} | {:.0} |",
                f.fault,
                f.pool.name(),
                f.t,
                f.rps_before,
                f.half_throughput_after_secs
                    .map(|v| format!("{v:.1} (from the {})", f.counted_from()))
                    .unwrap_or_else(|| format!("never (from the {})", f.counted_from())),
                f.failed_from_fault,
                abandoned,
                f.longest_request_ms,
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::Applied;

    fn second(t: f64, rps: f64, errors: u64, request_max_ms: f64) -> Sample {
        Sample {
            t,
            dt: 1.0,
            pool: PoolKind::Ours,
            throughput_rps: rps,
            errors,
            checkouts: 0,
            checkout_p50_ms: 0.0,
            checkout_p99_ms: 0.0,
            checkout_max_ms: 0.0,
            request_max_ms,
            waited_for_login: 0,
            logins: 0,
            token_refreshes: 0,
            identity_calls: 0,
            server_identity_requests: 0,
            expired_token_logins: 0,
            pool_size: 0,
            pool_available: 0,
            pool_waiting: 0,
            rss_kib: None,
        }
    }

    /// 1,000 req/s until 10 s, nothing for 6 s, 400 req/s, then 900 req/s again.
    fn series() -> Vec<Sample> {
        (1..=25)
            .map(|t| {
                let t = t as f64;
                match t {
                    t if t <= 10.0 => second(t, 1000.0, 0, 2.0),
                    t if t <= 16.0 => second(t, 0.0, 0, 0.0),
                    17.0 => second(t, 400.0, 8, 6100.0),
                    _ => second(t, 900.0, 0, 3.0),
                }
            })
            .collect()
    }

    #[test]
    fn a_vanish_recovers_at_the_first_second_at_half_throughput() {
        let faults = [FaultSpec::parse("vanish@10s").unwrap()];
        let applied = [Applied {
            index: 0,
            on: true,
            t: 10.0,
        }];
        let r = FaultRecovery::compute(&faults, &applied, &series());
        assert_eq!(r.len(), 1);
        let r = &r[0];
        assert_eq!(r.pool, PoolKind::Ours);
        assert!((r.rps_before - 1000.0).abs() < 1e-9);
        // 17 s is below half; 18 s is the first whole second at half or more.
        assert_eq!(r.half_throughput_after_secs, Some(8.0));
        assert_eq!(r.failed_from_fault, 8);
        assert_eq!(r.longest_request_ms, 6100.0);
    }

    #[test]
    fn a_partition_recovers_from_its_heal() {
        let faults = [FaultSpec::parse("partition@10s+6s").unwrap()];
        let applied = [
            Applied {
                index: 0,
                on: true,
                t: 10.0,
            },
            Applied {
                index: 0,
                on: false,
                t: 16.0,
            },
        ];
        let r = FaultRecovery::compute(&faults, &applied, &series());
        assert_eq!(r[0].healed_t, Some(16.0));
        assert_eq!(r[0].half_throughput_after_secs, Some(2.0));
    }

    #[test]
    fn idle_drop_and_other_faults_get_no_record() {
        let faults = [
            FaultSpec::parse("idle-drop=8s").unwrap(),
            FaultSpec::parse("failover@10s").unwrap(),
        ];
        let applied = [
            Applied {
                index: 0,
                on: true,
                t: 0.0,
            },
            Applied {
                index: 1,
                on: true,
                t: 10.0,
            },
        ];
        assert!(FaultRecovery::compute(&faults, &applied, &series()).is_empty());
    }

    #[test]
    fn never_recovering_is_none() {
        let faults = [FaultSpec::parse("vanish@10s").unwrap()];
        let applied = [Applied {
            index: 0,
            on: true,
            t: 10.0,
        }];
        let flat: Vec<Sample> = series().into_iter().take(16).collect();
        let r = FaultRecovery::compute(&faults, &applied, &flat);
        assert_eq!(r[0].half_throughput_after_secs, None);
    }
}
