//! Shared helpers for the end-to-end scenarios in `tests/scenarios/`: starting an
//! emulator, building pools with real `azure_identity` credentials, bounded load loops,
//! stats sampling, the secret scan, and printing what the emulator saw when a check fails.

pub mod child;
pub mod credentials;
pub mod secrets;
pub mod timeline;

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_entra::{Pool, PoolBuilder, RefreshPolicy, RetirePolicy, Stats};
use entra_emulator::Emulator;

pub use credentials::{Recording, cli_credential, cli_credential_unrecorded};
pub use secrets::{init_tracing, note_error, note_text, record_secret};

/// The scope Azure Database for PostgreSQL tokens are requested for.
pub const SCOPE: &str = "https://ossrdbms-aad.database.windows.net/.default";

/// Starts an emulator whose tokens live `lifetime`, with the TRACE capture installed.
///
/// Its identity endpoints cache tokens as Azure's do (the same token again until the
/// refresh window), with the window scaled to these seconds-long tokens the way the pool's
/// own schedule is scaled ([`short_token_policies`]): on Azure the pool asks for a new
/// token 270 s before expiry, inside the endpoints' 5-minute window, and retires
/// connections from 360 s to 60 s before; here it asks at half-life and retires in the
/// second half, so the window is 60 % of the life. The default (a twelfth of the life,
/// 0.5 s for a 6 s token) would leave no room to spread retirements that Azure leaves.
pub async fn start_emulator(lifetime: Duration) -> Emulator {
    init_tracing();
    emulator_builder()
        .token_lifetime(lifetime)
        .token_cache_window(lifetime * 6 / 10)
        .start()
        .await
        .expect("the emulator starts (needs initdb/postgres binaries)")
}

/// An emulator builder whose `az` and `azd` run this package's `emulator-cli` binary,
/// which cargo builds before the tests into the directory above a test's `deps/`. (The
/// emulator would otherwise look for an `entra-emulator` binary there, which `cargo test
/// -p deadpool-entra-tests` alone does not build.)
pub fn emulator_builder() -> entra_emulator::EmulatorBuilder {
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.join("emulator-cli")))
        .filter(|p| p.is_file());
    match sibling {
        Some(p) => Emulator::builder().cli_program(p),
        None => Emulator::builder(),
    }
}

/// A pool builder aimed at the emulator's TLS front, verifying its certificate with the
/// emulator's CA, logging in as the emulator's default user with a real
/// `AzureCliCredential` (through the emulator's `az`).
pub fn builder_for(emu: &Emulator, credential: Arc<Recording>) -> PoolBuilder {
    Pool::builder()
        .host(emu.pg_host())
        .port(emu.pg_port())
        .dbname(emu.database())
        .user(emu.default_user())
        .ssl_root_cert(emu.ca_cert_path())
        .credential(credential)
}

/// Builds the small pool most scenarios use: 4 connections, 15 s wait timeout.
pub async fn build_pool_of_4(b: PoolBuilder) -> Pool {
    b.max_size(4)
        .wait_timeout(Some(Duration::from_secs(15)))
        .build()
        .await
        .expect("pool builds")
}

/// Refresh policy scaled to tokens that live only `lifetime` (seconds in these scenarios):
/// refresh at half-life and retry quickly (100 ms to 1 s). Recycling keeps the library's
/// defaults, which scale themselves to the token's life (margin 10 %, spread up to half of
/// the rest), with a sweep every 100 ms.
pub fn short_token_policies(b: PoolBuilder, lifetime: Duration) -> PoolBuilder {
    b.refresh_policy(RefreshPolicy {
        refresh_before_expiry: lifetime / 2,
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
        ..Default::default()
    })
    .retire_policy(RetirePolicy {
        sweep_interval: Duration::from_millis(100),
        ..Default::default()
    })
}

/// Prints what the emulator saw (and the pool's stats) when the scenario panics, so that a
/// red CI run explains itself. Create it right after the emulator; attach the pool later.
pub struct Explain<'a> {
    name: &'static str,
    emu: &'a Emulator,
    pool: Mutex<Option<Pool>>,
    notes: Mutex<Vec<String>>,
}

impl<'a> Explain<'a> {
    pub fn new(name: &'static str, emu: &'a Emulator) -> Self {
        Self {
            name,
            emu,
            pool: Mutex::new(None),
            notes: Mutex::new(Vec::new()),
        }
    }
    pub fn pool(&self, pool: &Pool) {
        *self.pool.lock().unwrap_or_else(|e| e.into_inner()) = Some(pool.clone());
    }
    /// Records a measurement; printed at once (visible with `--nocapture`) and again in
    /// the failure report.
    pub fn note(&self, note: impl Into<String>) {
        let note = note.into();
        eprintln!("[{}] {note}", self.name);
        self.notes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(note);
    }
}

impl Drop for Explain<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            // Every scenario ends with the secret scan over everything captured so far in
            // this process (its own events and those of the scenarios running beside it).
            let report = secrets::scan_for_leaks();
            assert!(
                report.leaks.is_empty(),
                "scenario `{}`: secrets found in logs or error messages ({} bytes, {} secrets scanned): {:#?}",
                self.name,
                report.bytes_scanned,
                report.secrets_checked,
                report.leaks
            );
            return;
        }
        eprintln!(
            "==== scenario `{}` failed; what the emulator saw:",
            self.name
        );
        eprintln!("{:#?}", self.emu.counters());
        if let Some(pool) = self.pool.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            eprintln!("==== pool stats:\n{:#?}", pool.stats());
        }
        for n in self.notes.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            eprintln!("note: {n}");
        }
    }
}

/// The result of a bounded load run.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub ok: u64,
    pub failed: u64,
    /// The first few failures (Display of the error), for the failure message.
    pub first_errors: Vec<String>,
}

/// `tasks` concurrent tasks, each looping `pool.get()` + `SELECT 1` until `run_for` has
/// passed (and at most `max_per_task` iterations), pausing `pause` between requests.
pub async fn run_load(
    pool: &Pool,
    tasks: usize,
    run_for: Duration,
    pause: Duration,
    max_per_task: u64,
) -> LoadReport {
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(Mutex::new(Vec::new()));
    let deadline = Instant::now() + run_for;
    let mut handles = Vec::with_capacity(tasks);
    for _ in 0..tasks {
        let pool = pool.clone();
        let (ok, failed, errors) = (ok.clone(), failed.clone(), errors.clone());
        handles.push(tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < deadline && n < max_per_task {
                n += 1;
                match one_request(&pool).await {
                    Ok(()) => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        let mut errs = errors.lock().unwrap_or_else(|e| e.into_inner());
                        if errs.len() < 10 {
                            errs.push(e);
                        }
                    }
                }
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
        }));
    }
    for h in handles {
        h.await.expect("load task panicked");
    }
    let first_errors = errors.lock().unwrap_or_else(|e| e.into_inner()).clone();
    LoadReport {
        ok: ok.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        first_errors,
    }
}

/// One checkout and `SELECT 1`, bounded by 20 s; the error's text (secret-scanned) on failure.
pub async fn one_request(pool: &Pool) -> Result<(), String> {
    let work = async {
        let client = pool.get().await.map_err(|e| note_error(&e))?;
        let row = client
            .query_one("SELECT 1::int4", &[])
            .await
            .map_err(|e| note_error(&e))?;
        let one: i32 = row.get(0);
        if one == 1 {
            Ok(())
        } else {
            Err(format!("SELECT 1 returned {one}"))
        }
    };
    match tokio::time::timeout(Duration::from_secs(20), work).await {
        Ok(r) => r,
        Err(_) => Err("request did not finish within 20 s".into()),
    }
}

/// Samples `pool.stats()` every `every` until stopped (or `max_for` passes).
pub struct Sampler {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: tokio::task::JoinHandle<Vec<(Duration, Stats)>>,
}

impl Sampler {
    pub fn start(pool: &Pool, every: Duration, max_for: Duration) -> Self {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let pool = pool.clone();
        let stop2 = stop.clone();
        let handle = tokio::spawn(async move {
            let t0 = Instant::now();
            let mut samples = Vec::new();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop2.load(Ordering::Relaxed) && t0.elapsed() < max_for {
                tick.tick().await;
                samples.push((t0.elapsed(), pool.stats()));
            }
            samples
        });
        Self { stop, handle }
    }
    pub async fn finish(self) -> Vec<(Duration, Stats)> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.await.expect("sampler panicked")
    }
}

/// Polls `cond` every 20 ms until it holds or `within` passes; returns the time it took.
pub async fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    loop {
        if cond() {
            return Some(t0.elapsed());
        }
        if t0.elapsed() >= within {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// This process's resident set size in KiB (Linux), from `/proc/self/status`.
pub fn vm_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
