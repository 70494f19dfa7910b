//! The renderings of a run's result: the summary table (stderr) and the Markdown rows
//! that docs/benchmarks.md takes.

use std::fmt::Write as _;

use super::*;

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
            && p.pool != p.pool.baseline()
        {
            let _ = writeln!(
                s,
                "{:<11} vs {}: throughput x{:.3} (median of rounds x{}), p99 checkout x{:.3}, p50 checkout x{:.3}{}",
                p.pool.name(),
                p.pool.baseline().name(),
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
