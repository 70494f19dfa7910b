//! `churn`: a load generator and benchmark for PostgreSQL pools under Entra ID token
//! rotation, connection retirement and faults.
//!
//! It drives `deadpool-entra` and three reference pools (plain `deadpool-postgres` with a
//! static password, a token fetched on every connect, a pool rebuilt on a timer) with the
//! same workload against the same server over the same TLS, interleaved in rounds so that
//! machine drift cancels, and reports each pool as a ratio to the baseline.
#![forbid(unsafe_code)]

mod chart;
mod cli;
mod duration;
mod fault;
mod matrix;
mod metrics;
mod pools;
mod relay;
mod report;
mod run;
mod target;
mod workload;

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::Parser;

use crate::cli::Args;
use crate::report::Machine;
use crate::run::RunOptions;
use crate::workload::Workload;

fn main() -> ExitCode {
    let args = Args::parse();
    // Network faults are made by the kernel (packet filter, conntrack, a private hosts
    // file): re-run in a private network namespace first, before any runtime, thread or
    // socket exists. The child re-runs for the identity relay below inside it.
    if args.network_faults() {
        if args.target != cli::Target::Emulator {
            eprintln!("churn: network faults need the emulator target");
            return ExitCode::from(2);
        }
        match entra_emulator::netns::reexec_isolated() {
            Ok(Some(status)) => {
                return ExitCode::from(status.code().unwrap_or(2).clamp(0, 255) as u8);
            }
            Ok(None) => {}
            Err(e) => {
                eprintln!("churn: network faults need a private network namespace: {e}");
                return ExitCode::from(2);
            }
        }
    }
    // Our pool uses the real `ManagedIdentityCredential`, which reads its endpoint from the
    // process environment: re-run with that environment set (see `relay`).
    if args.target == cli::Target::Emulator
        && args.pool_list().contains(&pools::PoolKind::Ours)
        && relay::child_port().is_none()
        && std::env::var_os("CHURN_NO_RELAY").is_none()
        && let Some(code) = relay::rerun_with_identity_env()
    {
        return code;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,deadpool=error")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("churn: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let code = match rt.block_on(app(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("churn: {e}");
            ExitCode::from(2)
        }
    };
    // A blocking task stuck behind a network fault must not keep the process alive.
    rt.shutdown_timeout(std::time::Duration::from_secs(5));
    code
}

async fn app(args: Args) -> Result<(), String> {
    if let Some(cli::Command::Matrix(m)) = &args.command {
        return matrix::run(&args, m).await;
    }
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if args.tasks == 0 || args.max_size == 0 {
        return Err("--tasks and --max-size must be at least 1".into());
    }
    if args.round.is_zero() {
        return Err("--round must be positive".into());
    }
    if args.requests.is_none() && args.duration.is_zero() {
        return Err("--duration must be positive (or give --requests)".into());
    }
    let kinds = args.pool_list();
    let setup = target::setup(&args, &kinds).await?;
    let opts = RunOptions {
        tasks: args.tasks,
        duration: args.duration,
        requests: args.requests,
        round: args.round,
        warmup: args.warmup,
        workload: Workload {
            query: args.query,
            think: args.think,
            hold: args.hold,
            burst_every: args.burst_every,
        },
        faults: args.faults.clone(),
        progress: !args.quiet,
    };
    let mut result = run::run(
        setup.pools.clone(),
        &opts,
        setup.probe.clone(),
        setup.sink.clone(),
    )
    .await;
    for p in &setup.pools {
        p.close();
    }
    result.churn_version = env!("CARGO_PKG_VERSION").to_string();
    result.started_unix = started_unix;
    result.command = std::env::args().collect::<Vec<_>>().join(" ");
    result.machine = Machine::detect();
    result.azure_network = args.network_faults();
    result.settings = serde_json::json!({
        "target": args.target,
        "pools": kinds,
        "tasks": args.tasks,
        "duration_secs": args.duration.as_secs_f64(),
        "requests": args.requests,
        "round_secs": args.round.as_secs_f64(),
        "warmup_secs": args.warmup.as_secs_f64(),
        "cold": args.cold,
        "max_size": args.max_size,
        "min_connections": args.min_connections,
        "replica_pool": args.replica_pool,
        "token_cache_window_secs": args.token_cache_window.map(|d| d.as_secs_f64()),
        "burst_every_secs": args.burst_every.map(|d| d.as_secs_f64()),
        "query": args.query,
        "think_ms": args.think.as_secs_f64() * 1e3,
        "hold_ms": args.hold.as_secs_f64() * 1e3,
        "token_lifetime_secs": args.token_lifetime.as_secs_f64(),
        "wait_timeout_secs": args.wait_timeout.as_secs_f64(),
        "faults": args.faults,
        "target_details": setup.details,
    });

    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&result).map_err(|e| format!("JSON: {e}"))?;
        std::fs::write(path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    if let Some(path) = &args.chart {
        chart::write_svg(&result, path)?;
    }
    if !args.quiet {
        eprint!("{}", report::table(&result));
    }
    if args.markdown {
        print!("{}", report::markdown(&result));
    }
    setup.shutdown().await;
    Ok(())
}
