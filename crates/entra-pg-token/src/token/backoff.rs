//! Retry delays of the token layer: capped exponential backoff with full jitter and a
//! floor, the identity endpoint's `Retry-After`, and the wait after the source returned
//! the cached token again.

use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use super::policy::{RETRY_AFTER_CAP, RefreshPolicy};

/// The shortest retry delay, whatever the policy says: a failing endpoint is never asked
/// in a tight loop.
pub const MIN_RETRY_DELAY: Duration = Duration::from_millis(100);

/// The policy's first retry delay, at least [`MIN_RETRY_DELAY`].
pub fn floor(policy: &RefreshPolicy) -> Duration {
    policy.min_backoff.max(MIN_RETRY_DELAY)
}

/// Upper bound of the n-th retry delay (n >= 1): `min_backoff * 2^(n-1)`, capped.
pub fn backoff_ceiling(policy: &RefreshPolicy, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
    floor(policy)
        .saturating_mul(factor)
        .min(policy.max_backoff)
        .max(floor(policy))
}

/// The n-th retry delay: uniform in `[min_backoff, ceiling]` ("full jitter" with a floor,
/// so a failing endpoint is never hammered in a tight loop).
pub fn backoff(policy: &RefreshPolicy, attempt: u32) -> Duration {
    let ceiling = backoff_ceiling(policy, attempt);
    let span = ceiling.saturating_sub(floor(policy));
    floor(policy)
        .saturating_add(span.mul_f64(rand::rng().random::<f64>()))
        .min(ceiling)
}

/// The delay before the next fetch after `attempt` failures: the endpoint's `Retry-After`
/// when it sent one (at least the floor, at most [`RETRY_AFTER_CAP`]), else the backoff.
pub fn retry_delay(
    policy: &RefreshPolicy,
    attempt: u32,
    retry_after: Option<Duration>,
) -> Duration {
    match retry_after {
        Some(ra) => ra.clamp(floor(policy), RETRY_AFTER_CAP.max(floor(policy))),
        None => backoff(policy, attempt),
    }
}

/// When to ask again after the `same`-th answer in a row that returned the cached token
/// (expiring at `deadline`): the backoff step, at most a quarter of the remaining life,
/// at least [`MIN_RETRY_DELAY`].
pub fn same_token_retry(
    policy: &RefreshPolicy,
    same: u32,
    deadline: Option<Instant>,
    now: Instant,
) -> Duration {
    let d = backoff(policy, same);
    match deadline {
        Some(e) => d.min(e.saturating_duration_since(now) / 4),
        None => d,
    }
    .max(MIN_RETRY_DELAY)
}
