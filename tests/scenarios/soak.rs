//! Soak: many rotations under steady light load, in a child process of its own so that its
//! resident memory is its own (no other scenario, no log capture in the same process).
//!
//! CI runs the compressed version (2 s tokens, 120 rotations); the full-length version
//! (a rotation every 30 s for an hour, 120 rotations) is `#[ignore]`d: see docs/testing.md.

use std::time::{Duration, Instant};

use deadpool_entra_tests::child::{emit, is_child, run_child};
use deadpool_entra_tests::{
    build_pool_of_4, builder_for, cli_credential, emulator_builder, run_load, short_token_policies,
    vm_rss_kib,
};
use serde_json::json;

const APP: &str = "soak::app_soak";

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The soak itself: its own emulator, a pool of 4, 8 tasks of light load, until the pool
/// has taken `DPE_SOAK_ROTATIONS` tokens (bounded by `DPE_SOAK_MAX_SECS`). Reports the
/// counts and the resident memory after warm-up and at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of the soak scenarios; does nothing unless one of them starts it"]
async fn app_soak() {
    if !is_child(APP) {
        return;
    }
    let lifetime = Duration::from_secs(env_u64("DPE_SOAK_TOKEN_SECS", 2));
    let rotations = env_u64("DPE_SOAK_ROTATIONS", 120);
    let max_secs = env_u64("DPE_SOAK_MAX_SECS", 400);
    let emu = emulator_builder()
        .token_lifetime(lifetime)
        .start()
        .await
        .expect("emulator");
    let pool = build_pool_of_4(short_token_policies(
        builder_for(&emu, cli_credential(&emu)),
        lifetime,
    ))
    .await;
    let start = Instant::now();
    let (mut ok, mut failed, mut first_errors) = (0u64, 0u64, Vec::new());
    let (mut max_size, mut max_sessions) = (0usize, 0u64);
    let mut rss_warm: Option<u64> = None;
    let mut rss_max_after_warm = 0u64;
    let warm_up_rotations = (rotations / 10).max(5);
    while pool.stats().token.refreshes_ok < rotations + 1
        && start.elapsed() < Duration::from_secs(max_secs)
    {
        let r = run_load(
            &pool,
            8,
            Duration::from_secs(1),
            Duration::from_millis(25),
            10_000,
        )
        .await;
        ok += r.ok;
        failed += r.failed;
        if first_errors.len() < 5 {
            first_errors.extend(r.first_errors);
        }
        let s = pool.stats();
        max_size = max_size.max(s.pool.size);
        max_sessions = max_sessions.max(emu.counters().sessions_open);
        let rss = vm_rss_kib().unwrap_or(0);
        if rss_warm.is_none() && s.token.refreshes_ok >= warm_up_rotations {
            rss_warm = Some(rss);
        }
        if rss_warm.is_some() {
            rss_max_after_warm = rss_max_after_warm.max(rss);
        }
    }
    let stats = pool.stats();
    let counters = emu.counters();
    emit(
        "DONE",
        &json!({
            "elapsed_secs": start.elapsed().as_secs_f64(),
            "rotations": stats.token.refreshes_ok.saturating_sub(1),
            "ok": ok, "failed": failed, "first_errors": first_errors,
            "max_pool_size": max_size, "max_sessions_open": max_sessions,
            "rss_warm_kib": rss_warm, "rss_max_after_warm_kib": rss_max_after_warm,
            "stats": stats, "counters": counters,
        }),
    );
    pool.close();
    emu.shutdown().await;
}

/// Runs the soak child and checks its report. `rss_growth_kib`: the bound on resident
/// memory growth after warm-up.
async fn soak(token_secs: u64, rotations: u64, max_secs: u64, rss_growth_kib: u64) {
    let env = vec![
        ("DPE_SOAK_TOKEN_SECS".to_owned(), token_secs.to_string()),
        ("DPE_SOAK_ROTATIONS".to_owned(), rotations.to_string()),
        ("DPE_SOAK_MAX_SECS".to_owned(), max_secs.to_string()),
    ];
    let outcome = run_child(APP, &env, Duration::from_secs(max_secs + 120)).await;
    assert!(outcome.success, "the soak app failed:\n{}", outcome.stderr);
    let done = outcome.last("DONE").expect("the soak app reported");
    eprintln!("soak report: {done:#}");
    assert!(
        done["rotations"].as_u64().unwrap_or(0) >= rotations,
        "rotations: {done}"
    );
    assert_eq!(done["failed"], 0, "errors during the soak: {done}");
    assert!(done["ok"].as_u64().unwrap_or(0) > rotations, "{done}");
    assert_eq!(
        done["counters"]["expired_token_logins"], 0,
        "expired token offered: {done}"
    );
    assert_eq!(done["stats"]["logins_failed"], 0, "{done}");
    assert!(
        done["max_pool_size"].as_u64().unwrap_or(99) <= 4,
        "pool size bounded: {done}"
    );
    // Sessions at the front: the pool's 4 plus those being replaced (retiring ones close
    // right after their replacement logs in).
    assert!(
        done["max_sessions_open"].as_u64().unwrap_or(99) <= 8,
        "open sessions bounded: {done}"
    );
    let warm = done["rss_warm_kib"].as_u64().expect("warm-up RSS measured");
    let max = done["rss_max_after_warm_kib"].as_u64().unwrap_or(0);
    assert!(
        max <= warm + rss_growth_kib,
        "resident memory grew from {warm} KiB to {max} KiB after warm-up (bound +{rss_growth_kib} KiB)"
    );
}

/// 120 rotations of 2 s tokens under steady light load (about four minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_compressed_120_rotations_no_errors_flat_memory() {
    soak(2, 120, 420, 16 * 1024).await;
}

/// The full-length soak: an hour of rotations every 30 s (60 s tokens renewed at
/// half-life), 120 rotations.
/// `cargo test -p deadpool-entra-tests --test scenarios -- --ignored --exact soak::soak_full_length_one_hour_rotating_every_30s --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "one hour; run by hand (command in docs/testing.md)"]
async fn soak_full_length_one_hour_rotating_every_30s() {
    soak(60, 120, 3900, 16 * 1024).await;
}
