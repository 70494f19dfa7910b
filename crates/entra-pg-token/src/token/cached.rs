//! A token as the cache holds it, and the history of the latest ones.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::time::Instant;

use super::secret::Secret;

/// A token as the cache holds it.
pub struct CachedToken {
    /// The secret, zeroed when the last copy is dropped.
    pub secret: Arc<Secret>,
    /// `None`: never expires (a password).
    pub deadline: Option<Instant>,
    /// The same expiry on the wall clock, which keeps running while the machine sleeps.
    pub expires_wall: Option<SystemTime>,
    /// Remaining life when fetched.
    pub lifetime: Option<Duration>,
    /// When the token was cached.
    pub fetched_at: Instant,
    /// Since when a valid token has been cached without a gap: this token's fetch if the
    /// one before it had expired (or there was none), else that one's `usable_since`.
    pub usable_since: Instant,
    /// Its place in the cache's sequence of tokens: 1 for the first, one more for each
    /// new token.
    pub generation: u64,
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
    pub fn is_valid_at(&self, now: Instant, wall: SystemTime) -> bool {
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

/// How many of the latest tokens the cache remembers for the retirement gate.
pub const RECENT_TOKENS: usize = 4;

/// The latest distinct tokens, oldest first: `(cached at, expiry)`.
pub type RecentTokens = [Option<(Instant, Option<Instant>)>; RECENT_TOKENS];
