//! The watcher: a task per pool that puts each new token into the pool's connect options
//! once a login with it has worked, and makes probe logins when nothing else tells
//! whether logins work. It ends when the pool is closed.
//!
//! - **A new token** in the cache is first tried in a probe login. If the server takes
//!   it, it goes into the options (new sessions log in with it) and retirements by token
//!   age may begin. If the server refuses it, the options keep the older token while it
//!   is valid (new logins keep working), retirements pause, and the probe is tried again
//!   after a backoff; once the older token has expired, the new one goes in anyway.
//! - **A retirement not followed by a successful login** within a login's time (its
//!   replacement failed, and the caller got the error) is checked with a probe, so that
//!   a server that stops accepting logins pauses retirements within one tick.
//! - **While logins fail**, a probe per backoff step (at most 5 s apart) finds when they
//!   work again.

use std::{sync::Arc, time::Duration};

use entra_pg_token::token::backoff::backoff;
use sqlx::{ConnectOptions, Connection, PgPool, postgres::PgConnectOptions};
use tokio::time::Instant;

use deadpool_entra::metrics::{LoginOrigin, Sample, Stopwatch};

use crate::{shared::Shared, switches::Switch};

/// The longest gap between two probes while logins fail.
const MAX_PROBE_GAP: Duration = Duration::from_secs(5);

/// How often the watcher looks: the retirement policy's sweep interval, never more than
/// a quarter of the shortest token lifetime seen, at least 50 ms.
fn tick(shared: &Shared) -> Duration {
    let mut t = shared.policy.sweep_interval;
    if let Some(life) = shared.tokens.cache().shortest_lifetime() {
        t = t.min(life / 4);
    }
    t.max(Duration::from_millis(50))
}

/// The options with `secret` as the password.
pub(crate) fn with_password(base: &PgConnectOptions, secret: &str) -> PgConnectOptions {
    base.clone().password(secret)
}

/// Runs until `pool` is closed.
pub(crate) async fn run(pool: PgPool, shared: Arc<Shared>) {
    let closed = pool.close_event();
    tokio::pin!(closed);
    let mut failures: u32 = 0;
    let mut next_probe = Instant::now();
    loop {
        tokio::select! {
            _ = &mut closed => {
                shared.counters.close();
                return;
            }
            _ = tokio::time::sleep(tick(&shared)) => {}
        }
        let now = Instant::now();
        sample(&pool, &shared, now);
        let cache = shared.tokens.cache();
        let latest = shared.switches.latest();
        let fresh = cache
            .valid_now()
            .filter(|t| t.generation != latest.generation);
        // The retirement's own replacement logs in within its checkout: probe only when
        // that has had a login's time and not succeeded.
        let unproven = shared.proof.unproven_since().is_some_and(|at| {
            Duration::from_nanos(shared.nanos(now).saturating_sub(at)) >= shared.switches.window()
        });
        let failing = shared.health.failing_since().is_some();
        if fresh.is_none() && !unproven && !failing {
            continue;
        }
        if now < next_probe {
            continue;
        }
        let options = match &fresh {
            Some(t) => with_password(&shared.base, t.secret.expose()),
            None => (*pool.connect_options()).clone(),
        };
        let ok = probe(&shared, &options).await;
        if ok {
            failures = 0;
            next_probe = now;
        } else {
            failures = failures.saturating_add(1);
            let policy = cache.policy();
            next_probe = Instant::now() + backoff(policy, failures).min(MAX_PROBE_GAP);
        }
        // The new token goes in once it has logged in, or once the token in the options
        // has expired (nothing is lost then).
        let old_expired = latest.expiry.is_some_and(|e| e <= Instant::now());
        if let Some(t) = fresh
            && (ok || old_expired)
        {
            pool.set_connect_options(options);
            shared.switches.record(Switch {
                at: Instant::now(),
                generation: t.generation,
                expiry: t.deadline,
            });
            shared.counters.switched();
            tracing::debug!(target: "deadpool_entra", generation = t.generation, proven = ok, "new token in the connect options");
        }
    }
}

/// The gauges, once a tick: sessions, the floor and the cap, the token's times (sqlx
/// does not tell how many acquires wait).
fn sample(pool: &PgPool, shared: &Shared, now: Instant) {
    let options = pool.options();
    let s = Sample {
        size: pool.size() as usize,
        idle: pool.num_idle(),
        max: options.get_max_connections() as usize,
        min: options.get_min_connections() as usize,
        ..Default::default()
    };
    shared
        .counters
        .sample(&s.with_token(shared.tokens.cache().peek().as_deref(), now));
}

/// One probe login: opened, timed, closed. Records the outcome.
async fn probe(shared: &Shared, options: &PgConnectOptions) -> bool {
    let started = Instant::now();
    let watch = Stopwatch::start();
    let limit = shared.login_limit;
    let result = tokio::time::timeout(limit, options.connect()).await;
    match result {
        Ok(Ok(conn)) => {
            shared.switches.saw_login(started.elapsed());
            shared.login_ok(Instant::now());
            shared
                .counters
                .login(Some(&watch), true, LoginOrigin::Probe);
            // A server gone half-open would never answer the goodbye.
            let _ = tokio::time::timeout(limit, conn.close()).await;
            true
        }
        Ok(Err(e)) => {
            shared.health.failed(Instant::now());
            shared
                .counters
                .login(Some(&watch), false, LoginOrigin::Probe);
            tracing::warn!(target: "deadpool_entra", error = %e, "probe login failed: retirements pause until logins work");
            false
        }
        Err(_) => {
            shared.health.failed(Instant::now());
            shared
                .counters
                .login(Some(&watch), false, LoginOrigin::Probe);
            tracing::warn!(target: "deadpool_entra", limit_secs = limit.as_secs_f64(), "probe login timed out: retirements pause until logins work");
            false
        }
    }
}
