//! Identity outages, throttling, failover and revocation.

use std::time::{Duration, Instant};

use deadpool_entra::{Error, ErrorKind};
use deadpool_entra_tests::child::ChildApp;
use deadpool_entra_tests::{
    Explain, build_pool_of_4, builder_for, cli_credential, note_error, one_request, run_load,
    short_token_policies, start_emulator, wait_until,
};

/// Waits (bounded) until the pool has just taken a new token, so that a fault injected
/// now starts at a known point of the token's life.
async fn wait_for_fresh_token(pool: &deadpool_entra::Pool, within: Duration) {
    let seen = pool.stats().token.refreshes_ok;
    let fresh = wait_until(within, || pool.stats().token.refreshes_ok > seen).await;
    assert!(fresh.is_some(), "no token refresh within {within:?}");
}

/// Steady background load for `run_for`: 8 tasks, a request every 10 ms each.
fn spawn_steady_load(
    pool: &deadpool_entra::Pool,
    run_for: Duration,
) -> tokio::task::JoinHandle<deadpool_entra_tests::LoadReport> {
    let pool = pool.clone();
    tokio::spawn(
        async move { run_load(&pool, 8, run_for, Duration::from_millis(10), 100_000).await },
    )
}

/// How long after now the pool takes a token newer than the one counted in `before`
/// (`None`: not within `within`).
async fn next_refresh_after(
    pool: &deadpool_entra::Pool,
    before: &deadpool_entra::Stats,
    within: Duration,
) -> Option<Duration> {
    let seen = before.token.refreshes_ok;
    wait_until(within, || pool.stats().token.refreshes_ok > seen).await
}

/// The identity endpoint is down for 7 s of a 10 s token's life: no request fails, the
/// failed refreshes are counted, and the refresher catches up when the endpoint returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_outage_shorter_than_token_validity_fails_no_request() {
    const LIFETIME: Duration = Duration::from_secs(10);
    let emu = start_emulator(LIFETIME).await;
    let explain = Explain::new("identity_outage_shorter", &emu);
    let pool = build_pool_of_4(short_token_policies(
        builder_for(&emu, cli_credential(&emu)),
        LIFETIME,
    ))
    .await;
    explain.pool(&pool);
    wait_for_fresh_token(&pool, Duration::from_secs(12)).await;

    let load = spawn_steady_load(&pool, Duration::from_secs(12));
    emu.faults().set_identity_outage(true);
    tokio::time::sleep(Duration::from_secs(7)).await;
    let during = pool.stats();
    emu.faults().set_identity_outage(false);
    let recovered = next_refresh_after(&pool, &during, Duration::from_secs(4)).await;
    let report = load.await.expect("load task");
    let stats = pool.stats();
    let counters = emu.counters();
    explain.note(format!(
        "load: {report:?}; refreshes failed during the outage: {}; new token {recovered:?} after the endpoint returned",
        during.token.refreshes_failed
    ));

    assert_eq!(report.failed, 0, "{:?}", report.first_errors);
    assert!(report.ok > 100);
    assert!(
        during.token.refreshes_failed >= 1,
        "refresh failures are counted"
    );
    assert!(
        during.token.last_error.is_some(),
        "the last refresh error is reported"
    );
    assert!(counters.identity_requests_refused >= 1);
    assert!(
        recovered.is_some(),
        "the refresher took a new token after the endpoint returned"
    );
    assert!(
        stats.token.last_error.is_none(),
        "the error clears after recovery"
    );
    assert_eq!(counters.expired_token_logins, 0);
    assert!(
        deadpool_entra_tests::secrets::captured_contains(
            "token fetch failed; serving the cached token while it is valid"
        ),
        "the failed refreshes are logged, saying that the valid token cached is served"
    );
    pool.close();
}

/// The identity endpoint stops answering (a 30 s delay per request, as behind a firewall
/// that drops packets) for a stretch of a 16 s token's life: with `fetch_timeout` at 1 s,
/// each hung fetch is cut off and counted as a failed refresh, no request fails, and the
/// first fetch after the endpoint answers again renews the token before the old one expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_endpoint_that_never_answers_is_cut_off_by_fetch_timeout() {
    const LIFETIME: Duration = Duration::from_secs(16);
    let emu = start_emulator(LIFETIME).await;
    let explain = Explain::new("identity_never_answers", &emu);
    let pool = build_pool_of_4(
        short_token_policies(builder_for(&emu, cli_credential(&emu)), LIFETIME).refresh_policy(
            deadpool_entra::RefreshPolicy {
                refresh_before_expiry: LIFETIME / 2,
                min_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(1),
                fetch_timeout: Some(Duration::from_secs(1)),
            },
        ),
    )
    .await;
    explain.pool(&pool);
    wait_for_fresh_token(&pool, Duration::from_secs(20)).await;
    let fresh_at = Instant::now();

    let load = spawn_steady_load(&pool, Duration::from_secs(14));
    // The refresh falls due 8 s into the token's life; the endpoint hangs from now until
    // 11 s into it.
    emu.faults().set_identity_latency(Duration::from_secs(30));
    tokio::time::sleep_until((fresh_at + Duration::from_secs(11)).into()).await;
    let during = pool.stats();
    emu.faults().set_identity_latency(Duration::ZERO);
    let recovered = next_refresh_after(&pool, &during, Duration::from_secs(4)).await;
    let report = load.await.expect("load task");
    let stats = pool.stats();
    let counters = emu.counters();
    explain.note(format!(
        "load: {report:?}; refreshes failed while the endpoint hung: {} ({:?}); new token {recovered:?} after it answered again",
        during.token.refreshes_failed, during.token.last_error
    ));

    assert_eq!(report.failed, 0, "{:?}", report.first_errors);
    assert!(report.ok > 100);
    // From 8 s to 11 s: a 1 s timeout plus at most 1 s of backoff per attempt.
    assert!(
        during.token.refreshes_failed >= 1,
        "each hung fetch counts as a failed refresh"
    );
    let last = during.token.last_error.unwrap_or_default();
    assert!(
        last.contains("within 1 s (refresh.fetch_timeout)"),
        "the error names the limit: {last}"
    );
    assert!(
        recovered.is_some(),
        "the refresher took a new token after the endpoint answered again"
    );
    assert!(stats.token.last_error.is_none(), "the error clears");
    assert_eq!(counters.expired_token_logins, 0);
    pool.close();
}

/// The identity endpoint is down longer than a 4 s token lives: connections already open
/// keep serving; a checkout that finds no idle session waits for one up to its wait
/// timeout (2 s here), then tries to log in and gets the typed token error; and the pool
/// recovers on its own within the backoff cap once the endpoint is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_outage_longer_than_token_validity_fails_fast_and_recovers() {
    const LIFETIME: Duration = Duration::from_secs(4);
    const MAX_BACKOFF: Duration = Duration::from_secs(1);
    let emu = start_emulator(LIFETIME).await;
    let explain = Explain::new("identity_outage_longer", &emu);
    let pool = short_token_policies(builder_for(&emu, cli_credential(&emu)), LIFETIME)
        .max_size(4)
        .wait_timeout(Some(Duration::from_secs(2)))
        .build()
        .await
        .expect("pool builds");
    explain.pool(&pool);
    wait_for_fresh_token(&pool, Duration::from_secs(6)).await;
    // Two sessions held open through the outage (a long job, a listener).
    let held_a = pool.get().await.expect("first session");
    let held_b = pool.get().await.expect("second session");

    emu.faults().set_identity_outage(true);
    let outage_start = Instant::now();
    // Past the token's life (plus its margin): a checkout that needs a login has nothing
    // to log in with.
    tokio::time::sleep(LIFETIME + Duration::from_secs(1)).await;
    for (i, held) in [&held_a, &held_b].into_iter().enumerate() {
        let v: i32 = held
            .query_one("SELECT 41 + 1", &[])
            .await
            .unwrap_or_else(|e| panic!("held session {i} stopped serving: {e}"))
            .get(0);
        assert_eq!(v, 42);
    }
    let mut token_errors = 0;
    for _ in 0..3 {
        let t0 = Instant::now();
        match pool.get().await {
            Ok(_) => panic!("a checkout needing a login succeeded without a valid token"),
            Err(e) => {
                let text = note_error(&e);
                explain.note(format!(
                    "checkout during the outage failed after {:?}: {text}",
                    t0.elapsed()
                ));
                match &e {
                    Error::Token(t) => {
                        assert_eq!(
                            t.source_name, "AzureCliCredential",
                            "names the source: {text}"
                        );
                        assert!(!t.cause.is_empty(), "names the cause: {text}");
                    }
                    _ => panic!("expected the typed token error, got: {text}"),
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(5),
                    "the checkout did not fail fast: {:?}",
                    t0.elapsed()
                );
                token_errors += 1;
            }
        }
    }
    assert_eq!(token_errors, 3);
    // Still serving on the held sessions after the failed checkouts.
    held_a
        .query_one("SELECT 1", &[])
        .await
        .expect("held session still serves");
    assert!(
        outage_start.elapsed() >= LIFETIME,
        "the outage outlived the token"
    );

    emu.faults().set_identity_outage(false);
    let t_back = Instant::now();
    let mut recovered_after = None;
    while t_back.elapsed() < MAX_BACKOFF + Duration::from_secs(3) {
        if one_request(&pool).await.is_ok() {
            recovered_after = Some(t_back.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recovered_after =
        recovered_after.expect("service did not recover after the endpoint returned");
    explain.note(format!(
        "recovered {recovered_after:?} after the endpoint returned"
    ));
    // Bound: the backoff cap plus one login round trip and the polling step.
    assert!(
        recovered_after <= MAX_BACKOFF + Duration::from_secs(2),
        "recovery took {recovered_after:?} (backoff cap {MAX_BACKOFF:?})"
    );
    drop((held_a, held_b));
    let report = run_load(
        &pool,
        4,
        Duration::from_secs(2),
        Duration::from_millis(10),
        10_000,
    )
    .await;
    assert_eq!(report.failed, 0, "{:?}", report.first_errors);
    assert_eq!(emu.counters().expired_token_logins, 0);
    pool.close();
}

/// 429 with `Retry-After: 2` from the managed identity endpoint for 6 s: the refresher
/// waits as told, so the identity calls in the window are bounded (at most one per
/// Retry-After period plus one), and no request fails while the cached token is valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_identity_endpoint_is_retried_only_after_retry_after() {
    const LIFETIME: Duration = Duration::from_secs(20);
    const RETRY_AFTER: Duration = Duration::from_secs(2);
    const WINDOW: Duration = Duration::from_secs(6);
    let emu = start_emulator(LIFETIME).await;
    let explain = Explain::new("throttling", &emu);
    let mut env = emu.env();
    env.push(("AZURE_AUTH_METHOD".into(), "managed_identity".into()));
    env.push(("DPE_APP_RUN_SECS".into(), "16".into()));
    let mut app = ChildApp::spawn("auth_methods::app_from_env", &env);
    let ready = app.wait_for("READY", Duration::from_secs(60)).await;
    assert!(ready.is_some(), "the app did not start");
    // Wait until the token is past half its life, so the refresher wants a new one
    // during the throttle window.
    tokio::time::sleep(LIFETIME / 2 - Duration::from_secs(1)).await;
    let before = emu.counters();
    emu.faults().set_identity_throttle(Some(RETRY_AFTER));
    tokio::time::sleep(WINDOW).await;
    emu.faults().set_identity_throttle(None);
    let after = emu.counters();
    let outcome = app.finish(Duration::from_secs(60)).await;
    explain.note(format!("app: {outcome:?}"));
    assert!(outcome.success, "the app failed:\n{}", outcome.stderr);
    let done = outcome.last("DONE").expect("the app reported");
    assert_eq!(
        done["failed"], 0,
        "requests failed during the throttle: {done}"
    );

    let calls = after.identity_requests - before.identity_requests;
    let refused = after.identity_requests_refused - before.identity_requests_refused;
    let bound = WINDOW.as_secs() / RETRY_AFTER.as_secs() + 1;
    explain.note(format!(
        "identity calls in the window: {calls} ({refused} throttled)"
    ));
    assert!(refused >= 1, "the refresher tried during the window");
    assert!(
        calls <= bound,
        "{calls} identity calls in a {WINDOW:?} throttle window with Retry-After {RETRY_AFTER:?} (bound {bound})"
    );
    assert!(
        done["stats"]["token"]["refreshes_ok"].as_u64().unwrap_or(0) >= 2,
        "refreshed after the throttle: {done}"
    );
    assert_eq!(emu.counters().expired_token_logins, 0);
}

/// A failover (every session killed): only queries in flight fail; the pool is whole again
/// within 2 s; checkouts after it succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_restores_the_pool_within_two_seconds() {
    const POOL: usize = 8;
    let emu = start_emulator(Duration::from_secs(3600)).await;
    let explain = Explain::new("failover", &emu);
    let pool = builder_for(&emu, cli_credential(&emu))
        .max_size(POOL)
        .wait_timeout(Some(Duration::from_secs(10)))
        .build()
        .await
        .expect("pool builds");
    explain.pool(&pool);
    // Fill the pool: eight sessions open at once.
    {
        let mut held = Vec::new();
        for _ in 0..POOL {
            held.push(pool.get().await.expect("warm-up checkout"));
        }
    }
    assert!(emu.counters().sessions_open >= POOL as u64);

    // Eight tasks running 200 ms queries back to back; the kill lands mid-query.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..POOL {
        let (pool, stop) = (pool.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 1000 {
                n += 1;
                let r = async {
                    let c = pool.get().await.map_err(|e| note_error(&e))?;
                    c.execute("SELECT pg_sleep(0.2)", &[])
                        .await
                        .map_err(|e| note_error(&e))?;
                    Ok::<(), String>(())
                }
                .await;
                if r.is_ok() { ok += 1 } else { failed += 1 }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = emu.faults().kill_all_sessions();
    let t_kill = Instant::now();
    // "Whole again": max_size sessions open at the front, all idle connections usable.
    let whole = wait_until(Duration::from_secs(5), || {
        let s = pool.stats();
        emu.counters().sessions_open >= POOL as u64 && s.pool.size == POOL
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for t in tasks {
        let (o, f) = t.await.expect("task");
        ok += o;
        failed += f;
    }
    explain.note(format!(
        "killed {killed}; ok {ok}, failed {failed}; whole after {whole:?}"
    ));
    assert!(killed >= POOL, "the failover killed {killed} sessions");
    let whole = whole.expect("the pool was not whole again within 5 s");
    assert!(
        whole <= Duration::from_secs(2),
        "pool whole again after {whole:?} (bound 2 s)"
    );
    assert!(
        failed <= POOL as u64,
        "{failed} requests failed; only the {POOL} in flight may"
    );
    // After the failover every checkout works.
    let after = run_load(&pool, POOL, Duration::from_secs(2), Duration::ZERO, 10_000).await;
    assert_eq!(after.failed, 0, "{:?}", after.first_errors);
    assert!(t_kill.elapsed() < Duration::from_secs(10));
    pool.close();
}

/// Asserts that the refusals the emulator counted since a step began (`refused()`) are
/// `checkouts` plus one per probe login the sweeper made since `probes_before`. While
/// logins fail, the sweeper tries one login per backoff step with the cached token (as it
/// does for users), so a probe may land in any step of a test; every login, a probe's
/// or a checkout's, may send a refused token once, never twice. Waits (bounded) for a
/// probe in flight to end.
async fn assert_refusals(
    pool: &deadpool_entra::Pool,
    refused: impl Fn() -> u64,
    probes_before: u64,
    checkouts: u64,
    step: &str,
) {
    let probes = || pool.stats().probe_logins - probes_before;
    let settled = wait_until(Duration::from_secs(3), || {
        let p = probes();
        let r = refused();
        p == probes() && r == checkouts + p
    })
    .await;
    assert!(
        settled.is_some(),
        "{step}: {} refused logins for {checkouts} checkout logins and {} probe logins: a login sent a refused token twice",
        refused(),
        probes()
    );
}

/// The front refuses a token that is still valid ("An error occurred while validating the
/// access token"), and the identity endpoint, like Azure's, keeps serving it from its
/// cache: the pool sends it once, asks for another, gets the same, and says so (no second
/// refused login). Once the endpoint mints a new token (as after a revocation), the next
/// checkout's refused login is retried once with the new token and works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_token_is_never_resent_and_a_new_one_is_used_once_minted() {
    let emu = start_emulator(Duration::from_secs(3600)).await;
    let explain = Explain::new("refused_token", &emu);
    let pool = builder_for(&emu, cli_credential(&emu))
        .max_size(2)
        .wait_timeout(Some(Duration::from_secs(10)))
        .build()
        .await
        .expect("pool builds");
    explain.pool(&pool);
    one_request(&pool).await.expect("works before the refusal");
    // Drop the idle session so that the next checkout needs a login.
    pool.inner().retain(|_, _| false);

    let before = emu.counters();
    let stats_before = pool.stats();
    emu.faults().set_refuse_issued_tokens(true);
    let err = pool.get().await.expect_err("the cached token is refused");
    let text = note_error(&err);
    let after = emu.counters();
    let stats_after = pool.stats();
    explain.note(format!("error: {text}"));
    let refused_validation = || emu.counters().logins_refused_validation;
    assert_refusals(
        &pool,
        || refused_validation() - before.logins_refused_validation,
        stats_before.probe_logins,
        1,
        "the first checkout",
    )
    .await;
    assert_eq!(
        after.identity_requests - before.identity_requests,
        1,
        "one fetch for another token"
    );
    assert_eq!(
        after.tokens_minted, before.tokens_minted,
        "the endpoint served its cache"
    );
    match &err {
        Error::TokenRefused(r) => {
            assert_eq!(r.login.sqlstate, "28000");
            assert_eq!(r.login.kind(), ErrorKind::TokenInvalid);
            assert_eq!(err.kind(), deadpool_entra::ErrorKind::TokenInvalid);
            assert!(r.expires_in_secs.is_some_and(|s| s > 3000), "{r:?}");
            assert!(r.exp.is_some());
        }
        other => panic!("expected TokenRefused, got {other:?}"),
    }
    assert!(
        text.contains("same token") && text.contains("clock") && text.contains("exp"),
        "{text}"
    );
    assert_eq!(
        stats_after.same_token_after_refusal - stats_before.same_token_after_refusal,
        1
    );
    assert_eq!(
        stats_after.forced_refresh_retries,
        stats_before.forced_refresh_retries
    );
    assert_eq!(
        stats_after.token.refreshes_ok, stats_before.token.refreshes_ok,
        "a same-token answer is no refresh"
    );
    // The next checkout sends the token again (the server may accept it by now: a naive
    // pool would recover at once, and so does this one), but does not ask the source for
    // another within the retry step.
    let err = pool.get().await.expect_err("still refused");
    assert!(matches!(err, Error::TokenRefused(_)), "{err:?}");
    let again = emu.counters();
    assert_refusals(
        &pool,
        || refused_validation() - before.logins_refused_validation,
        stats_before.probe_logins,
        2,
        "one login per checkout, no retry",
    )
    .await;
    assert_eq!(again.identity_requests, after.identity_requests);

    // The endpoint mints a new token (the old one revoked); after the pool's retry delay
    // for the refused token, a refused login is retried with the new token: the
    // checkout's, or the sweeper's probe's if it comes first (seen in CI: the checkout
    // then logs in with the new token at once).
    let before = emu.counters();
    let stats_mint = pool.stats();
    emu.faults().mint_next();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    one_request(&pool).await.expect("the new token logs in");
    let after = emu.counters();
    let stats_after = pool.stats();
    assert_eq!(
        after.tokens_minted - before.tokens_minted,
        1,
        "one new token, whoever asked"
    );
    // Each login, the checkout's and any probe's, sends the old token at most once and is
    // retried at most once.
    let refused = after.logins_refused_validation - before.logins_refused_validation;
    let retries = stats_after.forced_refresh_retries - stats_mint.forced_refresh_retries;
    let probes = stats_after.probe_logins - stats_mint.probe_logins;
    assert!(
        (1..=1 + probes).contains(&refused) && (1..=1 + probes).contains(&retries),
        "{refused} refused logins and {retries} retries with the new token for one checkout and {probes} probes"
    );
    emu.faults().set_refuse_issued_tokens(false);

    // Every token login refused (revoked principal): one refused login per checkout, the
    // error names the refusal.
    pool.inner().retain(|_, _| false);
    let before = emu.counters();
    let probes_before = pool.stats().probe_logins;
    emu.faults().set_refuse_logins(true);
    let err = pool.get().await.expect_err("every token login is refused");
    let text = note_error(&err);
    emu.faults().set_refuse_logins(false);
    match &err {
        Error::TokenRefused(r) => assert_eq!(r.login.kind(), ErrorKind::TokenRevoked, "{text}"),
        other => panic!("expected TokenRefused, got {other:?}"),
    }
    assert_refusals(
        &pool,
        || emu.counters().logins_refused_revoked - before.logins_refused_revoked,
        probes_before,
        1,
        "a revoked principal",
    )
    .await;
    // Logins resume as soon as the server accepts the token again.
    one_request(&pool)
        .await
        .expect("works once the refusal stops");

    // The principal really removed: the clear role/principal error with the fix.
    pool.inner().retain(|_, _| false);
    emu.remove_principal(emu.default_user())
        .await
        .expect("remove principal");
    let err = pool.get().await.expect_err("the principal is gone");
    let text = note_error(&err);
    explain.note(format!("error after removal: {text}"));
    match &err {
        Error::Login(l) => assert_eq!(l.kind(), ErrorKind::RoleMissing, "{text}"),
        other => panic!("expected a login error, got {other:?}"),
    }
    assert!(text.contains("pgaadauth_create_principal"), "{text}");
    assert!(emu.counters().logins_refused_unknown_role >= 1);
    pool.close();
}
