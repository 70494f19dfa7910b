//! A token provider that several pools share: one cache, one refresher, one identity call
//! per refresh for all of them (a writer and its read replicas, several databases on one
//! server, a deadpool pool and a sqlx pool side by side).

use std::{
    fmt,
    sync::{Arc, Once},
};

use tokio::time::Instant;

use crate::{
    stats::TokenStats,
    token::RefreshPolicy,
    token::StaticPassword,
    token::TokenSource,
    token::cache::{TokenCache, spawn_refresher},
};

/// One token cache and refresher for several pools.
///
/// Each pool built on the provider logs in with its token and retires its own
/// connections by that token's expiry; the identity endpoint sees one call per refresh
/// for all of them. Clones share the same cache. The refresher starts with the first
/// pool and stops when the provider and every pool using it are dropped, or at
/// [`TokenProvider::close`].
#[derive(Clone)]
pub struct TokenProvider {
    cache: Arc<TokenCache>,
    secret: Secret,
}

/// What a provider's secret is: pools log in with either.
#[derive(Clone)]
enum Secret {
    /// A static password: no refresher, no scope, no user from claims.
    Password,
    /// Entra tokens, refreshed by a task that the first pool starts.
    Tokens { refresher: Arc<Once> },
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenProvider")
            .field("source", &self.cache.source_name())
            .finish_non_exhaustive()
    }
}

impl TokenProvider {
    /// A provider of `scope` tokens from `source`, refreshed by `policy`.
    pub fn new(source: impl TokenSource, scope: impl Into<String>, policy: RefreshPolicy) -> Self {
        Self::from_parts(Box::new(source), scope.into(), policy)
    }

    /// A provider of `scope` tokens from a boxed `source`, refreshed by `policy`.
    pub fn from_parts(source: Box<dyn TokenSource>, scope: String, policy: RefreshPolicy) -> Self {
        Self {
            cache: TokenCache::new(source, scope, policy),
            secret: Secret::Tokens {
                refresher: Arc::new(Once::new()),
            },
        }
    }

    /// A provider of a static password (local development, migration): the same secret
    /// at every login, no identity call, no refresher. A pool on it needs a configured
    /// user, since no token names one. `policy`'s backoff paces the pools' probe logins
    /// while logins fail.
    pub fn password(password: StaticPassword, policy: RefreshPolicy) -> Self {
        Self {
            cache: TokenCache::fixed(password, policy),
            secret: Secret::Password,
        }
    }

    /// Whether the secret is a static password rather than Entra tokens.
    pub fn is_password(&self) -> bool {
        matches!(self.secret, Secret::Password)
    }

    /// The shared cache, which the pools read their token from.
    pub fn cache(&self) -> &Arc<TokenCache> {
        &self.cache
    }

    /// Starts the refresher, once (a password has none). A pool calls it when it is
    /// built.
    pub fn start_refresher(&self) {
        if let Secret::Tokens { refresher } = &self.secret {
            refresher.call_once(|| {
                spawn_refresher(&self.cache);
            });
        }
    }

    /// The shared token's state and counters (each pool's stats show the same).
    pub fn stats(&self) -> TokenStats {
        TokenStats::of(&self.cache, Instant::now())
    }

    /// Stops the refresher and any fetch in flight. Pools using the provider keep their
    /// sessions but cannot log in once the cached token expires.
    pub fn close(&self) {
        self.cache.shut_down();
    }
}
