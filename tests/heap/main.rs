//! Live heap bytes across thousands of logins: the pool (and the emulator in the same
//! process) must not keep anything per login once a connection is gone.
//!
//! Resident memory (the soak scenarios, `churn`) mixes the allocator's fragmentation with
//! real growth; this binary counts every allocation and deallocation instead, with a
//! counting global allocator, so "flat memory" is asserted in bytes.

use std::alloc::System;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use deadpool_entra::RetirePolicy;
use deadpool_entra_tests::{
    build_pool_of_4, builder_for, cli_credential_unrecorded, emulator_builder, run_load,
    short_token_policies,
};
use entra_emulator::Emulator;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes currently allocated by the whole process.
fn live_bytes() -> i128 {
    // stats_alloc folds a realloc's growth or shrinkage into these two already.
    let s = GLOBAL.stats();
    s.bytes_allocated as i128 - s.bytes_deallocated as i128
}

/// Load until the pool has logged in `logins` more times (bounded by `max_for`), then let
/// it settle and read the live heap: the least reading for each number of sessions open
/// (the pool keeps a spare now and then; a live session, with the in-process emulator's
/// buffers, is not a per-login leak, so only readings with as many sessions open are
/// compared).
async fn run_until_logins(
    pool: &deadpool_entra::Pool,
    emu: &Emulator,
    logins: u64,
    max_for: Duration,
) -> BTreeMap<u64, i128> {
    let target = pool.stats().logins_ok + logins;
    let start = Instant::now();
    while pool.stats().logins_ok < target && start.elapsed() < max_for {
        let r = run_load(
            pool,
            8,
            Duration::from_millis(500),
            Duration::ZERO,
            1_000_000,
        )
        .await;
        assert_eq!(r.failed, 0, "{:?}", r.first_errors);
    }
    // Background logins and connection tasks finish; then the smallest reading per
    // session count (a reading can land on a buffer in flight).
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Three seconds of readings: a token period (the session count at rest follows it).
    let mut least = BTreeMap::new();
    for _ in 0..300 {
        let sessions = emu.counters().sessions_open;
        let bytes = live_bytes();
        let e = least.entry(sessions).or_insert(i128::MAX);
        *e = (*e).min(bytes);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    least
}

/// The readings of both phases at the largest session count seen in both.
fn same_sessions(a: &BTreeMap<u64, i128>, b: &BTreeMap<u64, i128>) -> (u64, i128, i128) {
    a.iter()
        .rev()
        .find_map(|(n, x)| b.get(n).map(|y| (*n, *x, *y)))
        .unwrap_or_else(|| panic!("no session count seen in both phases: {a:?} {b:?}"))
}

/// Connections live 100 ms (max lifetime) and tokens 3 s, so a pool of 4 under load logs
/// in about 10 times a second (replacements are logged in by the background, at most
/// two at a time) and rotates its token every 1.5 s. After 300 logins of warm-up, 1,000
/// more logins may leave at most 512 KiB more on the heap, compared with as many
/// sessions open (512 B a login; a connection, session or task kept per login would be
/// several KiB each, over 1,000 logins several MiB), and the pool's runtime no more than
/// a few more tasks. The credential keeps no token (the secret scan's list of every token
/// was the "growth with time" earlier runs saw; see testing.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_heap_stays_flat_across_thousands_of_logins() {
    const LIFETIME: Duration = Duration::from_secs(3);
    // The scenarios' cache window (60 % of the life, see `start_emulator`): with the
    // default twelfth, the pool's half-life asks get the same token back, some 200 times.
    let emu = emulator_builder()
        .token_lifetime(LIFETIME)
        .token_cache_window(LIFETIME * 6 / 10)
        .start()
        .await
        .expect("the emulator starts (needs initdb/postgres binaries)");
    let pool = build_pool_of_4(
        short_token_policies(builder_for(&emu, cli_credential_unrecorded(&emu)), LIFETIME)
            .retire_policy(RetirePolicy {
                max_lifetime: Some(Duration::from_millis(100)),
                sweep_interval: Duration::from_millis(100),
                ..Default::default()
            }),
    )
    .await;

    let warm_readings = run_until_logins(&pool, &emu, 300, Duration::from_secs(60)).await;
    let stats_warm = pool.stats();
    let tasks_warm = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let after_readings = run_until_logins(&pool, &emu, 1_000, Duration::from_secs(180)).await;
    let (sessions, warm, after) = same_sessions(&warm_readings, &after_readings);
    let stats = pool.stats();
    let logins = stats.logins_ok - stats_warm.logins_ok;
    let refreshes = stats.token.refreshes_ok - stats_warm.token.refreshes_ok;
    let per_login = (after - warm) as f64 / logins as f64;
    let tasks = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    println!(
        "readings by sessions open: after warm-up {warm_readings:?}, at the end {after_readings:?}; compared at {sessions}; tasks alive {tasks_warm} then {tasks}; pool {:?} then {:?}",
        stats_warm.pool, stats.pool
    );
    println!(
        "live heap {warm} B after warm-up, {after} B after {logins} more logins and {refreshes} token refreshes: {:+} B ({per_login:+.1} B per login); token: {:?}; emulator: {:?}",
        after - warm,
        stats.token,
        emu.counters()
    );
    assert!(logins >= 1_000, "only {logins} logins");
    assert_eq!(emu.counters().expired_token_logins, 0);
    assert!(
        after - warm <= 512 * 1024,
        "the live heap grew by {} B ({per_login:.1} B per login)",
        after - warm
    );
    assert!(
        tasks <= tasks_warm + 8,
        "tasks on the pool's runtime grew from {tasks_warm} to {tasks}"
    );
    pool.close();
}
