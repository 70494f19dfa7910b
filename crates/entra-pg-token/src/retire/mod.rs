//! The retirement rule, for any pool: each session leaves after a newer token is cached
//! and before the token it logged in with expires (margin plus jittered spread), and at
//! the latest at a jittered maximum lifetime, but only while a replacement can log in
//! ([`gate`]), which [`health`] tells from the pool's logins. Pure functions over time:
//! the pool on top records when each session logged in and with which token, and asks.

pub mod gate;
pub mod health;

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use rand::Rng;
use tokio::time::Instant;

use crate::time::LONGEST;

/// How connections are retired.
///
/// With the defaults, a connection that logged in with a token expiring at `E` is due at
/// a random point in `[E - margin - spread, E - margin]`, where
/// `margin = min(token_margin, 10 % of the token's remaining life at login)` and
/// `spread = min(token_spread, 50 % of the time left before E - margin)`; and at the
/// latest at `created + max_lifetime * (1 - U(0, max_lifetime_jitter))`.
///
/// A connection that is due leaves only when a replacement can log in now: a newer token
/// is cached (for the token-age rule) with more than its margin left, and logins are
/// succeeding. Until then it keeps serving (the server checks a token only at login) and
/// is counted as overdue; once a replacement can log in, the overdue connections leave
/// spread over the rest of their window (or half its width, if the window has passed).
/// `retire_without_replacement: true` restores the unconditional rule.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct RetirePolicy {
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
    /// Retire on schedule even when no replacement can log in (default `false`).
    ///
    /// `true` bounds how long a session can outlive its token (for example, to cut off
    /// access soon after an identity is revoked), at a price: when the identity endpoint
    /// is down past the token's expiry, or the server refuses logins, the pool drains to
    /// zero and every request fails until both work again, where a pool that keeps its
    /// sessions (the default) goes on serving. docs/benchmarks.md measures both.
    pub retire_without_replacement: bool,
}

impl Default for RetirePolicy {
    fn default() -> Self {
        Self {
            by_token_age: true,
            token_margin: Duration::from_secs(60),
            token_spread: Duration::from_secs(300),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            max_lifetime_jitter: 0.2,
            sweep_interval: Duration::from_secs(1),
            retire_without_replacement: false,
        }
    }
}

/// Why a connection left the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetireReason {
    /// A newer token is cached and its own nears expiry.
    TokenAge,
    /// It reached its (jittered) maximum lifetime.
    MaxLifetime,
    /// It was closed or failed its check.
    Broken,
    /// The server's name no longer resolves to the connection's address (a failover).
    AddressChanged,
}

impl RetireReason {
    /// The name in stats, logs and metrics (`token_age`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokenAge => "token_age",
            Self::MaxLifetime => "max_lifetime",
            Self::Broken => "broken",
            Self::AddressChanged => "address_changed",
        }
    }
}

/// The retirement margin for a token whose remaining life is `remaining`: `token_margin`,
/// or 10 % of `remaining` when that is shorter.
pub fn token_margin(policy: &RetirePolicy, remaining: Duration) -> Duration {
    policy.token_margin.min(remaining / 10)
}

/// A connection's retirement schedule, fixed at login. The due times here are the ones
/// that apply while replacements can log in; [`gate::decide`] moves them when they cannot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetirePlan {
    /// Expiry of the token the connection logged in with (`None`: unknown or never).
    pub token_expiry: Option<Instant>,
    /// The token-age window `[start, end]` (`None`: not retired by token age).
    pub token_window: Option<(Instant, Instant)>,
    /// The jittered maximum-lifetime deadline.
    pub lifetime: Option<Instant>,
    /// The connection's place in its spread windows, in `[0, 1)`.
    pub u: f64,
    /// Width over which connections overdue for their maximum lifetime leave once
    /// replacements can log in again.
    pub recovery_spread: Duration,
    /// The earliest scheduled retirement: checkouts before it decide without a lock.
    pub earliest: Option<(Instant, RetireReason)>,
}

impl RetirePlan {
    /// The scheduled token-age retirement: `end - (end - start) * u`.
    pub fn token_due(&self) -> Option<Instant> {
        let (s, e) = self.token_window?;
        Some(e - (e - s).mul_f64(self.u))
    }
}

/// `max_lifetime_jitter` as a usable fraction: clamped to `[0, 1]`, 0 when not a number.
fn jitter(policy: &RetirePolicy) -> f64 {
    let j = policy.max_lifetime_jitter;
    if j.is_finite() {
        j.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// The plan for a connection created at `created` with a token expiring at
/// `token_expiry`; `u_token` in `[0, 1)` places it in its token spread window and
/// `u_life` in its lifetime jitter.
pub fn plan(
    policy: &RetirePolicy,
    created: Instant,
    token_expiry: Option<Instant>,
    u_token: f64,
    u_life: f64,
) -> RetirePlan {
    let unit = |x: f64| {
        if x.is_finite() {
            x.clamp(0.0, 1.0)
        } else {
            0.0
        }
    };
    let u = unit(u_token);
    let token_window = token_expiry.filter(|_| policy.by_token_age).map(|d| {
        let remaining = d.saturating_duration_since(created);
        let end = d.checked_sub(token_margin(policy, remaining)).unwrap_or(d);
        let spread = policy
            .token_spread
            .min(end.saturating_duration_since(created) / 2);
        (end.checked_sub(spread).unwrap_or(end), end)
    });
    let lifetime = policy.max_lifetime.and_then(|l| {
        created.checked_add(l.min(LONGEST).mul_f64(1.0 - unit(u_life) * jitter(policy)))
    });
    let recovery_spread = match token_window {
        Some((s, e)) => (e - s) / 2,
        None => {
            let by_life = policy
                .max_lifetime
                .map_or(Duration::ZERO, |l| l.min(LONGEST).mul_f64(jitter(policy)));
            policy.token_spread.min(by_life) / 2
        }
    };
    let mut p = RetirePlan {
        token_expiry,
        token_window,
        lifetime,
        u,
        recovery_spread,
        earliest: None,
    };
    let by_token = p.token_due().map(|t| (t, RetireReason::TokenAge));
    let by_life = lifetime.map(|t| (t, RetireReason::MaxLifetime));
    p.earliest = match (by_token, by_life) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    };
    p
}

/// Where in its spread window each new connection retires: a Weyl sequence
/// `frac(seed + k / φ)` with a random seed per pool. Each value is uniform over many
/// connections like `U(0, 1)`, but consecutive connections land far apart, so the
/// connections created together (a pool warming up, a batch of replacements) retire
/// evenly across the window instead of in random clumps.
pub struct SpreadSequence {
    seed: f64,
    next: AtomicU64,
}

impl Default for SpreadSequence {
    fn default() -> Self {
        Self::new()
    }
}

const GOLDEN_RATIO_CONJUGATE: f64 = 0.618_033_988_749_894_9;

impl SpreadSequence {
    /// A sequence with a random seed.
    pub fn new() -> Self {
        Self {
            seed: rand::rng().random(),
            next: AtomicU64::new(0),
        }
    }

    /// The next place, in `[0, 1)`.
    pub fn next(&self) -> f64 {
        let k = self.next.fetch_add(1, Ordering::Relaxed) % (1 << 40);
        (self.seed + k as f64 * GOLDEN_RATIO_CONJUGATE).fract()
    }
}

/// The scheduled retirement time and reason for a new connection (`None`: never).
#[cfg(test)]
pub fn retire_at(
    policy: &RetirePolicy,
    created: Instant,
    token_deadline_at_login: Option<Instant>,
    u_token: f64,
) -> Option<(Instant, RetireReason)> {
    plan(
        policy,
        created,
        token_deadline_at_login,
        u_token,
        rand::rng().random(),
    )
    .earliest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn retire_times_of_one_tokens_connections_are_spread() {
        let policy = RetirePolicy {
            max_lifetime: None,
            ..RetirePolicy::default()
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
        let policy = RetirePolicy {
            max_lifetime: None,
            ..RetirePolicy::default()
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
        let policy = RetirePolicy::default();
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
        let policy = RetirePolicy {
            by_token_age: false,
            ..RetirePolicy::default()
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
    async fn absurd_policy_values_plan_without_panicking() {
        let created = Instant::now();
        for jitter in [f64::NAN, f64::INFINITY, -3.0, 7.0] {
            let policy = RetirePolicy {
                max_lifetime: Some(Duration::MAX),
                max_lifetime_jitter: jitter,
                token_margin: Duration::MAX,
                token_spread: Duration::MAX,
                ..RetirePolicy::default()
            };
            for u in [f64::NAN, 0.0, 0.999] {
                let p = plan(
                    &policy,
                    created,
                    Some(created + Duration::from_secs(60)),
                    u,
                    u,
                );
                let (t, _) = p.earliest.expect("the token rule still applies");
                assert!(t >= created && t <= created + Duration::from_secs(60));
                assert!(p.lifetime.is_none_or(|l| l > created));
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn overdue_connections_spread_over_half_their_window() {
        let created = Instant::now();
        // 30 s token: window [13.5 s, 27 s] after login, width 13.5 s.
        let p = plan(
            &RetirePolicy::default(),
            created,
            Some(created + Duration::from_secs(30)),
            0.5,
            0.5,
        );
        let (s, e) = p.token_window.unwrap();
        assert_eq!(e - s, Duration::from_millis(13_500));
        assert_eq!(p.recovery_spread, Duration::from_millis(6_750));
        // Lifetime only: half of min(token_spread, max_lifetime * jitter) = min(300, 12) / 2.
        let life = RetirePolicy {
            by_token_age: false,
            max_lifetime: Some(Duration::from_secs(60)),
            ..RetirePolicy::default()
        };
        let p = plan(&life, created, None, 0.5, 0.5);
        assert_eq!(p.recovery_spread, Duration::from_secs(6));
    }

    #[tokio::test(start_paused = true)]
    async fn earlier_rule_wins() {
        let policy = RetirePolicy::default();
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
        let never = RetirePolicy {
            by_token_age: false,
            max_lifetime: None,
            ..RetirePolicy::default()
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
