//! One cached token per pool, fetched single-flight in a task of its own that callers join
//! and leave freely, refreshed ahead of expiry by a background task; a failed fetch is
//! remembered for its retry delay, so a storm of checkouts during an outage makes one
//! identity call per backoff step. The tasks hold only `Weak` references and end when the
//! cache is shut down or dropped, a fetch in flight included.
//!
//! Times are on tokio's clock: a token's wall-clock expiry is turned into a
//! `tokio::time::Instant` deadline the moment it is fetched, so paused-time tests drive
//! every decision. The wall-clock expiry is checked as well before a token is handed out:
//! the monotonic clock stands still while a machine is suspended.

use std::{
    collections::VecDeque,
    panic::AssertUnwindSafe,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwapOption;
use futures_util::FutureExt;
use tokio::{
    sync::{Notify, watch},
    time::Instant,
};

use super::{
    Expiry, TokenSource, TokenSourceError,
    backoff::{backoff_ceiling, floor, retry_delay},
    metrics::{RefreshOutcome, TokenMetrics},
    secret::Secret,
};
use crate::{
    RefreshPolicy, TokenError,
    metrics::Stopwatch,
    sync::lock,
    time::{LONGEST, later},
};

/// A token as the cache holds it.
pub(crate) struct CachedToken {
    pub(crate) secret: Arc<Secret>,
    /// `None`: never expires (a password).
    pub(crate) deadline: Option<Instant>,
    /// The same expiry on the wall clock, which keeps running while the machine sleeps.
    pub(crate) expires_wall: Option<SystemTime>,
    /// Remaining life when fetched.
    pub(crate) lifetime: Option<Duration>,
    pub(crate) fetched_at: Instant,
    /// Since when a valid token has been cached without a gap: this token's fetch if the
    /// one before it had expired (or there was none), else that one's `usable_since`.
    pub(crate) usable_since: Instant,
    pub(crate) generation: u64,
}

impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken")
            .field("secret", &"<redacted>")
            .field("lifetime", &self.lifetime)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl CachedToken {
    /// A token is not handed out in its last moments: 5 s, or 10 % of its life when that
    /// is shorter, covers the time a login takes to reach the server.
    fn safety(&self) -> Duration {
        self.lifetime
            .map(|l| (l / 10).min(Duration::from_secs(5)))
            .unwrap_or(Duration::ZERO)
    }

    /// Valid at `now` on tokio's clock and at `wall` on the wall clock.
    pub(crate) fn is_valid_at(&self, now: Instant, wall: SystemTime) -> bool {
        let safety = self.safety();
        let monotonic = self
            .deadline
            .is_none_or(|d| now.checked_add(safety).is_some_and(|t| t < d));
        let by_wall = self
            .expires_wall
            .is_none_or(|w| wall.checked_add(safety).is_some_and(|t| t < w));
        monotonic && by_wall
    }
}

/// Counters shown in [`crate::Stats`].
#[derive(Default)]
pub(crate) struct TokenCounters {
    pub(crate) refreshes_ok: AtomicU64,
    pub(crate) refreshes_failed: AtomicU64,
    pub(crate) identity_calls: AtomicU64,
    /// Answers that returned the token already cached (a credential serving its cache).
    pub(crate) same_token_answers: AtomicU64,
    /// Panics caught in the refresher, which was restarted each time.
    pub(crate) refresher_panics: AtomicU64,
}

/// How many of the latest tokens the cache remembers for the retirement gate.
pub(crate) const RECENT_TOKENS: usize = 4;

/// The latest distinct tokens, oldest first: `(cached at, expiry)`.
pub(crate) type RecentTokens = [Option<(Instant, Option<Instant>)>; RECENT_TOKENS];

/// The wall clock (a seam: tests simulate a suspended machine).
pub(crate) type WallClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// A fetch's outcome as the joiners of its flight see it.
type Outcome = Result<Arc<CachedToken>, TokenError>;

/// The fetch in flight and the memory of the last failure, under one lock so that a
/// caller sees either a flight to join, a failure to share, or neither.
#[derive(Default)]
struct Flight {
    /// The fetch in progress: joiners wait on this until it holds the outcome.
    inflight: Option<watch::Receiver<Option<Outcome>>>,
    /// Whether that fetch bypasses the source's cache (`fetch_fresh`).
    inflight_fresh: bool,
    /// The last failure and until when it stands in for a new fetch.
    failure: Option<Failure>,
    /// A token the server refused, for which the source gave no other: its generation,
    /// until when that answer stands, and how many times in a row it came.
    refused: Option<(u64, Instant, u32)>,
    /// The generation of the refused token that the fresh fetch in flight was asked for:
    /// the fetch itself records the hold when it brings that token back, so that the hold
    /// stands even when every caller waiting for it was cancelled.
    refusing: Option<u64>,
}

struct Failure {
    error: TokenError,
    until: Instant,
    attempt: u32,
}

#[cfg(test)]
impl Forced {
    pub(crate) fn is_failed(&self) -> bool {
        matches!(self, Forced::Failed(_))
    }
}

/// The refresher's fetch: an outcome at once, or a flight to wait for.
enum Refresh {
    Done(Outcome),
    Wait(watch::Receiver<Option<Outcome>>),
}

/// What a fetch after a refused login found.
pub(crate) enum Forced {
    /// A different token to log in with.
    New(Arc<CachedToken>),
    /// The source returns the refused token again: no other can be had now.
    Same(Arc<CachedToken>),
    /// The fetch failed.
    Failed(TokenError),
}

pub(crate) struct TokenCache {
    source: Arc<dyn TokenSource>,
    /// `source.is_password()`, asked once: user code is not called under our locks.
    password: bool,
    /// Test seam: the refresher panics once when set.
    #[cfg(test)]
    pub(crate) panic_refresher_once: std::sync::atomic::AtomicBool,
    scope: Arc<str>,
    policy: RefreshPolicy,
    current: ArcSwapOption<CachedToken>,
    /// When the last replacement happened and the deadline of the token it replaced.
    previous: Mutex<Option<(Instant, Option<Instant>)>>,
    flight: Mutex<Flight>,
    last_failure: Mutex<Option<TokenError>>,
    generation: AtomicU64,
    shortest_lifetime_ms: AtomicU64,
    /// The latest distinct tokens, oldest first: when each was cached, its expiry.
    recent: Mutex<VecDeque<(Instant, Option<Instant>)>>,
    /// When the current run of failed fetches began (`None`: the last fetch worked).
    failing_since: Mutex<Option<Instant>>,
    pub(crate) counters: TokenCounters,
    metrics: TokenMetrics,
    source_name: Mutex<String>,
    changed: Arc<Notify>,
    shutdown: watch::Sender<bool>,
    wall: WallClock,
}

impl TokenCache {
    pub(crate) fn new(
        source: Box<dyn TokenSource>,
        scope: impl Into<String>,
        policy: RefreshPolicy,
    ) -> Arc<Self> {
        Self::with_wall_clock(source, scope, policy, Arc::new(SystemTime::now))
    }

    /// A cache reading the wall clock from `wall`.
    pub(crate) fn with_wall_clock(
        source: Box<dyn TokenSource>,
        scope: impl Into<String>,
        policy: RefreshPolicy,
        wall: WallClock,
    ) -> Arc<Self> {
        let name = source.name();
        let password = source.is_password();
        Arc::new(Self {
            source: Arc::from(source),
            password,
            #[cfg(test)]
            panic_refresher_once: std::sync::atomic::AtomicBool::new(false),
            scope: Arc::from(scope.into()),
            policy,
            current: ArcSwapOption::empty(),
            previous: Mutex::new(None),
            flight: Mutex::new(Flight::default()),
            last_failure: Mutex::new(None),
            generation: AtomicU64::new(0),
            shortest_lifetime_ms: AtomicU64::new(u64::MAX),
            recent: Mutex::new(VecDeque::with_capacity(RECENT_TOKENS)),
            failing_since: Mutex::new(None),
            counters: TokenCounters::default(),
            metrics: TokenMetrics::default(),
            source_name: Mutex::new(name),
            changed: Arc::new(Notify::new()),
            shutdown: watch::channel(false).0,
            wall,
        })
    }

    /// The refresh policy (its backoff also paces the sweeper's probe logins).
    pub(crate) fn policy(&self) -> &RefreshPolicy {
        &self.policy
    }

    pub(crate) fn is_password(&self) -> bool {
        self.password
    }

    pub(crate) fn source_name(&self) -> String {
        lock(&self.source_name).clone()
    }

    fn valid(&self, t: &CachedToken, now: Instant) -> bool {
        t.is_valid_at(now, (self.wall)())
    }

    /// The cached token if it is still valid (by tokio's clock and the wall clock).
    pub(crate) fn valid_now(&self) -> Option<Arc<CachedToken>> {
        let t = self.current.load_full()?;
        self.valid(&t, Instant::now()).then_some(t)
    }

    /// The cached token, valid or not (stats, fallbacks).
    pub(crate) fn peek(&self) -> Option<Arc<CachedToken>> {
        self.current.load_full()
    }

    /// The last failure's text, cleared by the next success.
    pub(crate) fn last_error(&self) -> Option<String> {
        lock(&self.last_failure).as_ref().map(|e| e.to_string())
    }

    /// When the next fetch may be made after a failure (`None`: no failure stands).
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        lock(&self.flight).failure.as_ref().map(|f| f.until)
    }

    /// Shortest token lifetime seen so far.
    pub(crate) fn shortest_lifetime(&self) -> Option<Duration> {
        match self.shortest_lifetime_ms.load(Ordering::Relaxed) {
            u64::MAX => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// The deadline of the token that was replaced by the last refresh, if that refresh
    /// happened after `since`.
    pub(crate) fn previous_deadline_since(&self, since: Instant) -> Option<Instant> {
        match *lock(&self.previous) {
            Some((at, d)) if at >= since => d,
            _ => None,
        }
    }

    /// A valid token: the cached one, or one fetched single-flight. While a failed fetch
    /// stands (its retry delay), its error is returned without asking the source.
    pub(crate) async fn get(self: &Arc<Self>) -> Result<Arc<CachedToken>, TokenError> {
        if let Some(t) = self.valid_now() {
            return Ok(t);
        }
        let rx = {
            let mut flight = lock(&self.flight);
            // Stored while we took the lock?
            if let Some(t) = self.valid_now() {
                return Ok(t);
            }
            if let Some(f) = &flight.failure
                && Instant::now() < f.until
            {
                return Err(f.error.clone());
            }
            self.join_or_start(&mut flight, false)?.0
        };
        join(rx).await
    }

    /// After the server refused `refused`: a different token, or word that the source
    /// returns the same one. Asks the source (bypassing its cache where it can) at most once
    /// per retry delay for the same refused token.
    pub(crate) async fn force_refresh(self: &Arc<Self>, refused: &Arc<CachedToken>) -> Forced {
        // Joining a plain fetch already in flight can answer with the credential's cache;
        // then one cache-bypassing fetch follows before the answer is "the same token".
        for _ in 0..2 {
            let (rx, fresh) = {
                let mut flight = lock(&self.flight);
                let now = Instant::now();
                if let Some(t) = self.current.load_full()
                    && t.secret != refused.secret
                    && self.valid(&t, now)
                {
                    return Forced::New(t);
                }
                if let Some((generation, until, _)) = flight.refused
                    && generation == refused.generation
                    && now < until
                {
                    return Forced::Same(refused.clone());
                }
                if let Some(f) = &flight.failure
                    && now < f.until
                {
                    return Forced::Failed(f.error.clone());
                }
                match self.join_or_start(&mut flight, true) {
                    Ok(joined) => {
                        if joined.1 {
                            flight.refusing = Some(refused.generation);
                        }
                        joined
                    }
                    Err(e) => return Forced::Failed(e),
                }
            };
            match join(rx).await {
                Ok(t) if t.secret != refused.secret => return Forced::New(t),
                Ok(_) if !fresh => continue,
                Ok(t) => {
                    // The fetch recorded the hold already (see `hold_refused`); this
                    // records it only for a flight that another path started.
                    self.hold_refused(&mut lock(&self.flight), &t, Instant::now());
                    return Forced::Same(t);
                }
                Err(e) => return Forced::Failed(e),
            }
        }
        Forced::Same(refused.clone())
    }

    /// After a fresh fetch brought back the refused token `t` at `now`: no other fresh
    /// fetch for it before a backoff step (1 s, 2 s, ... at most 5 s); the refusals that
    /// one flight answered count as one step. Logins are not held back: the next checkout
    /// sends the token again, and works as soon as the server accepts it.
    fn hold_refused(&self, flight: &mut Flight, t: &CachedToken, now: Instant) {
        let times = match flight.refused {
            Some((g, until, _)) if g == t.generation && now < until => return,
            Some((g, _, n)) if g == t.generation => n.saturating_add(1),
            _ => 1,
        };
        let hold = backoff_ceiling(&self.policy, times).min(MAX_REFUSAL_HOLD);
        flight.refused = Some((t.generation, later(now, hold), times));
    }

    /// Joins the fetch in flight, or starts one (`fresh`: bypassing the source's cache).
    fn join_or_start(
        self: &Arc<Self>,
        flight: &mut Flight,
        fresh: bool,
    ) -> Result<(watch::Receiver<Option<Outcome>>, bool), TokenError> {
        // A flight whose task ended without settling (it panicked) is not joined.
        if let Some(rx) = &flight.inflight
            && rx.has_changed().is_ok()
        {
            return Ok((rx.clone(), flight.inflight_fresh));
        }
        if *self.shutdown.borrow() {
            return Err(self.closed_error());
        }
        let (tx, rx) = watch::channel(None);
        flight.inflight = Some(rx.clone());
        flight.inflight_fresh = fresh;
        let counted = !self.password;
        if counted {
            self.counters.identity_calls.fetch_add(1, Ordering::Relaxed);
        }
        let weak = Arc::downgrade(self);
        let source = self.source.clone();
        let scope = self.scope.clone();
        let limit = self.policy.fetch_timeout;
        let mut shutdown = self.shutdown.subscribe();
        // A child of the caller's span (a login, the refresher): a trace shows what waited
        // for this fetch.
        let span = tracing::debug_span!(
            target: "deadpool_entra",
            "token fetch",
            source = %self.source_name(),
            fresh,
        );
        let task = async move {
            let took = Stopwatch::start();
            let fetch = async {
                let f = if fresh {
                    source.fetch_fresh(&scope)
                } else {
                    source.fetch(&scope)
                };
                match limit {
                    Some(limit) => tokio::time::timeout(limit, f)
                        .await
                        .unwrap_or_else(|_| Err(no_answer(limit))),
                    None => f.await,
                }
            };
            // A panicking source fails this fetch; it does not take the pool down.
            let fetch = AssertUnwindSafe(fetch).catch_unwind();
            let result = tokio::select! {
                r = fetch => r.unwrap_or_else(|_| Err(TokenSourceError::new(
                    "the token source panicked while fetching a token",
                ))),
                // Shut down or dropped: the fetch (and what it holds) goes now.
                () = wait_shutdown(&mut shutdown) => {
                    if let Some(cache) = weak.upgrade() {
                        let mut flight = lock(&cache.flight);
                        flight.inflight = None;
                        flight.refusing = None;
                    }
                    return;
                }
            };
            let name = std::panic::catch_unwind(AssertUnwindSafe(|| source.name()))
                .unwrap_or_else(|_| "token source".to_owned());
            drop(source);
            let Some(cache) = weak.upgrade() else { return };
            let before = cache.current.load_full();
            let outcome = cache.settle(result, name.clone());
            let counted = RefreshOutcome::of(&outcome, before.as_ref());
            cache.metrics.fetched(&name, &took, counted, cache.password);
            let _ = tx.send(Some(outcome));
        };
        tokio::spawn(tracing::Instrument::instrument(task, span));
        Ok((rx, fresh))
    }

    fn closed_error(&self) -> TokenError {
        TokenError {
            source_name: self.source_name(),
            cause: "the pool was closed".into(),
            hint: None,
            retry_after: None,
        }
    }

    /// Stores a fetch's result: the token, or the failure with its retry delay.
    fn settle(&self, result: Result<super::Token, TokenSourceError>, name: String) -> Outcome {
        *lock(&self.source_name) = name.clone();
        let now = Instant::now();
        let token = match result {
            Ok(t) => t,
            Err(e) => return Err(self.record_failure(TokenError::from_source(name, e), now)),
        };
        let lifetime = match token.expiry {
            Expiry::Never => None,
            Expiry::In(d) => Some(d),
            Expiry::At(t) => Some(t.duration_since((self.wall)()).unwrap_or(Duration::ZERO)),
        };
        if lifetime == Some(Duration::ZERO) {
            return Err(self.record_failure(
                TokenError {
                    source_name: name,
                    cause: "the token source returned a token that has already expired".into(),
                    hint: Some("check this machine's clock".into()),
                    retry_after: None,
                },
                now,
            ));
        }
        let old = self.current.load_full();
        // The source served its own cache: the same token is not a refresh. If it is no
        // longer valid here, that is a failure (with its retry delay), not a token.
        if let Some(o) = &old
            && *o.secret == *token.secret_arc()
        {
            if !self.valid(o, now) {
                return Err(self.record_failure(
                    TokenError {
                        source_name: name,
                        cause: "the token source keeps returning the token it returned before, \
                                which is expired or about to expire by this machine's clock"
                            .into(),
                        hint: Some(
                            "check this machine's clock; the credential renews its token only \
                             when it nears expiry by its own clock"
                                .into(),
                        ),
                        retry_after: None,
                    },
                    now,
                ));
            }
            // Counted once: an expired same token is a failed fetch, not this.
            self.counters
                .same_token_answers
                .fetch_add(1, Ordering::Relaxed);
            let mut flight = lock(&self.flight);
            flight.inflight = None;
            flight.failure = None;
            // The hold after a refused token is this fetch's, not its waiters' (they may
            // all have been cancelled); recorded under the lock that ends the flight, so
            // that no fresh fetch starts between the two.
            if flight.refusing.take() == Some(o.generation) {
                self.hold_refused(&mut flight, o, now);
            }
            drop(flight);
            *lock(&self.last_failure) = None;
            *lock(&self.failing_since) = None;
            return Ok(o.clone());
        }
        let mut flight = lock(&self.flight);
        flight.inflight = None;
        flight.refusing = None;
        flight.failure = None;
        *lock(&self.last_failure) = None;
        *lock(&self.failing_since) = None;
        // An absurd lifetime from the source is taken as a century, not an overflow.
        let lifetime = lifetime.map(|l| l.min(LONGEST));
        let deadline = lifetime.and_then(|l| now.checked_add(l));
        let expires_wall = match token.expiry {
            Expiry::At(t) => Some(t),
            _ => lifetime.and_then(|l| (self.wall)().checked_add(l)),
        };
        let usable_since = match &old {
            Some(o) if self.valid(o, now) => o.usable_since,
            _ => now,
        };
        {
            let mut recent = lock(&self.recent);
            if recent.len() == RECENT_TOKENS {
                recent.pop_front();
            }
            recent.push_back((now, deadline));
        }
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let cached = Arc::new(CachedToken {
            secret: token.secret_arc(),
            deadline,
            expires_wall,
            lifetime,
            fetched_at: now,
            usable_since,
            generation,
        });
        self.current.store(Some(cached.clone()));
        drop(flight);
        *lock(&self.previous) = Some((now, old.and_then(|o| o.deadline)));
        if !self.password {
            self.counters.refreshes_ok.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(l) = lifetime {
            let ms = u64::try_from(l.as_millis()).unwrap_or(u64::MAX - 1);
            self.shortest_lifetime_ms.fetch_min(ms, Ordering::Relaxed);
        }
        tracing::info!(
            target: "deadpool_entra",
            source = %name,
            expires_in_secs = lifetime.map(|l| l.as_secs_f64()),
            generation,
            "token acquired"
        );
        self.changed.notify_one();
        Ok(cached)
    }

    fn record_failure(&self, err: TokenError, now: Instant) -> TokenError {
        self.counters
            .refreshes_failed
            .fetch_add(1, Ordering::Relaxed);
        let mut flight = lock(&self.flight);
        flight.inflight = None;
        flight.refusing = None;
        let attempt = flight
            .failure
            .as_ref()
            .map_or(1, |f| f.attempt.saturating_add(1));
        let delay = retry_delay(&self.policy, attempt, err.retry_after);
        flight.failure = Some(Failure {
            error: err.clone(),
            until: later(now, delay),
            attempt,
        });
        drop(flight);
        let serving = self
            .current
            .load()
            .as_ref()
            .is_some_and(|t| self.valid(t, now));
        tracing::warn!(
            target: "deadpool_entra",
            source = %err.source_name,
            cause = %err.cause,
            attempt,
            next_try_in_secs = delay.as_secs_f64(),
            "{}",
            if serving {
                "token fetch failed; serving the cached token while it is valid"
            } else {
                "token fetch failed; no valid token is cached, so logins fail until a fetch succeeds"
            }
        );
        *lock(&self.last_failure) = Some(err.clone());
        lock(&self.failing_since).get_or_insert(now);
        self.changed.notify_one();
        err
    }

    /// Since when fetches have been failing (`None`: the last one worked).
    pub(crate) fn failing_since(&self) -> Option<Instant> {
        *lock(&self.failing_since)
    }

    /// `f` of the cached token, if it is valid at `now` (tokio's clock, and the wall
    /// clock's now); `None` otherwise. No `Arc` is cloned.
    pub(crate) fn with_valid<R>(
        &self,
        now: Instant,
        f: impl FnOnce(&CachedToken) -> R,
    ) -> Option<R> {
        let guard = self.current.load();
        let t = guard.as_ref()?;
        self.valid(t, now).then(|| f(t))
    }

    /// The latest distinct tokens, oldest first.
    pub(crate) fn recent_tokens(&self) -> RecentTokens {
        let mut out: RecentTokens = [None; RECENT_TOKENS];
        for (slot, t) in out.iter_mut().zip(lock(&self.recent).iter()) {
            *slot = Some(*t);
        }
        out
    }

    /// When the refresher renews the current token: its refresh point
    /// (`refresh_before_expiry` ahead of the deadline, or at half the token's life when
    /// that is later), but never sooner
    /// than [`floor`] (`min_backoff`, 1 s by default) after it was fetched. A source whose
    /// tokens live milliseconds (a clock far off, a buggy source) is not asked every
    /// half-life in a tight loop; logins that find no valid token still fetch one.
    pub(crate) fn next_refresh(&self) -> Option<Instant> {
        let t = self.current.load_full()?;
        let point = self.refresh_point_of(&t)?;
        Some(point.max(later(t.fetched_at, floor(&self.policy))))
    }

    /// A token's refresh point (see [`Self::next_refresh`]).
    fn refresh_point_of(&self, t: &CachedToken) -> Option<Instant> {
        let (deadline, life) = (t.deadline?, t.lifetime?);
        let before = self.policy.refresh_before_expiry.min(life / 2);
        Some(deadline.checked_sub(before).unwrap_or(deadline))
    }

    /// Whether `token` is past its refresh point at `now` (the outgoing token: a newer
    /// one is due, and normally cached within moments).
    pub(crate) fn is_outgoing(&self, token: &CachedToken, now: Instant) -> bool {
        self.refresh_point_of(token).is_some_and(|p| now >= p)
    }

    /// The refresher's fetch: joins a flight or starts one, unless another task already
    /// replaced generation `seen` (`Done`) or a failure still stands (`None`).
    fn refresh_start(self: &Arc<Self>, seen: u64) -> Option<Refresh> {
        let mut flight = lock(&self.flight);
        if let Some(t) = self.current.load_full()
            && t.generation != seen
        {
            return Some(Refresh::Done(Ok(t)));
        }
        if flight
            .failure
            .as_ref()
            .is_some_and(|f| Instant::now() < f.until)
        {
            return None;
        }
        Some(match self.join_or_start(&mut flight, false) {
            Ok((rx, _)) => Refresh::Wait(rx),
            Err(e) => Refresh::Done(Err(e)),
        })
    }

    /// Stops the refresher and any fetch in flight (pool closed).
    pub(crate) fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }
}

/// Waits for a flight's outcome; a flight that ended without one (shut down) is an error.
async fn join(mut rx: watch::Receiver<Option<Outcome>>) -> Outcome {
    match rx.wait_for(Option::is_some).await {
        Ok(v) => v.clone().unwrap_or_else(|| Err(ended_error())),
        Err(_) => Err(ended_error()),
    }
}

fn ended_error() -> TokenError {
    TokenError {
        source_name: "token cache".into(),
        cause: "the token fetch ended without an answer (the pool was closed, or the fetch \
                panicked)"
            .into(),
        hint: None,
        retry_after: None,
    }
}

/// Resolves when `rx` says shut down, or its sender (the cache) is gone.
async fn wait_shutdown(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// The error for a fetch that outlived [`RefreshPolicy::fetch_timeout`].
fn no_answer(limit: Duration) -> crate::TokenSourceError {
    crate::TokenSourceError::new(format!(
        "no token from the source within {} s (refresh.fetch_timeout): the identity \
         endpoint did not answer, or kept failing while the credential retried",
        limit.as_secs_f64()
    ))
    .with_hint(
        "check that this machine reaches its identity endpoint (IDENTITY_ENDPOINT, or the \
         instance metadata service at 169.254.169.254) and that `az account get-access-token` \
         answers when run by hand",
    )
}

/// The longest the pool waits, after the source returned a refused token again, before it
/// asks the source for another one (logins are not held back meanwhile).
pub(crate) const MAX_REFUSAL_HOLD: Duration = Duration::from_secs(5);

#[path = "refresher.rs"]
mod refresher;
pub(crate) use refresher::spawn_refresher;

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
