//! One cached token per pool, fetched single-flight, refreshed ahead of expiry by a
//! background task that holds only a `Weak` reference.
//!
//! All times are on tokio's clock: a token's wall-clock expiry is turned into a
//! `tokio::time::Instant` deadline the moment it is fetched, so paused-time tests drive
//! every decision.

use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwapOption;
use rand::Rng;
use tokio::{
    sync::{Notify, watch},
    task::JoinHandle,
    time::Instant,
};

use super::{Expiry, TokenSource};
use crate::{
    RecyclePolicy, RefreshPolicy, TokenError,
    recycle::{
        self,
        gate::{RECENT_TOKENS, ReadyToken, RecentTokens},
    },
};

/// A token as the cache holds it.
pub(crate) struct CachedToken {
    pub(crate) secret: Arc<str>,
    /// `None`: never expires (a password).
    pub(crate) deadline: Option<Instant>,
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

    pub(crate) fn is_valid_at(&self, now: Instant) -> bool {
        match self.deadline {
            None => true,
            Some(d) => now + self.safety() < d,
        }
    }
}

/// Counters shown in [`crate::Stats`].
#[derive(Default)]
pub(crate) struct TokenCounters {
    pub(crate) refreshes_ok: AtomicU64,
    pub(crate) refreshes_failed: AtomicU64,
    pub(crate) identity_calls: AtomicU64,
}

pub(crate) struct TokenCache {
    source: Box<dyn TokenSource>,
    scope: String,
    policy: RefreshPolicy,
    current: ArcSwapOption<CachedToken>,
    /// When the last replacement happened and the deadline of the token it replaced.
    previous: Mutex<Option<(Instant, Option<Instant>)>>,
    fetch_lock: tokio::sync::Mutex<()>,
    attempts: AtomicU64,
    last_failure: Mutex<Option<TokenError>>,
    generation: AtomicU64,
    shortest_lifetime_ms: AtomicU64,
    /// The latest distinct tokens, oldest first: when each was cached, its expiry.
    recent: Mutex<VecDeque<(Instant, Option<Instant>)>>,
    /// When the current run of failed fetches began (`None`: the last fetch worked).
    failing_since: Mutex<Option<Instant>>,
    pub(crate) counters: TokenCounters,
    source_name: Mutex<String>,
    changed: Arc<Notify>,
    shutdown: watch::Sender<bool>,
}

impl TokenCache {
    pub(crate) fn new(
        source: Box<dyn TokenSource>,
        scope: impl Into<String>,
        policy: RefreshPolicy,
    ) -> Arc<Self> {
        let name = source.name();
        Arc::new(Self {
            source,
            scope: scope.into(),
            policy,
            current: ArcSwapOption::empty(),
            previous: Mutex::new(None),
            fetch_lock: tokio::sync::Mutex::new(()),
            attempts: AtomicU64::new(0),
            last_failure: Mutex::new(None),
            generation: AtomicU64::new(0),
            shortest_lifetime_ms: AtomicU64::new(u64::MAX),
            recent: Mutex::new(VecDeque::with_capacity(RECENT_TOKENS)),
            failing_since: Mutex::new(None),
            counters: TokenCounters::default(),
            source_name: Mutex::new(name),
            changed: Arc::new(Notify::new()),
            shutdown: watch::channel(false).0,
        })
    }

    /// The refresh policy (its backoff also paces the sweeper's probe logins).
    pub(crate) fn policy(&self) -> &RefreshPolicy {
        &self.policy
    }

    pub(crate) fn is_password(&self) -> bool {
        self.source.is_password()
    }

    pub(crate) fn source_name(&self) -> String {
        lock(&self.source_name).clone()
    }

    /// The cached token if it is still valid: one atomic load.
    pub(crate) fn valid_now(&self) -> Option<Arc<CachedToken>> {
        let t = self.current.load_full()?;
        t.is_valid_at(Instant::now()).then_some(t)
    }

    /// The cached token, valid or not (stats, fallbacks).
    pub(crate) fn peek(&self) -> Option<Arc<CachedToken>> {
        self.current.load_full()
    }

    /// The last failure's text, cleared by the next success.
    pub(crate) fn last_error(&self) -> Option<String> {
        lock(&self.last_failure).as_ref().map(|e| e.to_string())
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

    /// A valid token: the cached one, or one fetched single-flight.
    pub(crate) async fn get(&self) -> Result<Arc<CachedToken>, TokenError> {
        if let Some(t) = self.valid_now() {
            return Ok(t);
        }
        self.fetch_single_flight(None).await
    }

    /// A token newer than generation `used` (after the server refused `used`). Skips the
    /// fetch when another task already replaced it.
    pub(crate) async fn force_refresh(&self, used: u64) -> Result<Arc<CachedToken>, TokenError> {
        self.fetch_single_flight(Some(used)).await
    }

    async fn fetch_single_flight(
        &self,
        newer_than: Option<u64>,
    ) -> Result<Arc<CachedToken>, TokenError> {
        // `attempts` counts finished fetches: if one finished while we queued, its
        // result is ours too.
        let seen_attempts = self.attempts.load(Ordering::SeqCst);
        let _guard = self.fetch_lock.lock().await;
        if let Some(t) = self.current.load_full() {
            let newer = newer_than.is_none_or(|g| t.generation > g);
            if newer && t.is_valid_at(Instant::now()) {
                return Ok(t);
            }
        }
        // Someone fetched while we waited and we still have no usable token: they failed.
        // Share their failure instead of calling the source once per waiter.
        if self.attempts.load(Ordering::SeqCst) != seen_attempts
            && let Some(e) = lock(&self.last_failure).clone()
        {
            return Err(e);
        }
        self.fetch_locked(true).await
    }

    /// Fetches from the source; the caller holds `fetch_lock`. `notify` wakes the
    /// refresher so that it recomputes its schedule.
    async fn fetch_locked(&self, notify: bool) -> Result<Arc<CachedToken>, TokenError> {
        // A static password is not an identity call: stats count only real fetches.
        let counted = !self.source.is_password();
        if counted {
            self.counters.identity_calls.fetch_add(1, Ordering::Relaxed);
        }
        let fetch = self.source.fetch(&self.scope);
        let result = match self.policy.fetch_timeout {
            Some(limit) => match tokio::time::timeout(limit, fetch).await {
                Ok(r) => r,
                Err(_) => Err(no_answer(limit)),
            },
            None => fetch.await,
        };
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let name = self.source.name();
        *lock(&self.source_name) = name.clone();
        let now = Instant::now();
        let token = match result {
            Ok(t) => t,
            Err(e) => return Err(self.record_failure(TokenError::from_source(name, e))),
        };
        let lifetime = match token.expiry {
            Expiry::Never => None,
            Expiry::In(d) => Some(d),
            Expiry::At(t) => Some(
                t.duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO),
            ),
        };
        if lifetime == Some(Duration::ZERO) {
            return Err(self.record_failure(TokenError {
                source_name: name,
                cause: "the token source returned a token that has already expired".into(),
                hint: Some("check this machine's clock".into()),
                retry_after: None,
            }));
        }
        // An absurd lifetime from the source is taken as a century, not an overflow.
        let lifetime = lifetime.map(|l| l.min(crate::recycle::LONGEST));
        let deadline = lifetime.and_then(|l| now.checked_add(l));
        // A credential that served its own cache returns the same expiry: keep the
        // original lifetime and fetch time so the refresh schedule stays anchored.
        let same_as = self
            .current
            .load_full()
            .filter(|o| match (o.deadline, deadline) {
                (Some(od), Some(nd)) => nd <= od + Duration::from_secs(1),
                _ => false,
            });
        let (lifetime, fetched_at) = match &same_as {
            Some(o) => (o.lifetime, o.fetched_at),
            None => (lifetime, now),
        };
        let usable_since = match self.current.load_full() {
            Some(o) if o.is_valid_at(now) => o.usable_since,
            _ => now,
        };
        if same_as.is_none() {
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
            lifetime,
            fetched_at,
            usable_since,
            generation,
        });
        let old = self.current.swap(Some(cached.clone()));
        *lock(&self.previous) = Some((now, old.and_then(|o| o.deadline)));
        *lock(&self.last_failure) = None;
        *lock(&self.failing_since) = None;
        if counted {
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
        if notify {
            self.changed.notify_one();
        }
        Ok(cached)
    }

    fn record_failure(&self, err: TokenError) -> TokenError {
        self.counters
            .refreshes_failed
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            target: "deadpool_entra",
            source = %err.source_name,
            cause = %err.cause,
            "token fetch failed"
        );
        *lock(&self.last_failure) = Some(err.clone());
        lock(&self.failing_since).get_or_insert_with(Instant::now);
        err
    }

    /// Since when fetches have been failing (`None`: the last one worked).
    pub(crate) fn failing_since(&self) -> Option<Instant> {
        *lock(&self.failing_since)
    }

    /// The cached token, if a replacement connection could log in with it now: valid,
    /// with more than its retirement margin left (a password always).
    pub(crate) fn ready_token(&self, now: Instant, policy: &RecyclePolicy) -> Option<ReadyToken> {
        let guard = self.current.load();
        let t = guard.as_ref()?;
        if !t.is_valid_at(now) {
            return None;
        }
        if let (Some(d), Some(life)) = (t.deadline, t.lifetime)
            && d.saturating_duration_since(now) <= recycle::token_margin(policy, life)
        {
            return None;
        }
        Some(ReadyToken {
            expiry: t.deadline,
            usable_since: t.usable_since,
        })
    }

    /// The latest distinct tokens, oldest first.
    pub(crate) fn recent_tokens(&self) -> RecentTokens {
        let mut out: RecentTokens = [None; RECENT_TOKENS];
        for (slot, t) in out.iter_mut().zip(lock(&self.recent).iter()) {
            *slot = Some(*t);
        }
        out
    }

    /// When the refresher should renew the current token: `refresh_before_expiry` ahead
    /// of the deadline, or at half the token's life when that is later.
    pub(crate) fn refresh_point(&self) -> Option<Instant> {
        let t = self.current.load_full()?;
        let (deadline, life) = (t.deadline?, t.lifetime?);
        Some(deadline - self.policy.refresh_before_expiry.min(life / 2))
    }

    /// The refresher's fetch: single flight, skipped if another task already replaced
    /// generation `seen`.
    async fn refresh(&self, seen: u64) -> Result<Arc<CachedToken>, TokenError> {
        let _guard = self.fetch_lock.lock().await;
        if let Some(t) = self.current.load_full()
            && t.generation != seen
        {
            return Ok(t);
        }
        self.fetch_locked(false).await
    }

    /// Stops the refresher (pool closed).
    pub(crate) fn shut_down(&self) {
        self.shutdown.send_replace(true);
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

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Upper bound of the n-th retry delay (n >= 1): `min_backoff * 2^(n-1)`, capped.
pub(crate) fn backoff_ceiling(policy: &RefreshPolicy, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
    policy
        .min_backoff
        .saturating_mul(factor)
        .min(policy.max_backoff)
        .max(policy.min_backoff)
}

/// The n-th retry delay: uniform in `[min_backoff, ceiling]` ("full jitter" with a floor,
/// so a failing endpoint is never hammered in a tight loop).
pub(crate) fn backoff(policy: &RefreshPolicy, attempt: u32) -> Duration {
    let ceiling = backoff_ceiling(policy, attempt);
    let span = ceiling.saturating_sub(policy.min_backoff);
    policy.min_backoff + span.mul_f64(rand::rng().random::<f64>())
}

/// Starts the refresher. It holds only a `Weak` to the cache and ends when the cache is
/// dropped or shut down.
pub(crate) fn spawn_refresher(cache: &Arc<TokenCache>) -> JoinHandle<()> {
    let weak: Weak<TokenCache> = Arc::downgrade(cache);
    let mut shutdown = cache.shutdown.subscribe();
    let changed = cache.changed.clone();
    tokio::spawn(async move {
        let mut failures: u32 = 0;
        let mut retry_at: Option<Instant> = None;
        loop {
            {
                let Some(cache) = weak.upgrade() else { return };
                if *shutdown.borrow() || cache.is_password() {
                    return;
                }
                if let (Some(_), Some(p)) = (retry_at, cache.refresh_point())
                    && p > Instant::now()
                {
                    // Renewed elsewhere (a forced refresh) while we were backing off.
                    retry_at = None;
                    failures = 0;
                }
                let wake = retry_at.or_else(|| cache.refresh_point());
                drop(cache);
                // Sleep holding only the Weak, the notifier and the shutdown receiver.
                tokio::select! {
                    _ = sleep_until_opt(wake) => {}
                    // A token was stored elsewhere (first fetch, forced refresh):
                    // recompute the schedule.
                    _ = changed.notified() => continue,
                    r = shutdown.changed() => {
                        if r.is_err() || *shutdown.borrow() { return; }
                        continue;
                    }
                }
            }
            let Some(cache) = weak.upgrade() else { return };
            if retry_at.is_none() {
                // Not due yet (the token was replaced meanwhile)?
                if let Some(p) = cache.refresh_point()
                    && Instant::now() < p
                {
                    continue;
                }
            }
            let old = cache.peek();
            let seen = old.as_ref().map(|t| t.generation).unwrap_or(0);
            let old_deadline = old.as_ref().and_then(|t| t.deadline);
            let outcome = cache.refresh(seen).await;
            let now = Instant::now();
            match outcome {
                Ok(new) => {
                    let renewed = match (old_deadline, new.deadline) {
                        (Some(o), Some(n)) => n > o + Duration::from_secs(1),
                        _ => true,
                    };
                    if renewed {
                        failures = 0;
                        retry_at = None;
                    } else {
                        // The credential served its own cache: it has not reached its
                        // renewal window yet. Ask again soon.
                        failures += 1;
                        let d = backoff(&cache.policy, failures);
                        tracing::debug!(
                            target: "deadpool_entra",
                            next_retry_in_secs = d.as_secs_f64(),
                            "token source returned the same token; retrying"
                        );
                        retry_at = Some(now + d);
                    }
                }
                Err(e) => {
                    failures += 1;
                    let d = match e.retry_after {
                        Some(ra) => ra.max(cache.policy.min_backoff),
                        None => backoff(&cache.policy, failures),
                    };
                    tracing::warn!(
                        target: "deadpool_entra",
                        source = %e.source_name,
                        cause = %e.cause,
                        attempt = failures,
                        next_retry_in_secs = d.as_secs_f64(),
                        "token refresh failed; serving the cached token while it is valid"
                    );
                    retry_at = Some(now + d);
                }
            }
        }
    })
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
#[path = "cache_tests.rs"]
mod tests;
