//! Retirement: each connection leaves the pool before the token it logged in with
//! expires (margin plus jittered spread) and at the latest at a jittered maximum
//! lifetime. Enforced at checkout (`pre_recycle` hook) and by a background sweeper that
//! replaces retired idle connections ahead of demand.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use deadpool_postgres::{ClientWrapper, HookError, StatementCache, Timeouts};
use rand::Rng;
use tokio::time::Instant;

use crate::{connect::GET_CONTEXT, pool::Shared};

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// How connections are retired.
///
/// With the defaults, a connection that logged in with a token expiring at `E` retires
/// at a random point in `[E - margin - spread, E - margin]`, where
/// `margin = min(token_margin, 10 % of the token's remaining life at login)` and
/// `spread = min(token_spread, 50 % of the time left before E - margin)`; and at the
/// latest at `created + max_lifetime * (1 - U(0, max_lifetime_jitter))`.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct RecyclePolicy {
    /// Retire before the login token expires (default `true`). `false`: sessions outlive
    /// their token, which the server allows.
    pub by_token_age: bool,
    /// Minimum distance to the token's expiry (default 60 s).
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::duration"))]
    pub token_margin: Duration,
    /// Width of the window over which one token's connections are spread (default 300 s).
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::duration"))]
    pub token_spread: Duration,
    /// Maximum lifetime of a connection (default 30 min; `None`: unlimited).
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::duration::option"))]
    pub max_lifetime: Option<Duration>,
    /// Fraction of `max_lifetime` by which it is shortened at random (default 0.2).
    pub max_lifetime_jitter: f64,
    /// How often the background sweeper looks for idle connections to retire (default
    /// 1 s; never more than a quarter of the shortest token lifetime seen).
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::duration"))]
    pub sweep_interval: Duration,
}

impl Default for RecyclePolicy {
    fn default() -> Self {
        Self {
            by_token_age: true,
            token_margin: Duration::from_secs(60),
            token_spread: Duration::from_secs(300),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            max_lifetime_jitter: 0.2,
            sweep_interval: Duration::from_secs(1),
        }
    }
}

/// Why a connection left the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetireReason {
    TokenAge,
    MaxLifetime,
    Broken,
}

impl RetireReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::TokenAge => "token_age",
            Self::MaxLifetime => "max_lifetime",
            Self::Broken => "broken",
        }
    }
}

/// When the token-age rule retires a connection created at `created` with a token whose
/// deadline is `deadline`; `u` is uniform in `[0, 1)`.
pub(crate) fn token_deadline(
    policy: &RecyclePolicy,
    created: Instant,
    deadline: Instant,
    u: f64,
) -> Instant {
    let remaining = deadline.saturating_duration_since(created);
    let margin = policy.token_margin.min(remaining / 10);
    let base = deadline - margin;
    let window = base.saturating_duration_since(created);
    let spread = policy.token_spread.min(window / 2);
    base - spread.mul_f64(u.clamp(0.0, 1.0))
}

/// When the lifetime rule retires a connection created at `created`; `u` in `[0, 1)`.
pub(crate) fn lifetime_deadline(
    policy: &RecyclePolicy,
    created: Instant,
    max_lifetime: Duration,
    u: f64,
) -> Instant {
    let jitter = policy.max_lifetime_jitter.clamp(0.0, 1.0);
    created + max_lifetime.mul_f64(1.0 - u.clamp(0.0, 1.0) * jitter)
}

/// Where in its spread window each new connection retires: a Weyl sequence
/// `frac(seed + k / φ)` with a random seed per pool. Each value is uniform over many
/// connections like `U(0, 1)`, but consecutive connections land far apart, so the
/// connections created together (a pool warming up, a batch of replacements) retire
/// evenly across the window instead of in random clumps.
pub(crate) struct SpreadSequence {
    seed: f64,
    next: AtomicU64,
}

const GOLDEN_RATIO_CONJUGATE: f64 = 0.618_033_988_749_894_9;

impl SpreadSequence {
    pub(crate) fn new() -> Self {
        Self {
            seed: rand::rng().random(),
            next: AtomicU64::new(0),
        }
    }

    pub(crate) fn next(&self) -> f64 {
        let k = self.next.fetch_add(1, Ordering::Relaxed) % (1 << 40);
        (self.seed + k as f64 * GOLDEN_RATIO_CONJUGATE).fract()
    }
}

/// The retirement time and reason for a new connection (`None`: never); `u_token` in
/// `[0, 1)` places it in its token spread window.
pub(crate) fn retire_at(
    policy: &RecyclePolicy,
    created: Instant,
    token_deadline_at_login: Option<Instant>,
    u_token: f64,
) -> Option<(Instant, RetireReason)> {
    let by_token = token_deadline_at_login
        .filter(|_| policy.by_token_age)
        .map(|d| {
            (
                token_deadline(policy, created, d, u_token),
                RetireReason::TokenAge,
            )
        });
    let by_life = policy.max_lifetime.map(|l| {
        (
            lifetime_deadline(policy, created, l, rand::rng().random()),
            RetireReason::MaxLifetime,
        )
    });
    match (by_token, by_life) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

struct ConnInfo {
    alive: Weak<StatementCache>,
    retire: Option<(Instant, RetireReason)>,
}

/// Per-connection login facts, keyed by the address of the connection's statement
/// cache (unique while the connection lives; entries of dead connections are swept).
#[derive(Default)]
pub(crate) struct ConnTable {
    // Read on every checkout, written on every login and retirement: a read-mostly lock.
    map: RwLock<HashMap<usize, ConnInfo>>,
}

fn key(w: &ClientWrapper) -> usize {
    Arc::as_ptr(&w.statement_cache) as usize
}

impl ConnTable {
    fn insert(&self, w: &ClientWrapper, retire: Option<(Instant, RetireReason)>) {
        write(&self.map).insert(
            key(w),
            ConnInfo {
                alive: Arc::downgrade(&w.statement_cache),
                retire,
            },
        );
    }

    fn remove(&self, w: &ClientWrapper) {
        write(&self.map).remove(&key(w));
    }

    fn due(&self, w: &ClientWrapper, at: Instant) -> Option<RetireReason> {
        let map = self.map.read().unwrap_or_else(|p| p.into_inner());
        let (t, reason) = map.get(&key(w))?.retire?;
        (t <= at).then_some(reason)
    }
}

/// Our `post_create` hook: stores the connection's retirement time.
pub(crate) fn post_create(shared: &Shared, w: &ClientWrapper) {
    let now = Instant::now();
    let record = GET_CONTEXT.try_with(|c| c.login.take()).ok().flatten();
    let (created, deadline) = match record {
        Some(r) => (r.created, r.token_deadline),
        None => {
            // Created outside our `Pool::get` (someone used the inner deadpool pool):
            // assume the current token, or the one it replaced if the swap happened
            // within the create timeout (the login may have used the older one).
            let current = shared.cache.peek().and_then(|t| t.deadline);
            let window = shared.create_timeout.unwrap_or(Duration::from_secs(30));
            let since = now.checked_sub(window).unwrap_or(now);
            let previous = shared.cache.previous_deadline_since(since);
            let d = match (current, previous) {
                (Some(c), Some(p)) => Some(c.min(p)),
                (c, p) => c.or(p),
            };
            (now, d)
        }
    };
    let retire = retire_at(&shared.recycle, created, deadline, shared.spread.next());
    shared.conns.insert(w, retire);
}

/// Our `pre_recycle` hook: refuses connections that are closed or due for retirement,
/// so deadpool drops them and moves on to the next one.
pub(crate) fn pre_recycle(shared: &Shared, w: &ClientWrapper) -> Result<(), HookError> {
    if w.is_closed() {
        shared.conns.remove(w);
        shared.counters.count_retired(RetireReason::Broken, 1);
        tracing::debug!(target: "deadpool_entra", reason = "broken", "connection retired");
        return Err(HookError::message("connection closed"));
    }
    if let Some(reason) = shared.conns.due(w, Instant::now()) {
        shared.conns.remove(w);
        shared.counters.count_retired(reason, 1);
        tracing::debug!(target: "deadpool_entra", reason = reason.as_str(), "connection retired");
        return Err(HookError::message(match reason {
            RetireReason::TokenAge => "connection retired: its login token is about to expire",
            _ => "connection retired: maximum lifetime reached",
        }));
    }
    Ok(())
}

/// The sweeper's interval: the policy's, but never more than a quarter of the shortest
/// token lifetime seen (and never below 10 ms).
pub(crate) fn sweep_interval(shared: &Shared) -> Duration {
    let mut d = shared.recycle.sweep_interval;
    if let Some(l) = shared.cache.shortest_lifetime() {
        d = d.min(l / 4);
    }
    d.max(Duration::from_millis(10))
}

/// Starts the background sweeper. It holds only weak references between sweeps and ends
/// when the pool is dropped or closed.
pub(crate) fn spawn_sweeper(shared: &Arc<Shared>, inner: &deadpool_postgres::Pool) {
    let weak_shared = Arc::downgrade(shared);
    let weak_pool = inner.weak();
    let mut closed = shared.closed.subscribe();
    tokio::spawn(async move {
        loop {
            let interval = match weak_shared.upgrade() {
                Some(s) => sweep_interval(&s),
                None => return,
            };
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                r = closed.changed() => {
                    if r.is_err() || *closed.borrow() { return; }
                    continue;
                }
            }
            let (Some(shared), Some(inner)) = (weak_shared.upgrade(), weak_pool.upgrade()) else {
                return;
            };
            if inner.is_closed() {
                return;
            }
            let removed = sweep(&shared, &inner, Instant::now() + interval);
            if removed > 0 {
                let pool = crate::Pool::from_parts(inner, shared);
                tokio::spawn(replace(pool, removed));
            }
        }
    });
}

/// Drops idle connections that are closed or due before `horizon`; returns how many.
fn sweep(shared: &Shared, inner: &deadpool_postgres::Pool, horizon: Instant) -> usize {
    let mut reasons: Vec<RetireReason> = Vec::new();
    let removed = {
        let mut map = write(&shared.conns.map);
        let result = inner.retain(|w, _| {
            if w.is_closed() {
                reasons.push(RetireReason::Broken);
                return false;
            }
            match map.get(&key(w)).and_then(|i| i.retire) {
                Some((t, reason)) if t <= horizon => {
                    reasons.push(reason);
                    false
                }
                _ => true,
            }
        });
        for w in &result.removed {
            map.remove(&key(w));
        }
        // Forget connections that left the pool some other way.
        map.retain(|_, i| i.alive.strong_count() > 0);
        result.removed
    };
    let n = removed.len();
    drop(removed);
    for r in reasons {
        shared.counters.count_retired(r, 1);
        tracing::debug!(target: "deadpool_entra", reason = r.as_str(), idle = true, "connection retired");
    }
    n
}

/// Replaces `n` retired connections ahead of demand: checks out `n` connections at once
/// (never waiting for a slot, so requests keep priority), holds them until all are
/// there, and returns them to the pool.
async fn replace(pool: crate::Pool, n: usize) {
    let timeouts = Timeouts {
        wait: Some(Duration::ZERO),
        ..pool.inner().timeouts()
    };
    let got = futures_util::future::join_all((0..n).map(|_| pool.get_with(&timeouts))).await;
    let ok = got.iter().filter(|r| r.is_ok()).count();
    pool.shared
        .counters
        .replaced_in_background
        .fetch_add(ok as u64, Ordering::Relaxed);
    tracing::debug!(target: "deadpool_entra", wanted = n, replaced = ok, "background replacement");
    drop(got);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retire_times_of_one_tokens_connections_are_spread() {
        let policy = RecyclePolicy {
            max_lifetime: None,
            ..RecyclePolicy::default()
        };
        let created = Instant::now();
        let expiry = created + Duration::from_secs(3600);
        let seq = SpreadSequence::new();
        let mut seen = Vec::new();
        for _ in 0..100 {
            let (t, reason) = retire_at(&policy, created, Some(expiry), seq.next()).unwrap();
            assert_eq!(reason, RetireReason::TokenAge);
            // margin = min(60 s, 360 s) = 60 s; spread = min(300 s, 1770 s) = 300 s.
            assert!(t <= expiry - Duration::from_secs(60));
            assert!(t >= expiry - Duration::from_secs(360));
            seen.push(t);
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 100, "two connections got the same retire time");
    }

    #[tokio::test(start_paused = true)]
    async fn connections_created_together_retire_evenly_across_the_window() {
        // 8 connections of one token (a warm-up): no 1/4 of the window holds more than
        // 3 of them (iid uniform draws put 4 or more there about one time in six).
        let policy = RecyclePolicy {
            max_lifetime: None,
            ..RecyclePolicy::default()
        };
        for _ in 0..200 {
            let seq = SpreadSequence::new();
            let created = Instant::now();
            let expiry = created + Duration::from_secs(3600);
            let low = expiry - Duration::from_secs(360);
            let mut us: Vec<f64> = (0..8)
                .map(|_| {
                    let (t, _) = retire_at(&policy, created, Some(expiry), seq.next()).unwrap();
                    (t - low).as_secs_f64() / 300.0
                })
                .collect();
            us.sort_by(f64::total_cmp);
            for i in 0..us.len() {
                let inside = us[i..].iter().take_while(|u| **u < us[i] + 0.25).count();
                assert!(inside <= 3, "{us:?}");
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn short_tokens_shrink_margin_and_spread() {
        let policy = RecyclePolicy::default();
        let created = Instant::now();
        let expiry = created + Duration::from_secs(30);
        let seq = SpreadSequence::new();
        for _ in 0..100 {
            let (t, _) = retire_at(&policy, created, Some(expiry), seq.next()).unwrap();
            // margin = 3 s; spread = min(300, 27/2) = 13.5 s
            assert!(t <= expiry - Duration::from_secs(3));
            assert!(t >= expiry - Duration::from_millis(16_500));
            assert!(t > created);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn max_lifetime_jitter_stays_within_bounds() {
        let policy = RecyclePolicy {
            by_token_age: false,
            ..RecyclePolicy::default()
        };
        let created = Instant::now();
        let max = Duration::from_secs(1800);
        let mut seen = Vec::new();
        for _ in 0..100 {
            let (t, reason) = retire_at(
                &policy,
                created,
                Some(created + Duration::from_secs(60)),
                0.5,
            )
            .unwrap();
            assert_eq!(
                reason,
                RetireReason::MaxLifetime,
                "by_token_age=false ignores the token"
            );
            assert!(t <= created + max);
            assert!(t >= created + max.mul_f64(0.8));
            seen.push(t);
        }
        seen.sort();
        seen.dedup();
        assert!(seen.len() > 90);
    }

    #[tokio::test(start_paused = true)]
    async fn earlier_rule_wins() {
        let policy = RecyclePolicy::default();
        let created = Instant::now();
        let (_, reason) = retire_at(
            &policy,
            created,
            Some(created + Duration::from_secs(600)),
            0.5,
        )
        .unwrap();
        assert_eq!(reason, RetireReason::TokenAge);
        let (_, reason) = retire_at(
            &policy,
            created,
            Some(created + Duration::from_secs(86_400)),
            0.5,
        )
        .unwrap();
        assert_eq!(reason, RetireReason::MaxLifetime);
        let never = RecyclePolicy {
            by_token_age: false,
            max_lifetime: None,
            ..RecyclePolicy::default()
        };
        assert!(
            retire_at(
                &never,
                created,
                Some(created + Duration::from_secs(60)),
                0.5
            )
            .is_none()
        );
    }
}
