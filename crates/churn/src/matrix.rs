//! `churn matrix`: ours against plain deadpool-postgres over a grid of concurrency and
//! pool sizes.
//!
//! Each cell runs twice, in both orders (`baseline, ours, per-connect`, then the
//! reverse), on one emulator that serves every cell, with new pools per order. A cell's
//! figure is the mean of its two orders' medians of per-round ratios. `per-connect` is the
//! control: once warm, with tokens that do not rotate in the run, it is plain
//! deadpool-postgres, so its ratio shows how far the machine strays from 1.0 in that cell;
//! a cell whose control strays more than the tolerance runs once more, and the second
//! run stands.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::time::Instant;

use crate::cli::{Args, MatrixArgs, Target};
use crate::pools::PoolUnderTest;
use crate::pools::{MATRIX_POOLS, PoolKind};
use crate::report::{Machine, RunResult};
use crate::run::{self, RunOptions};
use crate::target::EmulatorServer;
use crate::workload::Workload;

/// One order of one cell.
#[derive(Debug, Clone, Serialize)]
pub struct OrderRun {
    /// The pools in round order.
    pub order: Vec<PoolKind>,
    /// Rounds run.
    pub rounds: usize,
    /// Baseline requests per second.
    pub baseline_rps: f64,
    /// Ours ÷ baseline, median of rounds.
    pub ours: f64,
    /// Ours' checkout p99 ÷ baseline's.
    pub ours_p99: f64,
    /// Control ÷ baseline, median of rounds.
    pub control: f64,
    /// Control's checkout p99 ÷ baseline's.
    pub control_p99: f64,
    /// Failed requests, all pools.
    pub errors: u64,
}

/// One cell: a number of tasks on pools of one size.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// Concurrent tasks.
    pub tasks: usize,
    /// Pool size.
    pub max_size: usize,
    /// Ours ÷ baseline: the mean of both orders' medians of rounds.
    pub ours: f64,
    /// Ours' checkout p99 ÷ baseline's, mean of both orders.
    pub ours_p99: f64,
    /// Control ÷ baseline, as `ours`.
    pub control: f64,
    /// Control's checkout p99 ÷ baseline's, mean of both orders.
    pub control_p99: f64,
    /// The control strayed more than the tolerance in the run that stands.
    pub control_strays: bool,
    /// The runs of the cell, both orders each; the last one stands.
    pub runs: Vec<[OrderRun; 2]>,
}

/// The whole matrix.
#[derive(Debug, Clone, Serialize)]
pub struct MatrixResult {
    /// `churn` version.
    pub churn_version: String,
    /// The command line.
    pub command: String,
    /// Unix time the matrix started.
    pub started_unix: u64,
    /// Wall time of the matrix.
    pub elapsed_secs: f64,
    /// The machine.
    pub machine: Machine,
    /// Settings.
    pub settings: serde_json::Value,
    /// Cells, by pool size then tasks.
    pub cells: Vec<Cell>,
}

/// Runs the matrix, prints its table and writes its JSON.
pub async fn run(args: &Args, m: &MatrixArgs) -> Result<(), String> {
    check(args, m)?;
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let t0 = Instant::now();
    let mut base = args.clone();
    base.token_lifetime = m.token_lifetime;
    let largest = m.sizes.iter().copied().max().unwrap_or(1);
    let server = EmulatorServer::start(&base, MATRIX_POOLS.len(), largest).await?;
    let mut cells = Vec::new();
    for &max_size in &m.sizes {
        for &tasks in &m.tasks {
            let mut cell_args = base.clone();
            cell_args.max_size = max_size;
            cell_args.tasks = tasks;
            let mut runs = Vec::new();
            loop {
                let mut reverse = MATRIX_POOLS;
                reverse.reverse();
                let first = order_run(&server, &cell_args, m, &MATRIX_POOLS).await?;
                let second = order_run(&server, &cell_args, m, &reverse).await?;
                let strays = strays(mean(first.control, second.control), m.control_tolerance);
                runs.push([first, second]);
                if !strays || runs.len() >= 2 {
                    break;
                }
                eprintln!(
                    "churn matrix: {tasks} tasks, pool {max_size}: the control strayed, running the cell again"
                );
            }
            let cell = cell_of(tasks, max_size, runs, m.control_tolerance);
            if !args.quiet {
                eprintln!(
                    "churn matrix: {tasks} tasks, pool {max_size}: ours x{:.3}, p99 x{:.3}; control x{:.3}",
                    cell.ours, cell.ours_p99, cell.control
                );
            }
            cells.push(cell);
        }
    }
    server.into_setup(Vec::new(), &base).shutdown().await;
    let result = MatrixResult {
        churn_version: env!("CARGO_PKG_VERSION").to_string(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        started_unix,
        elapsed_secs: t0.elapsed().as_secs_f64(),
        machine: Machine::detect(),
        settings: serde_json::json!({
            "tasks": m.tasks,
            "sizes": m.sizes,
            "per_pool_secs": m.per_pool.as_secs_f64(),
            "round_secs": m.round.as_secs_f64(),
            "warmup_secs": base.warmup.as_secs_f64(),
            "token_lifetime_secs": m.token_lifetime.as_secs_f64(),
            "query": base.query,
            "control_tolerance": m.control_tolerance,
        }),
        cells,
    };
    if let Some(path) = &m.json {
        let text = serde_json::to_string_pretty(&result).map_err(|e| format!("JSON: {e}"))?;
        std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    if m.markdown {
        print!("{}", markdown(&result));
    } else {
        print!("{}", table(&result));
    }
    Ok(())
}

/// Refuses what the matrix cannot measure.
fn check(args: &Args, m: &MatrixArgs) -> Result<(), String> {
    if args.target != Target::Emulator {
        return Err("churn matrix runs on the emulator target".into());
    }
    if !args.faults.is_empty() {
        return Err("churn matrix measures the warm path: no --fault".into());
    }
    if m.tasks.is_empty() || m.sizes.is_empty() || m.tasks.contains(&0) || m.sizes.contains(&0) {
        return Err("churn matrix: --tasks and --sizes need numbers of at least 1".into());
    }
    if m.round.is_zero() || m.per_pool < m.round {
        return Err(
            "churn matrix: --round must be positive and --per-pool at least one round".into(),
        );
    }
    if !(m.control_tolerance.is_finite() && m.control_tolerance >= 0.0) {
        return Err("churn matrix: --control-tolerance must be a non-negative number".into());
    }
    Ok(())
}

/// Runs new pools of `order` on `server` for one order of a cell.
async fn order_run(
    server: &EmulatorServer,
    args: &Args,
    m: &MatrixArgs,
    order: &[PoolKind],
) -> Result<OrderRun, String> {
    let pools: Vec<Arc<dyn PoolUnderTest>> = server.pools(args, order).await?;
    let opts = RunOptions {
        tasks: args.tasks,
        duration: m.per_pool,
        requests: None,
        round: m.round,
        warmup: args.warmup,
        workload: Workload {
            query: args.query,
            think: args.think,
            hold: args.hold,
            burst_every: None,
        },
        faults: Vec::new(),
        progress: false,
    };
    let result = run::run(pools.clone(), &opts, None, None).await;
    for p in &pools {
        p.close();
    }
    summarize(&result, order)
}

/// An order's figures from its run.
fn summarize(r: &RunResult, order: &[PoolKind]) -> Result<OrderRun, String> {
    let pool = |k: PoolKind| {
        r.pools
            .iter()
            .find(|p| p.pool == k)
            .ok_or_else(|| format!("churn matrix: no result for {}", k.name()))
    };
    let ratios = |k: PoolKind| -> Result<(f64, f64), String> {
        let x = pool(k)?
            .ratios
            .as_ref()
            .ok_or_else(|| format!("churn matrix: no ratios for {}", k.name()))?;
        Ok((
            x.throughput_median_of_rounds.unwrap_or(x.throughput),
            x.checkout_p99,
        ))
    };
    let (ours, ours_p99) = ratios(PoolKind::Ours)?;
    let (control, control_p99) = ratios(PoolKind::PerConnect)?;
    Ok(OrderRun {
        order: order.to_vec(),
        rounds: r.rounds,
        baseline_rps: pool(PoolKind::Baseline)?.throughput_rps,
        ours,
        ours_p99,
        control,
        control_p99,
        errors: r.pools.iter().map(|p| p.errors).sum(),
    })
}

/// A cell from its runs (the last one stands).
fn cell_of(tasks: usize, max_size: usize, runs: Vec<[OrderRun; 2]>, tolerance: f64) -> Cell {
    let [a, b] = runs.last().expect("a cell runs at least once");
    let control = mean(a.control, b.control);
    Cell {
        tasks,
        max_size,
        ours: mean(a.ours, b.ours),
        ours_p99: mean(a.ours_p99, b.ours_p99),
        control,
        control_p99: mean(a.control_p99, b.control_p99),
        control_strays: strays(control, tolerance),
        runs,
    }
}

fn mean(a: f64, b: f64) -> f64 {
    (a + b) / 2.0
}

/// Whether a control ratio is further than `tolerance` from 1.0 (or not a number).
fn strays(control: f64, tolerance: f64) -> bool {
    let within = (control - 1.0).abs() <= tolerance;
    !within
}

/// One cell's figures as the tables show them.
struct Row {
    tasks: usize,
    size: usize,
    /// Ours, baseline first / reverse / both.
    ours: [f64; 3],
    ours_p99: f64,
    /// The control, the same.
    control: [f64; 3],
    control_p99: f64,
    baseline_rps: f64,
    note: String,
}

impl Row {
    fn of(c: &Cell) -> Row {
        let [a, b] = c.runs.last().expect("a cell runs at least once");
        Row {
            tasks: c.tasks,
            size: c.max_size,
            ours: [a.ours, b.ours, c.ours],
            ours_p99: c.ours_p99,
            control: [a.control, b.control, c.control],
            control_p99: c.control_p99,
            baseline_rps: mean(a.baseline_rps, b.baseline_rps),
            note: note(c),
        }
    }
}

/// The table, one line per cell.
pub fn table(r: &MatrixResult) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "churn matrix: {} cells in {:.0} s, {}",
        r.cells.len(),
        r.elapsed_secs,
        r.machine.line()
    );
    let _ = writeln!(
        s,
        "ratios to baseline: throughput = median of rounds (order A = baseline first, B = reverse; both = their mean), p99 = checkout p99"
    );
    let _ = writeln!(
        s,
        "{:>6} {:>5} | {:>7} {:>7} {:>7} {:>7} | {:>7} {:>7} {:>7} {:>7} | {:>9} | note",
        "tasks",
        "size",
        "ours A",
        "ours B",
        "ours",
        "p99",
        "ctl A",
        "ctl B",
        "ctl",
        "ctl p99",
        "base rps"
    );
    for w in r.cells.iter().map(Row::of) {
        let _ = writeln!(
            s,
            "{:>6} {:>5} | {:>7.3} {:>7.3} {:>7.3} {:>7.3} | {:>7.3} {:>7.3} {:>7.3} {:>7.3} | {:>9.0} | {}",
            w.tasks,
            w.size,
            w.ours[0],
            w.ours[1],
            w.ours[2],
            w.ours_p99,
            w.control[0],
            w.control[1],
            w.control[2],
            w.control_p99,
            w.baseline_rps,
            w.note
        );
    }
    s
}

/// The table as Markdown, for docs/benchmarks.md.
pub fn markdown(r: &MatrixResult) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| tasks | pool | ours ÷ baseline, baseline first | reverse order | **both** | checkout p99 × baseline | control ÷ baseline, both | control p99 × | baseline req/s | note |"
    );
    let _ = writeln!(
        s,
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    );
    for w in r.cells.iter().map(Row::of) {
        let _ = writeln!(
            s,
            "| {} | {} | {:.3} | {:.3} | **{:.3}** | {:.3} | {:.3} | {:.3} | {:.0} | {} |",
            w.tasks,
            w.size,
            w.ours[0],
            w.ours[1],
            w.ours[2],
            w.ours_p99,
            w.control[2],
            w.control_p99,
            w.baseline_rps,
            w.note
        );
    }
    s
}

/// What a reader must know about a cell.
fn note(c: &Cell) -> String {
    let mut notes = Vec::new();
    if c.runs.len() > 1 {
        notes.push("repeated: the control strayed".to_string());
    }
    if c.control_strays {
        notes.push("control strays".to_string());
    }
    let errors: u64 = c.runs.iter().flatten().map(|o| o.errors).sum();
    if errors > 0 {
        notes.push(format!("{errors} errors"));
    }
    notes.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(ours: f64, control: f64) -> OrderRun {
        OrderRun {
            order: MATRIX_POOLS.to_vec(),
            rounds: 6,
            baseline_rps: 1000.0,
            ours,
            ours_p99: 1.0,
            control,
            control_p99: 1.0,
            errors: 0,
        }
    }

    #[test]
    fn a_cell_is_the_mean_of_both_orders_of_its_last_run() {
        let runs = vec![
            [order(0.90, 0.95), order(0.92, 0.96)],
            [order(0.98, 1.00), order(1.00, 1.004)],
        ];
        let c = cell_of(512, 32, runs, 0.01);
        assert!((c.ours - 0.99).abs() < 1e-9, "{}", c.ours);
        assert!((c.control - 1.002).abs() < 1e-9, "{}", c.control);
        assert!(!c.control_strays);
        assert_eq!(note(&c), "repeated: the control strayed");
    }

    #[test]
    fn both_tables_show_a_cell_from_its_last_run() {
        let runs = vec![[order(0.98, 1.00), order(1.00, 1.004)]];
        let r = MatrixResult {
            churn_version: String::new(),
            command: String::new(),
            started_unix: 0,
            elapsed_secs: 1.0,
            machine: Machine::default(),
            settings: serde_json::Value::Null,
            cells: vec![cell_of(512, 32, runs, 0.01)],
        };
        let md = markdown(&r);
        assert!(
            md.contains(
                "| 512 | 32 | 0.980 | 1.000 | **0.990** | 1.000 | 1.002 | 1.000 | 1000 |  |"
            ),
            "{md}"
        );
        let text = table(&r);
        assert!(
            text.lines().any(|l| l.trim_start().starts_with("512")
                && l.contains("0.990")
                && l.contains("1.002")),
            "{text}"
        );
    }

    #[test]
    fn a_control_off_by_more_than_the_tolerance_or_nan_strays() {
        assert!(!strays(1.0, 0.01));
        assert!(!strays(0.991, 0.01));
        assert!(strays(0.985, 0.01));
        assert!(strays(1.02, 0.01));
        assert!(strays(f64::NAN, 0.01));
    }
}
