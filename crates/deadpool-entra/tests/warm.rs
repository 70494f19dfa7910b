//! A warm pool stays warm, against the emulator: connections retired by token age are
//! replaced by logins made in the background, so that requests do not wait for them;
//! `min_connections` keeps connections ready from the build on.

use std::{sync::Arc, time::Duration};

use deadpool_entra::{Pool, RetirePolicy, Stats};
use entra_emulator::Emulator;

mod common;

use common::{builder, emulator, light_load, source};

/// Short tokens (4 s), so that a run of seconds crosses several rotations.
const LIFETIME: Duration = Duration::from_secs(4);

async fn pool(emu: &Arc<Emulator>, max_size: usize, min_connections: usize) -> Pool {
    let mi = emu.default_identity().name.clone();
    let (src, _) = source(emu, &mi, LIFETIME);
    builder(emu)
        .token_source(src)
        .user(mi)
        .max_size(max_size)
        .min_connections(min_connections)
        .retire_policy(RetirePolicy {
            sweep_interval: Duration::from_millis(200),
            ..RetirePolicy::default()
        })
        .build()
        .await
        .unwrap()
}

fn show(what: &str, s: &Stats) {
    eprintln!(
        "{what}: logins {} (on checkout {}, background {}), spares used {}, retired by token age {}, outgoing-token logins {}, pool {:?}",
        s.logins_ok,
        s.created_on_checkout,
        s.created_in_background,
        s.spares_used,
        s.retired_token_age,
        s.logins_on_outgoing_token,
        s.pool
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_light_load_no_checkout_waits_for_a_login_after_warm_up() {
    let emu = emulator().await;
    let pool = pool(&emu, 8, 0).await;
    // Warm-up: the pool grows to the load's concurrency.
    assert_eq!(
        light_load(&pool, 2, Duration::from_millis(50), Duration::from_secs(1)).await,
        0
    );
    let warm = pool.stats();
    show("after warm-up", &warm);
    // Three token lifetimes: every connection is retired by token age at least twice.
    let errors = light_load(&pool, 2, Duration::from_millis(50), LIFETIME * 3).await;
    let end = pool.stats();
    show("after the run", &end);
    assert_eq!(errors, 0);
    let retired = end.retired_token_age - warm.retired_token_age;
    assert!(retired >= 2, "{end:?}");
    assert_eq!(
        end.created_on_checkout, warm.created_on_checkout,
        "a checkout logged in after warm-up ({retired} retirements): {end:?}"
    );
    assert!(end.created_in_background > warm.created_in_background);
    // The replacements reached the pool as spares handed to checkouts, each counted.
    let spares_used = end.spares_used - warm.spares_used;
    assert!(spares_used >= 1, "{end:?}");
    assert!(spares_used <= end.created_in_background, "{end:?}");
    // Nothing logged in for nothing: one background login per retirement, at most two
    // spares ahead, and no spare hoarded.
    let background = end.created_in_background - warm.created_in_background;
    assert!(
        background <= retired + 2,
        "{background} background logins for {retired} retirements: {end:?}"
    );
    assert!(end.pool.spares <= 2, "{end:?}");
    assert_eq!(end.logins_on_outgoing_token, 0, "{end:?}");
    pool.close();
}

/// `n` checkouts at once, all held until each has its connection (a burst); returns how
/// many logins they waited for.
async fn burst(pool: &Pool, n: usize) -> u64 {
    let before = pool.stats().created_on_checkout;
    let clients = futures_util::future::join_all((0..n).map(|_| pool.get())).await;
    for c in &clients {
        let c = c.as_ref().expect("checkout");
        c.simple_query("SELECT 1").await.unwrap();
    }
    drop(clients);
    pool.stats().created_on_checkout - before
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_connections_are_ready_at_build_after_idle_rotations_and_after_sessions_die() {
    let emu = emulator().await;
    let pool = pool(&emu, 8, 4).await;
    let built = pool.stats();
    show("built", &built);
    assert_eq!(built.pool.size, 4, "{built:?}");
    assert_eq!(built.created_on_checkout, 0);
    assert_eq!(built.created_in_background, 4);

    // Idle while tokens rotate: the connections are retired and replaced meanwhile.
    tokio::time::sleep(LIFETIME * 3 / 2).await;
    let idle = pool.stats();
    show("after idling", &idle);
    assert!(idle.retired_token_age >= 4, "{idle:?}");
    assert!(idle.pool.size + idle.pool.spares >= 4, "{idle:?}");
    // The floor and one replacement ahead, no more.
    assert!(idle.pool.size + idle.pool.spares <= 5, "{idle:?}");
    assert_eq!(burst(&pool, 4).await, 0, "{:?}", pool.stats());

    // Every session is killed (a server restart, a failover): the floor comes back in
    // the background.
    let killer = pool.get().await.unwrap();
    killer
        .simple_query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE usename = current_user AND pid <> pg_backend_pid()",
        )
        .await
        .unwrap();
    drop(killer);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after = pool.stats();
    show("after the kill", &after);
    assert!(after.retired_broken >= 3, "{after:?}");
    assert_eq!(burst(&pool, 4).await, 0, "{:?}", pool.stats());
    pool.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_connections_larger_than_max_size_is_a_configuration_error() {
    let emu = emulator().await;
    let mi = emu.default_identity().name.clone();
    let (src, _) = source(&emu, &mi, LIFETIME);
    let e = builder(&emu)
        .token_source(src)
        .user(mi)
        .max_size(2)
        .min_connections(3)
        .build()
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("min_connections (3) is larger than max_size (2)"),
        "{e}"
    );
}

/// A full, idle pool with a tight spread: connections due together leave only as
/// spares take their places, one for one, so the pool never drops below its floor
/// (a sweep used to count the pool's size once and let every due connection leave
/// against a single spare, or against one still logging in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_retires_no_faster_than_spares_replace() {
    let emu = emulator().await;
    let mi = emu.default_identity().name.clone();
    let (src, _) = source(&emu, &mi, LIFETIME);
    let pool = builder(&emu)
        .token_source(src)
        .user(mi)
        .max_size(4)
        .min_connections(4)
        .retire_policy(RetirePolicy {
            // A sweep's horizon (1 s) covers the whole spread: the connections are due
            // in the same sweep.
            token_spread: Duration::from_secs(1),
            sweep_interval: Duration::from_secs(1),
            ..RetirePolicy::default()
        })
        .build()
        .await
        .unwrap();
    let mut lowest = usize::MAX;
    let started = tokio::time::Instant::now();
    while started.elapsed() < LIFETIME * 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let s = pool.stats();
        lowest = lowest.min(s.pool.size + s.pool.spares);
    }
    let s = pool.stats();
    show("after two rotations", &s);
    assert!(s.retired_token_age >= 4, "the rotation happened: {s:?}");
    assert!(
        lowest >= 3,
        "at most one session short of the floor: {lowest}, {s:?}"
    );
    assert_eq!(burst(&pool, 4).await, 0, "{:?}", pool.stats());
    assert_eq!(pool.stats().created_on_checkout, 0, "{:?}", pool.stats());
    pool.close();
}

/// A lazy pool of at most 4 with a floor of 2, sweeping every 200 ms.
async fn lazy_pool_with_a_floor_of_2(
    emu: &Arc<Emulator>,
    user: String,
    src: deadpool_entra::FnSource,
) -> Pool {
    builder(emu)
        .token_source(src)
        .user(user)
        .max_size(4)
        .min_connections(2)
        .lazy(true)
        .retire_policy(RetirePolicy {
            sweep_interval: Duration::from_millis(200),
            ..RetirePolicy::default()
        })
        .build()
        .await
        .unwrap()
}

/// Sessions (pooled and spares) once there are `n`, or at the end of `within`.
async fn sessions_within(pool: &Pool, n: usize, within: Duration) -> usize {
    let until = tokio::time::Instant::now() + within;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = pool.stats();
        let sessions = s.pool.size + s.pool.spares;
        if sessions >= n || tokio::time::Instant::now() >= until {
            return sessions;
        }
    }
}

/// A lazy pool whose first token fetch fails (the identity endpoint is not up yet)
/// still reaches its floor once the endpoint answers, without a checkout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lazy_pool_reaches_its_floor_once_the_first_token_can_be_fetched() {
    use std::sync::atomic::{AtomicU32, Ordering};

    use deadpool_entra::{FnSource, Token, TokenSourceError};

    let emu = emulator().await;
    let mi = emu.default_identity().name.clone();
    let calls = Arc::new(AtomicU32::new(0));
    let (e, c, p) = (emu.clone(), calls.clone(), mi.clone());
    let src = FnSource::new("NotUpYet", move |scope| {
        let r = if c.fetch_add(1, Ordering::SeqCst) == 0 {
            Err(TokenSourceError::new("identity endpoint not up yet"))
        } else {
            Ok(Token::expiring_in(
                e.issue_token(&p, &scope, Duration::from_secs(3600)),
                Duration::from_secs(3600),
            ))
        };
        async move { r }
    });
    let pool = lazy_pool_with_a_floor_of_2(&emu, mi, src).await;
    let sessions = sessions_within(&pool, 2, Duration::from_secs(10)).await;
    assert!(sessions >= 2, "{:?}", pool.stats());
    assert!(calls.load(Ordering::SeqCst) >= 2);
    pool.close();
}

/// With no `max_size`, deadpool's default is 2 × the logical CPUs. A floor above it
/// must not hang `build()` (prewarm holds every session until all are in): the pool's
/// size grows to the floor the user asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_connections_above_the_default_size_raises_the_size_instead_of_hanging() {
    let emu = emulator().await;
    let mi = emu.default_identity().name.clone();
    let (src, _) = source(&emu, &mi, Duration::from_secs(3600));
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let floor = 2 * cpus + 1;
    let pool = tokio::time::timeout(
        Duration::from_secs(20),
        builder(&emu)
            .token_source(src)
            .user(mi)
            .wait_timeout(None)
            .min_connections(floor)
            .build(),
    )
    .await
    .expect("build() returns")
    .expect("builds");
    let s = pool.stats();
    assert_eq!(s.pool.max_size, floor, "{s:?}");
    assert_eq!(s.pool.size, floor, "{s:?}");
    pool.close();
}

/// A lazy pool fetches no token in `build()`; its floor is still reached in the
/// background, without a checkout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lazy_pool_reaches_its_floor_without_a_checkout() {
    let emu = emulator().await;
    let mi = emu.default_identity().name.clone();
    let (src, _) = source(&emu, &mi, Duration::from_secs(3600));
    let pool = lazy_pool_with_a_floor_of_2(&emu, mi, src).await;
    let sessions = sessions_within(&pool, 2, Duration::from_secs(5)).await;
    assert!(sessions >= 2, "{:?}", pool.stats());
    pool.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spares_past_their_tokens_expiry_count_as_degraded_sessions() {
    use std::sync::atomic::{AtomicBool, Ordering};

    use deadpool_entra::{FnSource, Token, TokenSourceError};

    let emu = emulator().await;
    let mi = emu.default_identity().name.clone();
    let failing = Arc::new(AtomicBool::new(false));
    let (e, f, p) = (emu.clone(), failing.clone(), mi.clone());
    let src = FnSource::new("OutageTokens", move |scope| {
        let r = if f.load(Ordering::SeqCst) {
            Err(TokenSourceError::new("identity endpoint down"))
        } else {
            Ok(Token::expiring_in(
                e.issue_token(&p, &scope, LIFETIME),
                LIFETIME,
            ))
        };
        async move { r }
    });
    let pool = builder(&emu)
        .token_source(src)
        .user(mi)
        .max_size(4)
        .min_connections(2)
        .retire_policy(RetirePolicy {
            sweep_interval: Duration::from_millis(200),
            ..RetirePolicy::default()
        })
        .refresh_policy(deadpool_entra::RefreshPolicy {
            max_backoff: Duration::from_secs(1),
            ..Default::default()
        })
        .build()
        .await
        .unwrap();
    // Idle while tokens rotate: retired connections leave spares in their place.
    tokio::time::sleep(LIFETIME * 3 / 2).await;
    show("after idling", &pool.stats());
    // The identity endpoint goes down until every session's token has expired.
    failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(LIFETIME + Duration::from_secs(1)).await;
    let s = pool.stats();
    show("past expiry", &s);
    let sessions = s.pool.size + s.pool.spares;
    assert!(sessions >= 2, "the floor holds through the outage: {s:?}");
    assert!(
        s.pool.spares >= 1,
        "the idle pool turned over to spares: {s:?}"
    );
    assert_eq!(
        s.degraded.sessions_past_token_expiry, sessions,
        "every session, spares too, is past its token's expiry: {s:?}"
    );
    assert_eq!(
        s.degraded.overdue, sessions,
        "every session is due and held, for want of a token to replace it: {s:?}"
    );
    // The endpoint is back: once a new token is fetched (within a backoff step, 1 s
    // here) every session is replaced, spread over its window, and none is past expiry.
    failing.store(false, Ordering::SeqCst);
    let back = tokio::time::Instant::now();
    let mut s = pool.stats();
    while s.degraded.sessions_past_token_expiry > 0 && back.elapsed() < LIFETIME * 2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        s = pool.stats();
    }
    show("recovered", &s);
    assert_eq!(s.degraded.sessions_past_token_expiry, 0, "{s:?}");
    pool.close();
}

/// A connection that is in use whenever the sweeper looks (the sweeper retires idle
/// connections only) is retired at checkout, in `pre_recycle`, before its token expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_always_in_use_is_retired_at_checkout_before_its_token_expires() {
    let emu = emulator().await;
    let pool = pool(&emu, 1, 0).await;
    let until = tokio::time::Instant::now() + LIFETIME * 3;
    let mut logins = std::collections::HashSet::new();
    while tokio::time::Instant::now() < until {
        let client = pool.get().await.expect("checkout");
        let info = pool
            .connection_info(&client)
            .expect("one of the pool's connections");
        logins.insert(info.logged_in_at);
        client.simple_query("SELECT 1").await.unwrap();
        // Held: the sweeper finds no idle connection to retire.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let s = pool.stats();
        assert_eq!(
            s.degraded.sessions_past_token_expiry, 0,
            "a session served past its token: {s:?}"
        );
        drop(client);
    }
    let s = pool.stats();
    show("after three lifetimes", &s);
    assert!(s.retired_token_age >= 2, "{s:?}");
    assert!(logins.len() >= 3, "{} logins seen: {s:?}", logins.len());
}
