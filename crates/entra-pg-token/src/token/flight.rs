//! Single flight: one fetch at a time, in a task of its own that callers join and leave
//! freely; the memory of the last failure, which stands in for new fetches until its
//! retry delay ends; and the fetch after a refused login, which bypasses the source's
//! cache at most once per backoff step for the same refused token.

use std::{
    panic::AssertUnwindSafe,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use futures_util::FutureExt;
use tokio::{sync::watch, time::Instant};

use super::TokenError;
use super::{CachedToken, Outcome, TokenCache};
use crate::{
    stopwatch::Stopwatch,
    sync::lock,
    time::later,
    token::source::TokenSourceError,
    token::{backoff::backoff_ceiling, metrics::RefreshOutcome},
};

/// The fetch in flight and the memory of the last failure, under one lock so that a
/// caller sees either a flight to join, a failure to share, or neither.
#[derive(Default)]
pub(super) struct Flight {
    /// The fetch in progress: joiners wait on this until it holds the outcome.
    pub(super) inflight: Option<watch::Receiver<Option<Outcome>>>,
    /// Whether that fetch bypasses the source's cache (`fetch_fresh`).
    pub(super) inflight_fresh: bool,
    /// The last failure and until when it stands in for a new fetch.
    pub(super) failure: Option<Failure>,
    /// A token the server refused, for which the source gave no other: its generation,
    /// until when that answer stands, and how many times in a row it came.
    pub(super) refused: Option<(u64, Instant, u32)>,
    /// The generation of the refused token that the fresh fetch in flight was asked for:
    /// the fetch itself records the hold when it brings that token back, so that the hold
    /// stands even when every caller waiting for it was cancelled.
    pub(super) refusing: Option<u64>,
}

pub(super) struct Failure {
    pub(super) error: TokenError,
    pub(super) until: Instant,
    pub(super) attempt: u32,
}

#[cfg(test)]
impl Forced {
    pub(crate) fn is_failed(&self) -> bool {
        matches!(self, Forced::Failed(_))
    }
}

/// The refresher's fetch: an outcome at once, or a flight to wait for.
pub(super) enum Refresh {
    Done(Outcome),
    Wait(watch::Receiver<Option<Outcome>>),
}

/// What a fetch after a refused login found.
pub enum Forced {
    /// A different token to log in with.
    New(Arc<CachedToken>),
    /// The source returns the refused token again: no other can be had now.
    Same(Arc<CachedToken>),
    /// The fetch failed.
    Failed(TokenError),
}

impl TokenCache {
    /// After the server refused `refused`: a different token, or word that the source
    /// returns the same one. Asks the source (bypassing its cache where it can) at most once
    /// per retry delay for the same refused token.
    pub async fn force_refresh(self: &Arc<Self>, refused: &Arc<CachedToken>) -> Forced {
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
    pub(super) fn hold_refused(&self, flight: &mut Flight, t: &CachedToken, now: Instant) {
        let times = match flight.refused {
            Some((g, until, _)) if g == t.generation && now < until => return,
            Some((g, _, n)) if g == t.generation => n.saturating_add(1),
            _ => 1,
        };
        let hold = backoff_ceiling(&self.policy, times).min(MAX_REFUSAL_HOLD);
        flight.refused = Some((t.generation, later(now, hold), times));
    }

    /// Joins the fetch in flight, or starts one (`fresh`: bypassing the source's cache).
    pub(super) fn join_or_start(
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
        let counted = self.refreshable;
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
            let outcome = cache.store_fetched(result, name.clone());
            let counted = RefreshOutcome::of(&outcome, before.as_ref());
            cache.fetch_ended(&name, &took, counted);
            let _ = tx.send(Some(outcome));
        };
        tokio::spawn(tracing::Instrument::instrument(task, span));
        Ok((rx, fresh))
    }

    /// A fetch from `name` ended after `took` with `outcome`: recorded once, for both the
    /// counters behind `Stats` and the metrics. An answer with the cached token counts as
    /// the same token only while that token is valid (past it, the answer failed).
    fn fetch_ended(&self, name: &str, took: &Stopwatch, outcome: RefreshOutcome) {
        let counter = match outcome {
            // A password is no refresh.
            RefreshOutcome::Ok => self.refreshable.then_some(&self.counters.refreshes_ok),
            RefreshOutcome::SameToken => Some(&self.counters.same_token_answers),
            RefreshOutcome::Failed => Some(&self.counters.refreshes_failed),
        };
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.metrics.fetched(name, took, outcome, !self.refreshable);
    }

    pub(super) fn closed_error(&self) -> TokenError {
        TokenError {
            source_name: self.source_name(),
            cause: "the pool was closed".into(),
            hint: None,
            retry_after: None,
        }
    }

    /// The refresher's fetch: joins a flight or starts one, unless another task already
    /// replaced generation `seen` (`Done`) or a failure still stands (`None`).
    pub(super) fn refresh_start(self: &Arc<Self>, seen: u64) -> Option<Refresh> {
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
}

/// Waits for a flight's outcome; a flight that ended without one (shut down) is an error.
pub(super) async fn join(mut rx: watch::Receiver<Option<Outcome>>) -> Outcome {
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
pub(super) async fn wait_shutdown(rx: &mut watch::Receiver<bool>) {
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
pub(super) fn no_answer(limit: Duration) -> crate::token::source::TokenSourceError {
    crate::token::source::TokenSourceError::new(format!(
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
