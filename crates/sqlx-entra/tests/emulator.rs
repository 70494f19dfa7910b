//! The sqlx pool against the emulator: real TLS, a real PostgreSQL behind the emulator's
//! front, tokens the emulator issues (through the credential chain in the first test).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

mod common;

use common::{LIFETIME, config, emulator, source};
use entra_emulator::OSSRDBMS_SCOPE;
use entra_pg_token::RefreshPolicy;
use sqlx::PgPool;
use sqlx_entra::PoolBuilder;

/// `tasks` tasks run `SELECT 1` and think `think`, for `run`; returns the errors.
async fn load(pool: &PgPool, tasks: usize, think: Duration, run: Duration) -> usize {
    let until = tokio::time::Instant::now() + run;
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let pool = pool.clone();
        handles.push(tokio::spawn(async move {
            let mut errors = 0;
            while tokio::time::Instant::now() < until {
                if let Err(e) = sqlx::query("SELECT 1").execute(&pool).await {
                    eprintln!("{e}");
                    errors += 1;
                }
                tokio::time::sleep(think).await;
            }
            errors
        }));
    }
    let mut errors = 0;
    for h in handles {
        errors += h.await.unwrap();
    }
    errors
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_login_uses_the_user_the_token_names_when_none_is_configured() {
    let emu = emulator().await;
    let mi = emu.default_identity().name.clone();
    let (src, _) = source(&emu, &mi, LIFETIME, Arc::default());
    let mut cfg = config(&emu, &mi, 1);
    cfg.user = None;
    let pool = PoolBuilder::new(cfg)
        .token_source(src)
        .build()
        .await
        .unwrap();
    let user: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&*pool)
        .await
        .unwrap();
    assert_eq!(user, mi);
    let stats = pool.stats();
    assert_eq!(stats.token.identity_calls, 1, "{stats:?}");
    assert!(stats.logins_ok >= 1, "{stats:?}");
    // Neither the pool's Debug nor its stats show a token.
    let printed = format!("{pool:?} {stats:?}");
    assert!(!printed.contains("eyJ"), "{printed}");
    pool.close().await;
}

/// Waits (bounded) until the pool holds `n` logged-in sessions: sqlx opens
/// `min_connections` in the background after the first login. sqlx counts a session in
/// `size()` from the start of its login, so the logins themselves are waited for too.
async fn filled(pool: &sqlx_entra::Pool, n: u32) {
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while (pool.size() < n || pool.stats().logins_ok < u64::from(n))
        && tokio::time::Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(pool.size(), n, "the pool did not fill");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lazy_pool_returns_before_any_login_and_logs_in_its_floor_in_the_background() {
    let emu = emulator().await;
    let mi = emu.default_identity().name.clone();
    let (src, _) = source(&emu, &mi, LIFETIME, Arc::default());
    let mut cfg = config(&emu, &mi, 4);
    cfg.min_connections = 3;
    cfg.lazy = true;
    let pool = PoolBuilder::new(cfg)
        .token_source(src)
        .build()
        .await
        .unwrap();
    // No checkout at all: the floor comes from the background.
    filled(&pool, 3).await;
    assert_eq!(pool.stats().logins_ok, 3, "{:?}", pool.stats());
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_retired_by_token_age_with_no_error_and_no_expired_token_login() {
    let emu = emulator().await;
    let mi = emu.default_identity().name.clone();
    let (src, _) = source(&emu, &mi, LIFETIME, Arc::default());
    let pool = PoolBuilder::new(config(&emu, &mi, 3))
        .token_source(src)
        .build()
        .await
        .unwrap();
    let errors = load(&pool, 3, Duration::from_millis(20), LIFETIME * 4).await;
    let stats = pool.stats();
    let counters = emu.counters();
    eprintln!("{stats:?}\n{counters:?}");
    assert_eq!(errors, 0);
    assert_eq!(counters.expired_token_logins, 0, "{counters:?}");
    assert_eq!(counters.logins_refused_expired, 0, "{counters:?}");
    assert!(
        stats.token_switches >= 5,
        "a new token every 2 s: {stats:?}"
    );
    // Sessions left by token age, and no session outlived its token by a whole
    // lifetime: every token's sessions were replaced.
    assert!(stats.retired_token_age >= 6, "{stats:?}");
    // About one login per session per token, plus one probe per token: 16 s of 2 s
    // refreshes for 3 sessions is about 8 × (3 + 1); far from a login per request.
    assert!(stats.logins_ok <= 8 * 5 + 4, "{stats:?}");
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_outage_past_expiry_fails_no_request_and_retirement_resumes_after() {
    let emu = emulator().await;
    let mi = emu.default_identity().name.clone();
    let down = Arc::new(AtomicBool::new(false));
    let (src, _) = source(&emu, &mi, LIFETIME, down.clone());
    let mut cfg = config(&emu, &mi, 2);
    // Retries at most a second apart, so that the end of the outage is seen at once.
    cfg.refresh.max_backoff = Duration::from_secs(1);
    let pool = PoolBuilder::new(cfg)
        .token_source(src)
        .build()
        .await
        .unwrap();
    filled(&pool, 2).await;
    down.store(true, Ordering::SeqCst);
    // Three token lifetimes with no token: the sessions keep serving.
    let errors = load(&pool, 2, Duration::from_millis(20), LIFETIME * 3).await;
    let during = pool.stats();
    eprintln!("during {during:?}");
    assert_eq!(errors, 0, "{during:?}");
    assert_eq!(
        during.size, 2,
        "no session was retired without a replacement"
    );
    assert!(during.overdue_checks > 0, "{during:?}");
    let retired_during = during.retired_token_age + during.retired_max_lifetime;
    down.store(false, Ordering::SeqCst);
    let errors = load(&pool, 2, Duration::from_millis(20), LIFETIME * 2).await;
    let after = pool.stats();
    eprintln!("after {after:?}");
    assert_eq!(errors, 0, "{after:?}");
    assert!(
        after.retired_token_age > retired_during,
        "sessions on the expired token leave once a new one logs in: {after:?}"
    );
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_logins_keep_the_sessions_and_the_older_token_in_service() {
    let emu = emulator().await;
    let mi = emu.default_identity().name.clone();
    let (src, _) = source(&emu, &mi, LIFETIME, Arc::default());
    let pool = PoolBuilder::new(config(&emu, &mi, 2))
        .token_source(src)
        .build()
        .await
        .unwrap();
    filled(&pool, 2).await;
    emu.faults().set_refuse_logins(true);
    let errors = load(&pool, 2, Duration::from_millis(20), LIFETIME * 3).await;
    let during = pool.stats();
    eprintln!("during {during:?}");
    assert_eq!(errors, 0, "{during:?}");
    assert_eq!(during.size, 2);
    assert!(
        during.logins_failed > 0,
        "probes found the refusal: {during:?}"
    );
    emu.faults().set_refuse_logins(false);
    let errors = load(&pool, 2, Duration::from_millis(20), LIFETIME * 2).await;
    let after = pool.stats();
    eprintln!("after {after:?}");
    assert_eq!(errors, 0, "{after:?}");
    assert!(
        after.retired_token_age > during.retired_token_age,
        "{after:?}"
    );
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_that_kills_every_session_costs_only_the_requests_in_flight() {
    let emu = emulator().await;
    let mi = emu.default_identity().name.clone();
    let (src, _) = source(&emu, &mi, LIFETIME * 15, Arc::default());
    let pool = PoolBuilder::new(config(&emu, &mi, 3))
        .token_source(src)
        .build()
        .await
        .unwrap();
    filled(&pool, 3).await;
    let killer = {
        let emu = emu.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            emu.faults().kill_all_sessions()
        })
    };
    let errors = load(&pool, 3, Duration::from_millis(10), Duration::from_secs(4)).await;
    let killed = killer.await.unwrap();
    let stats = pool.stats();
    eprintln!("killed {killed}, errors {errors}, {stats:?}");
    assert!(killed >= 3, "the sessions were killed: {killed}");
    // sqlx pings an idle session before handing it out: only a query in flight on a
    // killed session fails, one per task at most.
    assert!(errors <= 3, "{errors} failed");
    // Whole again: every task's next request works.
    assert_eq!(
        load(&pool, 3, Duration::ZERO, Duration::from_millis(500)).await,
        0
    );
    assert!(
        stats.logins_ok >= 6,
        "the sessions were replaced: {stats:?}"
    );
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_provider_serves_a_deadpool_pool_and_a_sqlx_pool_with_one_identity_call_per_refresh() {
    let emu = emulator().await;
    let mi = emu.default_identity().name.clone();
    let (src, calls) = source(&emu, &mi, LIFETIME, Arc::default());
    let tokens = deadpool_entra::TokenProvider::new(src, OSSRDBMS_SCOPE, RefreshPolicy::default());
    let cfg = config(&emu, &mi, 2);
    let deadpool = cfg.builder().token_provider(&tokens).build().await.unwrap();
    let sqlx = PoolBuilder::new(cfg)
        .token_provider(tokens.shared())
        .build()
        .await
        .unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one first token for both");
    let deadpool_load = async {
        let until = tokio::time::Instant::now() + LIFETIME * 3;
        let mut errors = 0;
        while tokio::time::Instant::now() < until {
            match deadpool.get().await {
                Ok(c) => errors += usize::from(c.simple_query("SELECT 1").await.is_err()),
                Err(_) => errors += 1,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        errors
    };
    let (a, b) = tokio::join!(
        deadpool_load,
        load(&sqlx, 2, Duration::from_millis(20), LIFETIME * 3)
    );
    assert_eq!((a, b), (0, 0));
    let shared = tokens.stats();
    eprintln!("{shared:?}\n{:?}\n{:?}", deadpool.stats(), sqlx.stats());
    assert_eq!(calls.load(Ordering::SeqCst), shared.identity_calls);
    // 12 s of 4 s tokens renewed at half-life: the first and about 6 refreshes for both
    // pools (two providers would make about 14 calls).
    assert!(shared.identity_calls <= 9, "{shared:?}");
    assert_eq!(sqlx.stats().token.identity_calls, shared.identity_calls);
    assert!(sqlx.stats().retired_token_age > 0 && deadpool.stats().retired_token_age > 0);
    sqlx.close().await;
    deadpool.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_clear_error_that_shows_no_token() {
    let emu = emulator().await;
    let mi = emu.default_identity().name.clone();
    // A role the server does not have: the first login fails, and says so.
    let (src, _) = source(&emu, &mi, LIFETIME, Arc::default());
    let err = PoolBuilder::new(config(&emu, "nobody-here", 1))
        .token_source(src)
        .build()
        .await
        .unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(matches!(err, sqlx_entra::Error::Login(_)), "{text}");
    assert!(!text.contains("eyJ"), "{text}");
    // Clear text to a host that is not loopback: refused before any token is fetched.
    let (src, calls) = source(&emu, &mi, LIFETIME, Arc::default());
    let mut cfg = config(&emu, &mi, 1);
    cfg.set("host", "myserver.postgres.database.azure.com")
        .unwrap();
    cfg.set("sslmode", "disable").unwrap();
    let err = PoolBuilder::new(cfg)
        .token_source(src)
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, sqlx_entra::Error::Config(_)), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // A dead identity endpoint: the token error, with the source's message.
    let (src, _) = source(&emu, &mi, LIFETIME, Arc::new(AtomicBool::new(true)));
    let err = PoolBuilder::new(config(&emu, &mi, 1))
        .token_source(src)
        .build()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("identity endpoint down"), "{err}");
}
