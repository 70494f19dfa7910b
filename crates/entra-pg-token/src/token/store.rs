//! What a fetch's answer does to the cache: a new token stored (with its deadline on
//! tokio's clock, its generation and the token history), the same token noted, or a
//! failure remembered with its retry delay.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio::time::Instant;

use super::TokenError;
use super::{CachedToken, Outcome, RECENT_TOKENS, TokenCache, flight::Failure};
use crate::{
    sync::lock,
    time::{LONGEST, later},
    token::source::TokenSourceError,
    token::{backoff::retry_delay, source::Expiry},
};

impl TokenCache {
    /// Stores a fetch's result: the token, or the failure with its retry delay.
    pub(super) fn store_fetched(
        &self,
        result: Result<crate::token::source::Token, TokenSourceError>,
        name: String,
    ) -> Outcome {
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
}
