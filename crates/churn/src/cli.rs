//! Command-line interface of `churn`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;

pub use crate::duration::parse_duration;
use crate::fault::FaultSpec;
use crate::pools::PoolKind;
use crate::workload::QueryKind;

/// Drive PostgreSQL pools hard while Entra tokens rotate, connections retire and faults
/// strike, and measure what users feel.
#[derive(Debug, Clone, Parser)]
#[command(name = "churn", version, about, long_about = None)]
pub struct Args {
    /// `churn matrix`: a grid of runs instead of one run.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Where the load goes: an in-process emulator (default) or the server the
    /// environment describes (the library's variables, `PGHOST`, `AZURE_POSTGRESQL_*`, ...).
    #[arg(long, value_enum, default_value_t = Target::Emulator)]
    pub target: Target,

    /// A pool under test; repeat to test several (interleaved in rounds).
    #[arg(long = "pool", value_enum)]
    pub pools: Vec<PoolKind>,

    /// Test all four pools, interleaved in rounds A B C D A B C D ...
    #[arg(long, conflicts_with = "pools")]
    pub compare: bool,

    /// Concurrent tasks driving the pool.
    #[arg(long, default_value_t = 64)]
    pub tasks: usize,

    /// Measured time per pool (the run lasts about pools x duration, plus warm-up).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,

    /// Stop each pool after this many requests instead of after `--duration`.
    #[arg(long)]
    pub requests: Option<u64>,

    /// Length of one round in `--compare` / multi-pool runs.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    pub round: Duration,

    /// Unmeasured warm-up per pool before its first round (0s for a cold start).
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub warmup: Duration,

    /// Build our pool lazily: the first token is fetched by the first checkouts (cold start).
    #[arg(long)]
    pub cold: bool,

    /// Maximum pool size (the same for every pool).
    #[arg(long, default_value_t = 16)]
    pub max_size: usize,

    /// Ours only: a second pool, on the emulator's read-replica front, shares the first
    /// one's `TokenProvider`; requests go to each in turn (identity calls are counted
    /// once, for both).
    #[arg(long)]
    pub replica_pool: bool,

    /// Our pool's `min_connections` (connections kept open from the build on).
    #[arg(long, default_value_t = 0)]
    pub min_connections: usize,

    /// Query each request runs.
    #[arg(long, value_enum, default_value_t = QueryKind::Select1)]
    pub query: QueryKind,

    /// Think time between two requests of one task.
    #[arg(long, value_parser = parse_duration, default_value = "0ms")]
    pub think: Duration,

    /// Time a task holds its connection after the query (creates pool pressure).
    #[arg(long, value_parser = parse_duration, default_value = "0ms")]
    pub hold: Duration,

    /// Idle then burst: every task makes one request at each multiple of this interval
    /// (all at once; with `--hold`, their checkouts overlap) and is idle in between.
    #[arg(long, value_parser = parse_duration)]
    pub burst_every: Option<Duration>,

    /// Token lifetime the emulator issues (emulator target only).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub token_lifetime: Duration,

    /// How long before expiry the emulator's identity endpoint mints a new token instead
    /// of serving its cached one (default: 60 % of `--token-lifetime`, the tests' scaling
    /// of Azure's 5-minute window to seconds-long tokens).
    #[arg(long, value_parser = parse_duration)]
    pub token_cache_window: Option<Duration>,

    /// Scale ours' token timings (`refresh_before_expiry`, `token_margin`, `token_spread`,
    /// and `sweep_interval`, which the sweeper floors at 10 ms) to `--token-lifetime` as
    /// their defaults stand to an hour-long token. Without it, a token shorter than 9
    /// minutes is refreshed at half its life, so each connection logs in about once per
    /// half token life. `max_lifetime` (30 minutes) is not scaled: it is a policy of its
    /// own, which with hour-long tokens retires connections before their token does.
    #[arg(long)]
    pub azure_proportions: bool,

    /// How long a checkout may wait before it counts as an error.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub wait_timeout: Duration,

    /// A fault on the timeline (emulator target), e.g. `identity-outage@10s+20s`,
    /// `failover@30s`, `identity-latency=1s`. Repeatable. Times are from the start of
    /// the measured run. Network faults (`vanish[=NODE]@T`, `dns-flip[=NODE]@T`,
    /// `partition[=NODE]@T+D`, `idle-drop=D`; NODE: primary, standby, read-only) run
    /// churn in a private network namespace (needs root) with every pool reaching the
    /// server by its Azure name.
    #[arg(long = "fault", value_parser = FaultSpec::parse)]
    pub faults: Vec<FaultSpec>,

    /// Write the full result as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// Write an SVG chart: p99 checkout latency and throughput over time per pool.
    #[arg(long)]
    pub chart: Option<PathBuf>,

    /// Print Markdown rows (each pool as a ratio to the baseline) for docs/benchmarks.md.
    #[arg(long)]
    pub markdown: bool,

    /// No progress line and no summary table.
    #[arg(long)]
    pub quiet: bool,

    /// Static-password role for the baseline pools on the `env` target.
    #[arg(long, env = "CHURN_BASELINE_USER")]
    pub baseline_user: Option<String>,

    /// Password of `--baseline-user` on the `env` target.
    #[arg(long, env = "CHURN_BASELINE_PASSWORD", hide_env_values = true)]
    pub baseline_password: Option<String>,

    /// `per-connect` retires each connection after this long (± 10 %): a naive pool that
    /// logs in as often as ours does under rotation (ours: once per token generation, half
    /// the token's life with the default timings), to measure what new sessions cost the
    /// server apart from tokens.
    #[arg(long, value_parser = parse_duration)]
    pub per_connect_lifetime: Option<Duration>,

    /// Our pool retires connections on schedule even when no replacement can log in
    /// (`RetirePolicy::retire_without_replacement`), to measure what that costs.
    #[arg(long)]
    pub retire_without_replacement: bool,
}

/// What `churn` runs instead of one run.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Ours against `baseline` over a grid of tasks and pool sizes, each cell in both
    /// orders, with `per-connect` (a warm plain deadpool-postgres pool) as a control;
    /// prints one table of ratios and writes JSON. On the emulator target, with tokens
    /// that do not rotate in the run: the warm path's cost under contention.
    Matrix(MatrixArgs),
}

/// Options of `churn matrix` (the other options are `churn`'s, given before `matrix`).
#[derive(Debug, Clone, clap::Args)]
pub struct MatrixArgs {
    /// Concurrent tasks, one column of cells each.
    #[arg(long = "tasks", value_delimiter = ',', default_values_t = [32, 128, 512, 2048])]
    pub tasks: Vec<usize>,

    /// Pool sizes (the same for every pool), one row of cells each.
    #[arg(long = "sizes", value_delimiter = ',', default_values_t = [8, 32, 64])]
    pub sizes: Vec<usize>,

    /// Measured time of each pool in each order of each cell (4 s: the default matrix
    /// takes about 10 minutes, cells run again included).
    #[arg(long, value_parser = parse_duration, default_value = "4s")]
    pub per_pool: Duration,

    /// Round length.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub round: Duration,

    /// Token lifetime the emulator issues (1 hour: no rotation in the run).
    #[arg(long, value_parser = parse_duration, default_value = "1h")]
    pub token_lifetime: Duration,

    /// Run a cell again (once) when its control strays more than this from 1.0.
    #[arg(long, default_value_t = 0.01)]
    pub control_tolerance: f64,

    /// Write the matrix as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// Print the table as Markdown (for docs/benchmarks.md).
    #[arg(long)]
    pub markdown: bool,
}

impl Args {
    /// Whether a network fault was asked for: the run then needs a private network
    /// namespace and the emulator's Azure network.
    pub fn network_faults(&self) -> bool {
        self.faults.iter().any(|f| f.kind.is_network())
    }

    /// The `idle-drop=D` timeout, if one was asked for (the last one given holds).
    pub fn idle_drop(&self) -> Option<Duration> {
        self.faults.iter().rev().find_map(|f| match f.kind {
            crate::fault::FaultKind::IdleDrop(d) => Some(d),
            _ => None,
        })
    }

    /// The pools to test, in round order.
    pub fn pool_list(&self) -> Vec<PoolKind> {
        if let Some(Command::Matrix(_)) = self.command {
            return crate::pools::MATRIX_POOLS.to_vec();
        }
        if self.compare || self.pools.is_empty() {
            if self.compare {
                return vec![
                    PoolKind::Ours,
                    PoolKind::Baseline,
                    PoolKind::PerConnect,
                    PoolKind::Rebuild,
                ];
            }
            return vec![PoolKind::Ours];
        }
        let mut out = Vec::new();
        for p in &self.pools {
            if !out.contains(p) {
                out.push(*p);
            }
        }
        out
    }
}

/// Where the load goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// The in-process Entra ID + Azure PostgreSQL emulator.
    Emulator,
    /// A server described by the environment.
    Env,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("0ms").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn compare_lists_all_four() {
        let a = Args::parse_from(["churn", "--compare"]);
        assert_eq!(a.pool_list().len(), 4);
        let a = Args::parse_from(["churn", "--pool", "baseline", "--pool", "ours"]);
        assert_eq!(a.pool_list(), vec![PoolKind::Baseline, PoolKind::Ours]);
    }

    #[test]
    fn matrix_takes_lists_and_keeps_churns_options() {
        let a = Args::parse_from([
            "churn", "--query", "none", "matrix", "--tasks", "32,512", "--sizes", "8",
        ]);
        let Some(Command::Matrix(m)) = &a.command else {
            panic!("no matrix: {a:?}");
        };
        assert_eq!(m.tasks, vec![32, 512]);
        assert_eq!(m.sizes, vec![8]);
        assert_eq!(m.token_lifetime, Duration::from_secs(3600));
        assert_eq!(a.query, QueryKind::None);
        assert!(a.pool_list().contains(&PoolKind::Ours));
        let d = Args::parse_from(["churn", "matrix"]);
        let Some(Command::Matrix(m)) = &d.command else {
            panic!("no matrix");
        };
        assert_eq!(m.tasks, vec![32, 128, 512, 2048]);
        assert_eq!(m.sizes, vec![8, 32, 64]);
    }
}
