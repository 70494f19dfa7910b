//! The token's metrics in the `metrics` facade (feature `metrics`):
//! `deadpool_entra.token.identity_calls`, `.refreshes{outcome}` and `.fetch_time`, by
//! `token.source`.
//!
//! The label is the name the fetch reports when it ends, the name `stats()` shows: for
//! the credential chain, the link that answered (`AzureCliCredential`), not the chain.
//! The handles of a name are registered when a fetch first ends under it, with the
//! recorder installed then. A source that keeps renaming itself cannot grow the series
//! without bound: past [`MAX_SOURCES`] names, fetches are counted under [`OTHER`].

use std::sync::Arc;

use crate::stopwatch::Stopwatch;

/// How a fetch ended, for the `outcome` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefreshOutcome {
    /// A new token.
    Ok,
    /// The token already cached, still valid (a credential serving its own cache).
    SameToken,
    /// No usable token: an error, an expired token, or the cached one again past its
    /// expiry.
    Failed,
}

impl RefreshOutcome {
    /// How a fetch that settled as `outcome` ended, `before` being the token cached
    /// before it: the same token comes back as the very same cached entry.
    pub(crate) fn of<T, E>(outcome: &Result<Arc<T>, E>, before: Option<&Arc<T>>) -> Self {
        match outcome {
            Err(_) => Self::Failed,
            Ok(t) if before.is_some_and(|b| Arc::ptr_eq(b, t)) => Self::SameToken,
            Ok(_) => Self::Ok,
        }
    }
}

/// Distinct `token.source` values one cache records under; the credential chain has
/// five links, each also reported as `ChainSource (at <link>)` while it is tried.
#[cfg(feature = "metrics")]
const MAX_SOURCES: usize = 16;

/// The `token.source` of fetches past [`MAX_SOURCES`] names.
#[cfg(feature = "metrics")]
const OTHER: &str = "other";

/// A token cache's metric handles, by source name.
#[derive(Default)]
pub(crate) struct TokenMetrics {
    #[cfg(feature = "metrics")]
    by_source: std::sync::Mutex<Vec<(String, Arc<enabled::Handles>)>>,
}

impl TokenMetrics {
    /// A fetch from `source` ended after `took`, with `outcome`; recorded under the name
    /// the fetch ended with, as `stats()` shows it. `password`: the source
    /// is a static password, which is no identity call and whose token is no refresh (as
    /// in [`TokenStats`](crate::stats::TokenStats)).
    pub(crate) fn fetched(
        &self,
        source: &str,
        took: &Stopwatch,
        outcome: RefreshOutcome,
        password: bool,
    ) {
        #[cfg(feature = "metrics")]
        {
            let h = self.handles(source);
            if !password {
                h.calls.increment(1);
            }
            h.fetch_time.record(took.secs());
            match outcome {
                RefreshOutcome::Ok if password => {}
                RefreshOutcome::Ok => h.ok.increment(1),
                RefreshOutcome::SameToken => h.same.increment(1),
                RefreshOutcome::Failed => h.failed.increment(1),
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (source, took, outcome, password);
    }

    /// The handles of `source`, registered on first use; [`OTHER`]'s once the cache has
    /// seen [`MAX_SOURCES`] names.
    #[cfg(feature = "metrics")]
    fn handles(&self, source: &str) -> Arc<enabled::Handles> {
        let mut by = crate::sync::lock(&self.by_source);
        let known = |name: &str| by.iter().position(|(n, _)| n == name);
        let label = match known(source) {
            Some(i) => return by[i].1.clone(),
            None if by.len() < MAX_SOURCES => source,
            None => OTHER,
        };
        if let Some(i) = known(label) {
            return by[i].1.clone();
        }
        let h = Arc::new(enabled::Handles::new(label));
        by.push((label.to_owned(), h.clone()));
        h
    }
}

#[cfg(feature = "metrics")]
mod enabled {
    use metrics::{
        Counter, Histogram, Unit, counter, describe_counter, describe_histogram, histogram,
    };

    pub(super) struct Handles {
        pub(super) calls: Counter,
        pub(super) ok: Counter,
        pub(super) same: Counter,
        pub(super) failed: Counter,
        pub(super) fetch_time: Histogram,
    }

    impl Handles {
        pub(super) fn new(source: &str) -> Self {
            describe();
            let s = source.to_owned();
            let refresh = |outcome: &'static str| counter!("deadpool_entra.token.refreshes", "token.source" => s.clone(), "outcome" => outcome);
            Self {
                calls: counter!("deadpool_entra.token.identity_calls", "token.source" => s.clone()),
                ok: refresh("ok"),
                same: refresh("same_token"),
                failed: refresh("failed"),
                fetch_time: histogram!("deadpool_entra.token.fetch_time", "token.source" => s),
            }
        }
    }

    /// Names, units and descriptions, once per process.
    fn describe() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            describe_counter!(
                "deadpool_entra.token.identity_calls",
                Unit::Count,
                "Calls to the token source"
            );
            describe_counter!(
                "deadpool_entra.token.refreshes",
                Unit::Count,
                "Token fetches, by outcome (ok, same_token, failed), each counted once"
            );
            describe_histogram!(
                "deadpool_entra.token.fetch_time",
                Unit::Seconds,
                "Time a token fetch took"
            );
        });
    }
}
