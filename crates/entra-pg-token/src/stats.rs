//! The token's state and counters, as a pool's stats show them.

use std::sync::atomic::Ordering;

use tokio::time::Instant;

use crate::token::cache::TokenCache;

/// The token's state and counters: what a pool's stats show of its token.
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct TokenStats {
    /// Seconds until the cached token expires (`None`: no token, or one that never
    /// expires).
    pub expires_in_secs: Option<f64>,
    /// Seconds since the cached token was fetched.
    pub age_secs: Option<f64>,
    /// Successful fetches (first fetch included).
    pub refreshes_ok: u64,
    /// Failed fetches, counting an answer with the cached token once it is expired (or
    /// about to expire) by this machine's clock.
    pub refreshes_failed: u64,
    /// Calls to the token source.
    pub identity_calls: u64,
    /// Answers that returned the token already cached, still valid (a credential serving
    /// its own cache); not counted in `refreshes_ok`, nor in `refreshes_failed`. Each
    /// fetch counts under one of the three, as the `deadpool_entra.token.refreshes`
    /// metric's `outcome` does.
    pub same_token_answers: u64,
    /// Seconds until the next fetch may be made after a failed one (`None`: none stands);
    /// until then logins that need a token get the failure without a new identity call.
    pub retry_in_secs: Option<f64>,
    /// Panics caught in the background refresher, which was restarted after each.
    pub refresher_panics: u64,
    /// The last fetch failure, cleared by the next success.
    pub last_error: Option<String>,
    /// Seconds since fetches began failing (`None`: the last fetch worked).
    pub failing_for_secs: Option<f64>,
    /// The token source (or chain link) in use.
    pub source: String,
}

/// Seconds from `since` to `now`.
pub fn secs_since(since: Option<Instant>, now: Instant) -> Option<f64> {
    since.map(|s| now.saturating_duration_since(s).as_secs_f64())
}

impl TokenStats {
    /// The state of `cache`'s token at `now`.
    pub fn of(cache: &TokenCache, now: Instant) -> Self {
        let tc = &cache.counters;
        let token = cache.peek();
        TokenStats {
            expires_in_secs: token
                .as_ref()
                .and_then(|t| t.deadline)
                .map(|d| d.saturating_duration_since(now).as_secs_f64()),
            age_secs: token
                .as_ref()
                .map(|t| now.saturating_duration_since(t.fetched_at).as_secs_f64()),
            refreshes_ok: tc.refreshes_ok.load(Ordering::Relaxed),
            refreshes_failed: tc.refreshes_failed.load(Ordering::Relaxed),
            identity_calls: tc.identity_calls.load(Ordering::Relaxed),
            same_token_answers: tc.same_token_answers.load(Ordering::Relaxed),
            retry_in_secs: cache
                .retry_at()
                .filter(|&r| r > now)
                .map(|r| r.saturating_duration_since(now).as_secs_f64()),
            refresher_panics: tc.refresher_panics.load(Ordering::Relaxed),
            last_error: cache.last_error(),
            failing_for_secs: secs_since(cache.failing_since(), now),
            source: cache.source_name(),
        }
    }
}
