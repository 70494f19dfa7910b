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
//!
//! Here: the cache and what callers read from it. Beside it: `flight.rs` (single flight,
//! the failure memory, the fetch after a refused login), `store.rs` (what a fetch's
//! answer does to the cache), `refresher.rs` (the background task), `backoff.rs` (the
//! delays); `cached.rs` holds the token as cached.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwapOption;
use tokio::{
    sync::{Notify, watch},
    time::Instant,
};

use super::error::TokenError;
use super::policy::RefreshPolicy;
use super::{backoff::floor, metrics::TokenMetrics, source::TokenSource};
use crate::{sync::lock, time::later};

/// The cache's counters (shown in [`crate::stats::TokenStats`]).
#[derive(Default)]
pub struct TokenCounters {
    /// Fetches that brought a token.
    pub refreshes_ok: AtomicU64,
    /// Fetches that failed.
    pub refreshes_failed: AtomicU64,
    /// Calls to the token source.
    pub identity_calls: AtomicU64,
    /// Answers that returned the token already cached (a credential serving its cache).
    pub same_token_answers: AtomicU64,
    /// Panics caught in the refresher, which was restarted each time.
    pub refresher_panics: AtomicU64,
}

/// The wall clock (a seam: tests simulate a suspended machine).
pub type WallClock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// A fetch's outcome as the joiners of its flight see it.
pub(super) type Outcome = Result<Arc<CachedToken>, TokenError>;

/// One cached token, fetched single-flight, refreshed ahead of expiry by
/// [`spawn_refresher`]'s task, with the memory of the last failure and the history of
/// recent tokens that the pools' retirement reads. Most users reach it through
/// [`crate::provider::TokenProvider`].
pub struct TokenCache {
    source: Arc<dyn TokenSource>,
    /// Whether a fetch may bring another secret (`false`: a password provider's cache).
    refreshable: bool,
    /// Test seam: the refresher panics once when set.
    #[cfg(test)]
    pub panic_refresher_once: std::sync::atomic::AtomicBool,
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
    /// Counters of fetches and their outcomes.
    pub counters: TokenCounters,
    metrics: TokenMetrics,
    source_name: Mutex<String>,
    changed: Arc<Notify>,
    shutdown: watch::Sender<bool>,
    wall: WallClock,
}

impl TokenCache {
    /// A cache of `scope` tokens from `source`, refreshed by `policy`.
    pub fn new(
        source: Box<dyn TokenSource>,
        scope: impl Into<String>,
        policy: RefreshPolicy,
    ) -> Arc<Self> {
        Self::with_wall_clock(source, scope, policy, Arc::new(SystemTime::now))
    }

    /// A cache of `password`: the same secret at every login, never refreshed (a
    /// password provider's). `policy`'s backoff still paces the pools' probe logins.
    pub(crate) fn fixed(
        password: super::sources::StaticPassword,
        policy: RefreshPolicy,
    ) -> Arc<Self> {
        Self::build(
            Box::new(super::sources::Fixed(password)),
            String::new(),
            policy,
            Arc::new(SystemTime::now),
            false,
        )
    }

    /// A cache reading the wall clock from `wall`.
    pub fn with_wall_clock(
        source: Box<dyn TokenSource>,
        scope: impl Into<String>,
        policy: RefreshPolicy,
        wall: WallClock,
    ) -> Arc<Self> {
        Self::build(source, scope.into(), policy, wall, true)
    }

    fn build(
        source: Box<dyn TokenSource>,
        scope: String,
        policy: RefreshPolicy,
        wall: WallClock,
        refreshable: bool,
    ) -> Arc<Self> {
        let name = source.name();
        Arc::new(Self {
            source: Arc::from(source),
            refreshable,
            #[cfg(test)]
            panic_refresher_once: std::sync::atomic::AtomicBool::new(false),
            scope: Arc::from(scope),
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
    pub fn policy(&self) -> &RefreshPolicy {
        &self.policy
    }

    /// Whether a refresh may bring another secret: `false` for a password provider's
    /// cache, whose login refused is not retried with the same password.
    pub fn can_refresh(&self) -> bool {
        self.refreshable
    }

    /// The source's name (for a chain: the link in use).
    pub fn source_name(&self) -> String {
        lock(&self.source_name).clone()
    }

    fn valid(&self, t: &CachedToken, now: Instant) -> bool {
        t.is_valid_at(now, (self.wall)())
    }

    /// The cached token if it is still valid (by tokio's clock and the wall clock).
    pub fn valid_now(&self) -> Option<Arc<CachedToken>> {
        let t = self.current.load_full()?;
        self.valid(&t, Instant::now()).then_some(t)
    }

    /// The cached token, valid or not (stats, fallbacks).
    pub fn peek(&self) -> Option<Arc<CachedToken>> {
        self.current.load_full()
    }

    /// The last failure's text, cleared by the next success.
    pub fn last_error(&self) -> Option<String> {
        lock(&self.last_failure).as_ref().map(|e| e.to_string())
    }

    /// When the next fetch may be made after a failure (`None`: no failure stands).
    pub fn retry_at(&self) -> Option<Instant> {
        lock(&self.flight).failure.as_ref().map(|f| f.until)
    }

    /// Shortest token lifetime seen so far.
    pub fn shortest_lifetime(&self) -> Option<Duration> {
        match self.shortest_lifetime_ms.load(Ordering::Relaxed) {
            u64::MAX => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// The deadline of the token that was replaced by the last refresh, if that refresh
    /// happened after `since`.
    pub fn previous_deadline_since(&self, since: Instant) -> Option<Instant> {
        match *lock(&self.previous) {
            Some((at, d)) if at >= since => d,
            _ => None,
        }
    }

    /// A valid token: the cached one, or one fetched single-flight. While a failed fetch
    /// stands (its retry delay), its error is returned without asking the source.
    pub async fn get(self: &Arc<Self>) -> Result<Arc<CachedToken>, TokenError> {
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

    /// Since when fetches have been failing (`None`: the last one worked).
    pub fn failing_since(&self) -> Option<Instant> {
        *lock(&self.failing_since)
    }

    /// `f` of the cached token, if it is valid at `now` (tokio's clock, and the wall
    /// clock's now); `None` otherwise. No `Arc` is cloned.
    pub fn with_valid<R>(&self, now: Instant, f: impl FnOnce(&CachedToken) -> R) -> Option<R> {
        let guard = self.current.load();
        let t = guard.as_ref()?;
        self.valid(t, now).then(|| f(t))
    }

    /// The latest distinct tokens, oldest first.
    pub fn recent_tokens(&self) -> RecentTokens {
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
    pub fn next_refresh(&self) -> Option<Instant> {
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
    pub fn is_outgoing(&self, token: &CachedToken, now: Instant) -> bool {
        self.refresh_point_of(token).is_some_and(|p| now >= p)
    }

    /// Stops the refresher and any fetch in flight (pool closed).
    pub fn shut_down(&self) {
        self.shutdown.send_replace(true);
    }
}

#[path = "flight.rs"]
mod flight;
#[path = "refresher.rs"]
mod refresher;
#[path = "store.rs"]
mod store;
pub use super::cached::{CachedToken, RECENT_TOKENS, RecentTokens};
pub use flight::Forced;
use flight::{Flight, Refresh, join, wait_shutdown};
pub use refresher::spawn_refresher;

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
