//! Faults that outlast the token: the identity endpoint down, failing, throttled, `az`
//! logged out, or the server refusing logins, from just after a refresh until twice the
//! token's life later. Azure checks a token only at login, so a pool that keeps its
//! sessions keeps serving; ours must too (never worse than a naive pool), and must
//! re-login every session with a fresh token soon after the fault ends.

use std::time::{Duration, Instant};

use deadpool_entra_tests::{
    Explain, LoadReport, Sampler, build_pool_of_4, builder_for, cli_credential, run_load,
    short_token_policies, start_emulator, wait_until,
};
use entra_emulator::Faults;

const LIFETIME: Duration = Duration::from_secs(8);
const FAULT: Duration = Duration::from_secs(16);

/// What one run measured.
struct Outcome {
    load: LoadReport,
    smallest_pool: usize,
    most_past_expiry: usize,
    /// From the fault's end until no session is past its token or overdue.
    recovered_after: Option<Duration>,
    expired_token_logins: u64,
}

/// Steady load (8 tasks, a request every 10 ms, pool of 4) through `set(true)` from just
/// after a token refresh for `FAULT` (twice the token's life), then `set(false)`.
async fn run_fault_past_expiry(name: &'static str, set: impl Fn(&Faults, bool)) -> Outcome {
    let emu = start_emulator(LIFETIME).await;
    let explain = Explain::new(name, &emu);
    let pool = build_pool_of_4(short_token_policies(
        builder_for(&emu, cli_credential(&emu)),
        LIFETIME,
    ))
    .await;
    explain.pool(&pool);
    // Warm: all four sessions open, then wait for a refresh so the fault starts at a
    // known point of the token's life.
    run_load(&pool, 8, Duration::from_millis(500), Duration::ZERO, 1_000).await;
    let seen = pool.stats().token.refreshes_ok;
    let fresh = wait_until(LIFETIME, || pool.stats().token.refreshes_ok > seen).await;
    assert!(fresh.is_some(), "no token refresh within {LIFETIME:?}");

    let run_for = FAULT + Duration::from_secs(10);
    let sampler = Sampler::start(&pool, Duration::from_millis(50), run_for);
    let load = {
        let pool = pool.clone();
        tokio::spawn(async move {
            run_load(&pool, 8, run_for, Duration::from_millis(10), 1_000_000).await
        })
    };
    set(emu.faults(), true);
    tokio::time::sleep(FAULT).await;
    set(emu.faults(), false);
    let ended = Instant::now();
    let recovered_after = wait_until(Duration::from_secs(9), || {
        let d = pool.stats().degraded;
        d.sessions_past_token_expiry == 0
            && d.overdue == 0
            && d.oldest_session_token_expires_in_secs
                .is_some_and(|s| s > 0.0)
    })
    .await;
    let load = load.await.expect("load task");
    let samples = sampler.finish().await;
    let stats = pool.stats();
    let outcome = Outcome {
        load,
        smallest_pool: samples.iter().map(|(_, s)| s.pool.size).min().unwrap_or(0),
        most_past_expiry: samples
            .iter()
            .map(|(_, s)| s.degraded.sessions_past_token_expiry)
            .max()
            .unwrap_or(0),
        recovered_after,
        expired_token_logins: emu.counters().expired_token_logins,
    };
    explain.note(format!(
        "load {:?}; smallest pool {}; at most {} sessions past their token; recovered {:?} after the fault ended ({:?} since); stats {:?}",
        outcome.load,
        outcome.smallest_pool,
        outcome.most_past_expiry,
        outcome.recovered_after,
        ended.elapsed(),
        stats
    ));
    assert_eq!(
        outcome.load.failed, 0,
        "requests failed while sessions were open: {:?}",
        outcome.load.first_errors
    );
    assert!(outcome.load.ok > 1_000, "{:?}", outcome.load);
    assert!(
        outcome.smallest_pool >= 1,
        "the pool emptied while it had working sessions"
    );
    assert!(
        outcome.most_past_expiry >= 1,
        "the fault did not cross the token's expiry: nothing proved"
    );
    assert_eq!(outcome.expired_token_logins, 0, "an expired token was sent");
    assert!(
        deadpool_entra_tests::secrets::captured_contains(
            "serving on sessions whose login token has expired"
        ),
        "the degraded state is logged"
    );
    // Recovery: the refresher's backoff cap (1 s), a login, and half the spread window
    // (8 s tokens: 1.8 s), with room for a loaded machine.
    assert!(
        outcome.recovered_after.is_some(),
        "sessions were not re-logged-in with a fresh token within 9 s of the fault's end"
    );
    pool.close();
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_outage_past_expiry_fails_no_request() {
    run_fault_past_expiry("outage_past_expiry", |f, on| f.set_identity_outage(on)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_errors_past_expiry_fail_no_request() {
    run_fault_past_expiry("errors_past_expiry", |f, on| {
        f.set_identity_error(on.then_some(500))
    })
    .await;
}

/// Through the Azure CLI credential the 429 arrives as a failed `az`, without the
/// `Retry-After` value; churn's run with the managed identity credential covers that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_throttling_past_expiry_fails_no_request() {
    run_fault_past_expiry("throttle_past_expiry", |f, on| {
        f.set_identity_throttle(on.then_some(Duration::from_secs(12)))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn az_logged_out_past_expiry_fails_no_request() {
    run_fault_past_expiry("logged_out_past_expiry", |f, on| f.set_cli_logged_out(on)).await;
}

/// The server refuses every login (Entra's validation failing on the server side) for
/// twice the token's life: no session is traded for a failing login.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_refusing_logins_past_expiry_fails_no_request() {
    let outcome =
        run_fault_past_expiry("refused_past_expiry", |f, on| f.set_refuse_logins(on)).await;
    // At most the sessions retired before the first refused login revealed the fault.
    assert!(
        outcome.smallest_pool >= 2,
        "working sessions were traded for failing logins"
    );
}
