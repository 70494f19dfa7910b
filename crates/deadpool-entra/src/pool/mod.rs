//! The pool: deadpool_postgres's own pool and manager, with our `Connect`, our hooks in
//! front of the user's, a token cache, a refresher and a sweeper; checkouts, stats and
//! health. The builder and the build steps are in `builder.rs`.

pub(crate) mod hooks;
pub(crate) mod spare_logins;
pub(crate) mod sweeper;

use std::{
    fmt,
    ops::Deref,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use deadpool_postgres::{HookError, PoolError, TimeoutType, Timeouts};
use tokio::time::Instant;

use crate::{
    checkout::{GET_CONTEXT, GetContext, Origin},
    config::Config,
    config::ConfigError,
    error::Error,
    error::TimeoutKind,
    error::classify_pg,
    metrics::Stopwatch,
    network::{DeadCause, LIVENESS_TIMEOUT},
    retire::{self, RetireReason},
    shared::Shared,
    stats::HealthReport,
    stats::Stats,
    stats::secs_since,
    stats::{ConnectionInfo, Degraded, NetworkStats, PoolStatus, TokenStats},
};

/// A pool of `deadpool_postgres` clients that log in with Entra ID tokens.
///
/// `Deref`s to [`deadpool_postgres::Pool`], so `status()`, `resize()`, `retain()`,
/// `timeout_get()` and `close()` work as before; [`Pool::get`] returns the same
/// [`deadpool_postgres::Client`] with typed errors.
#[derive(Clone)]
pub struct Pool {
    inner: deadpool_postgres::Pool,
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("endpoint", &self.shared.endpoint)
            .field("user", &self.shared.user)
            .field("credential", &self.credential_name())
            .field("status", &self.inner.status())
            .finish()
    }
}

impl Deref for Pool {
    type Target = deadpool_postgres::Pool;
    fn deref(&self) -> &deadpool_postgres::Pool {
        &self.inner
    }
}

impl Pool {
    /// A pool configured from the environment ([`Config::from_env`]).
    pub async fn from_env() -> Result<Pool, Error> {
        Config::from_env()?.build_pool().await
    }

    pub(crate) fn from_parts(inner: deadpool_postgres::Pool, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// The `deadpool_postgres` pool inside.
    pub fn inner(&self) -> &deadpool_postgres::Pool {
        &self.inner
    }

    /// Checks out a connection: an idle one that is not due for retirement, or a new
    /// login with the cached token.
    // A function returning the checkout's future rather than an `async fn` around it:
    // each `async fn` layer would move the whole future, deadpool's own and more, once
    // more per checkout.
    pub fn get(
        &self,
    ) -> impl Future<Output = Result<deadpool_postgres::Client, Error>> + Send + '_ {
        self.get_as(self.inner.timeouts(), Origin::Checkout)
    }

    /// [`Pool::get`] with other timeouts.
    pub fn timeout_get(
        &self,
        timeouts: &Timeouts,
    ) -> impl Future<Output = Result<deadpool_postgres::Client, Error>> + Send + '_ {
        self.get_as(*timeouts, Origin::Checkout)
    }

    /// Logs in `n` connections and leaves them idle (at most
    /// [`retire::spares::MAX_BACKGROUND_LOGINS`] + 2 logins at once); the first error
    /// ends it.
    pub(crate) async fn prewarm(&self, n: usize) -> Result<(), Error> {
        use futures_util::{StreamExt, TryStreamExt};
        let timeouts = self.inner.timeouts();
        // Held until all are there, so that each checkout creates one.
        let held: Vec<_> = futures_util::stream::iter(0..n)
            .map(|_| self.get_as(timeouts, Origin::Background))
            .buffer_unordered(retire::spares::MAX_BACKGROUND_LOGINS + 2)
            .try_collect()
            .await?;
        tracing::debug!(target: "deadpool_entra", connections = held.len(), "prewarmed");
        Ok(())
    }

    async fn get_as(
        &self,
        timeouts: Timeouts,
        origin: Origin,
    ) -> Result<deadpool_postgres::Client, Error> {
        // No token check here: an idle session serves without one (the server checked its
        // token at login). A checkout that needs a login gets the typed token error from
        // our `Connect`, through the checkout's context.
        //
        // The warm path is one attempt whose connection goes out as it is: one clock read
        // and two atomic loads more than deadpool's own checkout (the clock read serves the
        // `pre_recycle` hook too, whose load is the table's earliest due time). Everything else (waiting for a session, liveness checks,
        // mapping errors) is `get_patiently`, boxed, so that the checkout's future stays
        // the size of deadpool's own plus a few words: at high concurrency its size is
        // what a checkout costs.
        let took = Stopwatch::start();
        let started = Instant::now();
        let login_now = patience(&timeouts).is_zero();
        let mut scoped = std::pin::pin!(GET_CONTEXT.scope(
            GetContext::new(origin, login_now, Some(started)),
            self.inner.timeout_get(&timeouts),
        ));
        match scoped.as_mut().await {
            // After a session died of a network error, older sessions prove alive first.
            Ok(client) if !self.shared.net.checks_pending() => {
                Ok(self.checked_out(client, origin, &took))
            }
            result => {
                let first = Attempt::new(result, scoped.take_value(), login_now);
                Box::pin(self.get_patiently(timeouts, origin, started, took, first)).await
            }
        }
    }

    /// One `deadpool` checkout, inside the context our `Connect` and hooks read.
    async fn attempt(
        &self,
        timeouts: &Timeouts,
        origin: Origin,
        login_now: bool,
        began: Instant,
    ) -> Attempt {
        let context = GetContext::new(origin, login_now, Some(began));
        let mut scoped =
            std::pin::pin!(GET_CONTEXT.scope(context, self.inner.timeout_get(timeouts)));
        let result = scoped.as_mut().await;
        Attempt::new(result, scoped.take_value(), login_now)
    }

    /// The rest of a checkout whose first attempt did not hand a connection out as it is.
    ///
    /// While logins fail or no token is valid, `Connect` declines to log in as long as
    /// the pool has sessions, and a login that fails then is not the request's end: the
    /// checkout waits for a session to come back (polling, since deadpool has no return
    /// hook), up to the wait timeout, and then tries one real login, whose error (or
    /// connection) it returns.
    async fn get_patiently(
        &self,
        timeouts: Timeouts,
        origin: Origin,
        started: Instant,
        took: Stopwatch,
        first: Attempt,
    ) -> Result<deadpool_postgres::Client, Error> {
        let mut last = first;
        let mut pause = Duration::from_millis(1);
        // Without a wait timeout, wait for a session as long as a login may take.
        let patience = patience(&timeouts);
        loop {
            let Attempt {
                result,
                stashed,
                declined,
                login_now,
            } = last;
            match result {
                Ok(client) => {
                    if !self.shared.net.checks_pending() {
                        return Ok(self.checked_out(client, origin, &took));
                    }
                    if let Some(client) = self.vet(client).await {
                        return Ok(self.checked_out(client, origin, &took));
                    }
                    // It was dead: take another at once.
                }
                // A login that failed while other sessions exist (the first one to meet a
                // fault), or during an outage (a partition): wait for a session or a
                // login that gets through too, rather than fail the request.
                Err(PoolError::Backend(_) | PoolError::Timeout(TimeoutType::Create))
                    if declined
                        || (!login_now
                            && (self.shared.conns.live() > 0 || self.shared.logins.outage())) =>
                {
                    self.shared.counters.checkouts_waited_for_session.fetch_add(
                        u64::from(pause == Duration::from_millis(1)),
                        Ordering::Relaxed,
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(e) => {
                    let e = self.map_error(e, stashed);
                    if origin == Origin::Checkout && matches!(e, Error::Timeout(_)) {
                        self.shared.counters.metrics.timeout();
                    }
                    return Err(e);
                }
            }
            let now = Instant::now();
            let waited = now.saturating_duration_since(started);
            let t = Timeouts {
                wait: timeouts.wait.map(|w| w.saturating_sub(waited)),
                ..timeouts
            };
            last = self.attempt(&t, origin, waited >= patience, now).await;
        }
    }

    /// Counts a checkout that hands `client` out.
    fn checked_out(
        &self,
        client: deadpool_postgres::Client,
        origin: Origin,
        took: &Stopwatch,
    ) -> deadpool_postgres::Client {
        if origin == Origin::Checkout {
            self.shared.counters.metrics.checkout(took);
        }
        client
    }

    /// A session that logged in before a sibling died of a network error answers an
    /// empty query before it is handed out; one that does not answer within
    /// [`LIVENESS_TIMEOUT`] is dropped (`None`) and the checkout takes another.
    async fn vet(&self, client: deadpool_postgres::Client) -> Option<deadpool_postgres::Client> {
        let net = &self.shared.net;
        let epoch = net.epoch();
        let Some(addr) = self.shared.conns.unchecked(&client, epoch) else {
            return Some(client);
        };
        net.counters.liveness_checks.fetch_add(1, Ordering::Relaxed);
        let answer = tokio::time::timeout(LIVENESS_TIMEOUT, client.simple_query("")).await;
        if matches!(answer, Ok(Ok(_))) {
            self.shared.conns.mark_checked(&client, epoch);
            return Some(client);
        }
        net.found_dead(addr, DeadCause::LivenessCheck, Instant::now());
        self.shared.conns.remove(&client);
        self.shared.counters.count_retired(RetireReason::Broken, 1);
        // Out of the pool: dropping it closes the session.
        drop(deadpool_postgres::Client::take(client));
        // A suspect session that does not answer: its idle siblings to the same address,
        // unchecked since the same death, most likely went with it. Drop them now rather
        // than have each of the next checkouts wait a liveness timeout for one.
        let doomed = self.shared.conns.unchecked_at(addr, epoch);
        if !doomed.is_empty() {
            let removed = self
                .inner
                .retain(|w, _| !doomed.contains(&retire::table::key(w)))
                .removed;
            let n = removed.len() as u64;
            for w in &removed {
                self.shared.conns.remove(w);
            }
            drop(removed);
            net.counters
                .dead_liveness_check
                .fetch_add(n, Ordering::Relaxed);
            self.shared.counters.count_retired(RetireReason::Broken, n);
        }
        None
    }

    fn map_error(&self, e: PoolError, stashed: Option<Error>) -> Error {
        match e {
            PoolError::Timeout(TimeoutType::Wait) => Error::Timeout(TimeoutKind::Wait),
            PoolError::Timeout(TimeoutType::Create) => Error::Timeout(TimeoutKind::Create),
            PoolError::Timeout(TimeoutType::Recycle) => Error::Timeout(TimeoutKind::Recycle),
            PoolError::Closed => Error::Closed,
            PoolError::NoRuntimeSpecified => {
                Error::Config(ConfigError::new("runtime", "no runtime specified"))
            }
            PoolError::Backend(pg) => stashed.unwrap_or_else(|| {
                classify_pg(pg, &self.shared.endpoint, &self.shared.user_for_errors())
            }),
            PoolError::PostCreateHook(h) => stashed.unwrap_or_else(|| match h {
                HookError::Backend(pg) => {
                    classify_pg(pg, &self.shared.endpoint, &self.shared.user_for_errors())
                }
                HookError::Message(m) => Error::Hook(m.into_owned()),
            }),
        }
    }

    /// When a checked-out connection logged in, when its token expires and when it is
    /// due to retire (`None`: not one of this pool's connections).
    pub fn connection_info(&self, client: &deadpool_postgres::Client) -> Option<ConnectionInfo> {
        let (created, plan) = self.shared.conns.info(client)?;
        Some(ConnectionInfo {
            logged_in_at: created.into_std(),
            token_expires_at: plan.token_expiry.map(Instant::into_std),
            retires_at: plan.earliest.map(|(t, _)| t.into_std()),
        })
    }

    /// A snapshot of the counters, the token state and the pool size.
    pub fn stats(&self) -> Stats {
        let now = Instant::now();
        let c = &self.shared.counters;
        let status = self.inner.status();
        Stats {
            token: TokenStats::of(&self.shared.cache, now),
            logins_ok: c.logins_ok.load(Ordering::Relaxed),
            logins_failed: c.logins_failed.load(Ordering::Relaxed),
            logins_waited_for_token: c.logins_waited_for_token.load(Ordering::Relaxed),
            forced_refresh_retries: c.forced_refresh_retries.load(Ordering::Relaxed),
            same_token_after_refusal: c.same_token_after_refusal.load(Ordering::Relaxed),
            retired_token_age: c.retired_token_age.load(Ordering::Relaxed),
            retired_max_lifetime: c.retired_max_lifetime.load(Ordering::Relaxed),
            retired_broken: c.retired_broken.load(Ordering::Relaxed),
            retired_address_changed: c.retired_address_changed.load(Ordering::Relaxed),
            created_on_checkout: c.created_on_checkout.load(Ordering::Relaxed),
            created_in_background: c.created_in_background.load(Ordering::Relaxed),
            spares_used: c.spares_used.load(Ordering::Relaxed),
            logins_on_outgoing_token: c.logins_on_outgoing_token.load(Ordering::Relaxed),
            probe_logins: c.probe_logins.load(Ordering::Relaxed),
            checkouts_waited_for_session: c.checkouts_waited_for_session.load(Ordering::Relaxed),
            degraded: self.degraded(now),
            network: NetworkStats::of(&self.shared.net),
            pool: PoolStatus {
                size: status.size,
                available: status.available,
                spares: self.shared.spares.ready(),
                waiting: status.waiting,
                max_size: status.max_size,
            },
        }
    }

    /// The degraded-but-serving state at `now`.
    fn degraded(&self, now: Instant) -> Degraded {
        let survey = self.shared.survey(&self.shared.gate(now), now);
        Degraded {
            overdue: survey.overdue,
            sessions_past_token_expiry: survey.past_token_expiry,
            oldest_session_token_expires_in_secs: survey.oldest_token_expiry.map(|e| {
                if e >= now {
                    (e - now).as_secs_f64()
                } else {
                    -(now - e).as_secs_f64()
                }
            }),
            logins_failing_for_secs: secs_since(self.shared.logins.failing_since(), now),
            identity_failing_for_secs: secs_since(self.shared.cache.failing_since(), now),
            network_failing_for_secs: secs_since(self.shared.net.incident_since(), now),
            sessions_on_old_address: self.shared.conns.stale(),
        }
    }

    /// A health check: `SELECT 1` through a normal checkout, 5 s timeout, plus the
    /// token's state.
    pub async fn health(&self) -> HealthReport {
        self.health_with_timeout(Duration::from_secs(5)).await
    }

    /// [`Pool::health`] with another timeout.
    pub async fn health_with_timeout(&self, timeout: Duration) -> HealthReport {
        let start = Instant::now();
        let result = tokio::time::timeout(timeout, async {
            let client = self.get().await?;
            client
                .simple_query("SELECT 1")
                .await
                .map_err(Error::Postgres)?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap_or(Err(Error::Timeout(TimeoutKind::Health)));
        let latency = start.elapsed().as_secs_f64() * 1000.0;
        let token = self.shared.cache.peek();
        let database_ok = result.is_ok();
        let degraded_state = self.degraded(Instant::now());
        HealthReport {
            healthy: database_ok,
            degraded: degraded_state.is_degraded(),
            degraded_state,
            database_ok,
            database_latency_ms: database_ok.then_some(latency),
            token_expires_in_secs: token
                .and_then(|t| t.deadline)
                .map(|d| d.saturating_duration_since(Instant::now()).as_secs_f64()),
            token_source: self.shared.cache.source_name(),
            last_refresh_error: self.shared.cache.last_error(),
            error: result.err().map(|e| e.to_string()),
        }
    }

    /// Closes the pool (as `deadpool_postgres::Pool::close`) and stops the background
    /// tasks. With the `metrics` feature, the pool's gauges read 0 from then on.
    pub fn close(&self) {
        self.inner.close();
        self.shared.shut_down();
    }

    /// The token source in use; for the chain, the link that produced the token
    /// (e.g. `ManagedIdentityCredential`).
    pub fn credential_name(&self) -> &str {
        if let Some(n) = self.shared.credential_name.get() {
            return n;
        }
        if self.shared.cache.peek().is_some() {
            return self
                .shared
                .credential_name
                .get_or_init(|| self.shared.cache.source_name());
        }
        &self.shared.initial_name
    }
}

/// What one `deadpool` checkout gave, and what our `Connect` said about it.
struct Attempt {
    result: Result<deadpool_postgres::Client, PoolError>,
    /// The typed error behind a stand-in `tokio_postgres::Error`.
    stashed: Option<Error>,
    /// `Connect` declined to log in (the caller should wait for a session).
    declined: bool,
    /// The attempt was told to log in even while logins fail.
    login_now: bool,
}

impl Attempt {
    /// `result`, with what `Connect` left in the attempt's `context`.
    fn new(
        result: Result<deadpool_postgres::Client, PoolError>,
        context: Option<GetContext>,
        login_now: bool,
    ) -> Self {
        let (stashed, declined) =
            context.map_or((None, false), |c| (c.take_error(), c.declined.get()));
        Attempt {
            result,
            stashed,
            declined,
            login_now,
        }
    }
}

/// How long a checkout waits for a session before it tries a real login: its wait
/// timeout, or without one as long as a login may take.
fn patience(timeouts: &Timeouts) -> Duration {
    timeouts
        .wait
        .or(timeouts.create)
        .unwrap_or(Duration::from_secs(30))
}
