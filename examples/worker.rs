//! A long-running job consumer on a `deadpool-entra` pool.
//!
//! ```sh
//! cargo run --example worker                        # until Ctrl-C, against the emulator
//! WORKER_SECONDS=60 cargo run --example worker      # a bounded run
//! ```
//!
//! Consumers claim jobs from a `jobs` table with `FOR UPDATE SKIP LOCKED` (see
//! [`deadpool_entra_examples::jobs`]). Database trouble that can pass (a killed session,
//! a failover, an identity endpoint outage that outlasts the cached token) is retried with
//! capped, jittered backoff; the job's own failures are retried by the queue with growing
//! delays. Built to run for days: the pool refreshes its token ahead of expiry and retires
//! connections before their token expires, so nothing here deals with tokens.
//!
//! Environment: `WORKER_SECONDS` (default: run until interrupted), `WORKER_CONCURRENCY`
//! (default 4), `WORKER_PRODUCE` (default `1`: also enqueue demo jobs; `0` to only
//! consume), `RUST_LOG`. Against the emulator, tokens live 30 s, so you see rotations.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use deadpool_entra::Pool;
use deadpool_entra_examples::{
    BoxError,
    backend::{self, ConnectOptions},
    init_tracing,
    jobs::{self, Job, Outcome},
    seconds_from_env, shutdown_signal,
};
use tokio::sync::watch;

#[derive(Default)]
struct Counters {
    done: AtomicU64,
    retried: AtomicU64,
    failed: AtomicU64,
    db_errors: AtomicU64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    deadpool_entra_examples::report(run().await)
}

async fn run() -> Result<(), BoxError> {
    init_tracing("info,deadpool_entra=info");
    let run_for = seconds_from_env("WORKER_SECONDS", None)?;
    let concurrency: usize = std::env::var("WORKER_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let produce = std::env::var("WORKER_PRODUCE").map_or(true, |v| v != "0");

    let Some(backend) = backend::connect(ConnectOptions {
        token_lifetime: Duration::from_secs(30),
        max_size: Some(concurrency + 2),
    })
    .await?
    else {
        return Ok(()); // this process hosted the emulator; the worker ran in a child
    };
    tracing::info!("pool ready: {}", backend.description);
    jobs::migrate(&backend.pool).await?;

    // One signal for every task: `true` means stop after the current job.
    let (stop_tx, stop_rx) = watch::channel(false);
    let counters = Arc::new(Counters::default());
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..concurrency {
        tasks.spawn(consume(
            n,
            backend.pool.clone(),
            counters.clone(),
            stop_rx.clone(),
        ));
    }
    if produce {
        tasks.spawn(produce_demo_jobs(backend.pool.clone(), stop_rx.clone()));
    }
    tasks.spawn(report(
        backend.pool.clone(),
        counters.clone(),
        stop_rx.clone(),
    ));

    match run_for {
        Some(d) => {
            tracing::info!(
                "worker running for {} s ({concurrency} consumers); Ctrl-C to stop sooner",
                d.as_secs()
            );
            tokio::select! {
                () = tokio::time::sleep(d) => {},
                () = shutdown_signal() => {},
            }
        }
        None => {
            tracing::info!("worker running ({concurrency} consumers); Ctrl-C to stop");
            shutdown_signal().await;
        }
    }
    tracing::info!("stopping: letting consumers finish their current job");
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}

    let stats = backend.pool.stats();
    tracing::info!(
        done = counters.done.load(Ordering::Relaxed),
        retried = counters.retried.load(Ordering::Relaxed),
        failed = counters.failed.load(Ordering::Relaxed),
        db_errors_retried = counters.db_errors.load(Ordering::Relaxed),
        tokens_fetched = stats.token.refreshes_ok,
        logins = stats.logins_ok,
        retired_token_age = stats.retired_token_age,
        "worker stopped"
    );
    backend.pool.close();
    Ok(())
}

/// One consumer: claim, work, record, repeat; back off on database trouble.
async fn consume(n: usize, pool: Pool, counters: Arc<Counters>, mut stop: watch::Receiver<bool>) {
    let mut failures = 0u32;
    while !*stop.borrow() {
        match jobs::run_one(&pool, work).await {
            Ok(Some(outcome)) => {
                failures = 0;
                match outcome {
                    Outcome::Done(_) => counters.done.fetch_add(1, Ordering::Relaxed),
                    Outcome::Retry(id) => {
                        tracing::debug!(consumer = n, job = id, "job failed, will retry");
                        counters.retried.fetch_add(1, Ordering::Relaxed)
                    }
                    Outcome::Failed(id) => {
                        tracing::warn!(consumer = n, job = id, "job failed for good");
                        counters.failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
            Ok(None) => {
                // Queue empty: poll again soon (LISTEN/NOTIFY would avoid the polling).
                sleep_or_stop(Duration::from_millis(200), &mut stop).await;
            }
            Err(e) => {
                counters.db_errors.fetch_add(1, Ordering::Relaxed);
                let delay = jobs::backoff(
                    failures,
                    Duration::from_millis(100),
                    Duration::from_secs(10),
                );
                failures = failures.saturating_add(1);
                if e.is_transient() {
                    tracing::warn!(consumer = n, error = %e, retry_in_ms = delay.as_millis() as u64, "transient database error");
                } else {
                    // Not transient (permissions, schema): keep trying slowly, loudly, so
                    // that fixing the grant brings the worker back without a restart.
                    tracing::error!(consumer = n, error = %e, retry_in_ms = delay.as_millis() as u64, "database error");
                }
                sleep_or_stop(delay, &mut stop).await;
            }
        }
    }
}

/// The "work": count the words of the payload. One job in ten fails at its first
/// attempt, to show the queue's retries.
async fn work(job: Job) -> Result<String, String> {
    tokio::time::sleep(Duration::from_millis(5)).await;
    if job.id % 10 == 0 && job.attempts == 0 {
        return Err("upstream timed out (simulated)".into());
    }
    Ok(format!("{} words", job.payload.split_whitespace().count()))
}

/// Enqueues a batch of demo jobs every second.
async fn produce_demo_jobs(pool: Pool, mut stop: watch::Receiver<bool>) {
    let mut batch = 0u64;
    while !*stop.borrow() {
        batch += 1;
        let payloads: Vec<String> = (0..20)
            .map(|i| format!("batch {batch} job {i}: the quick brown fox"))
            .collect();
        if let Err(e) = jobs::enqueue(&pool, &payloads).await {
            tracing::warn!(error = %e, "enqueue failed; next batch in 1 s");
        }
        sleep_or_stop(Duration::from_secs(1), &mut stop).await;
    }
}

/// Logs progress and the pool's token and connection state every 10 seconds.
async fn report(pool: Pool, counters: Arc<Counters>, mut stop: watch::Receiver<bool>) {
    while !*stop.borrow() {
        sleep_or_stop(Duration::from_secs(10), &mut stop).await;
        let stats = pool.stats();
        let queued = jobs::counts(&pool).await.map(|c| c.0).unwrap_or(-1);
        tracing::info!(
            done = counters.done.load(Ordering::Relaxed),
            retried = counters.retried.load(Ordering::Relaxed),
            failed = counters.failed.load(Ordering::Relaxed),
            queued,
            token_expires_in_s = stats.token.expires_in_secs.map(|s| s.round() as i64),
            tokens_fetched = stats.token.refreshes_ok,
            logins = stats.logins_ok,
            retired_token_age = stats.retired_token_age,
            pool_size = stats.pool.size,
            "progress"
        );
    }
}

async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) {
    tokio::select! {
        () = tokio::time::sleep(d) => {},
        _ = stop.changed() => {},
    }
}
