//! A token provider that several pools share: one cache, one refresher, one identity call
//! per refresh for all of them (a writer and its read replicas, several databases on one
//! server).

use std::{
    fmt,
    sync::{Arc, Once},
};

use tokio::time::Instant;

use crate::{
    Config, ConfigError, RefreshPolicy, TokenSource, TokenStats,
    builder::{default_source, token_scope},
    token::cache::{TokenCache, spawn_refresher},
};

/// One token cache and refresher for several pools.
///
/// Each pool built with [`crate::PoolBuilder::token_provider`] logs in with the
/// provider's token and retires its own connections by that token's expiry; the identity
/// endpoint sees one call per refresh for all of them. Clones share the same cache. The
/// refresher starts with the first pool and stops when the provider and every pool using
/// it are dropped, or at [`TokenProvider::close`].
///
/// ```no_run
/// # async fn f() -> Result<(), deadpool_entra::Error> {
/// use deadpool_entra::{Config, Pool, TokenProvider};
/// let cfg = Config::from_env()?;
/// let tokens = TokenProvider::from_config(&cfg)?;
/// let writer = cfg.builder().token_provider(&tokens).build().await?;
/// let reader = cfg
///     .builder()
///     .host("myserver-replica.postgres.database.azure.com")
///     .token_provider(&tokens)
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TokenProvider {
    cache: Arc<TokenCache>,
    refresher: Arc<Once>,
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

    /// The provider a pool built from `cfg` would have: its token source (the password,
    /// or the credential chain), its scope (configured, or the host's cloud) and its
    /// refresh policy. Fails only as the builder would (password mode with no password).
    pub fn from_config(cfg: &Config) -> Result<Self, ConfigError> {
        let source = default_source(cfg)?;
        let scope = token_scope(cfg, source.is_password());
        Ok(Self::from_parts(source, scope, cfg.refresh.clone()))
    }

    pub(crate) fn from_parts(
        source: Box<dyn TokenSource>,
        scope: String,
        policy: RefreshPolicy,
    ) -> Self {
        Self {
            cache: TokenCache::new(source, scope, policy),
            refresher: Arc::new(Once::new()),
        }
    }

    pub(crate) fn cache(&self) -> &Arc<TokenCache> {
        &self.cache
    }

    /// Starts the refresher, once (never for a password).
    pub(crate) fn start_refresher(&self) {
        if self.cache.is_password() {
            return;
        }
        self.refresher.call_once(|| {
            spawn_refresher(&self.cache);
        });
    }

    /// The shared token's state and counters (each pool's [`crate::Pool::stats`] shows
    /// the same).
    pub fn stats(&self) -> TokenStats {
        TokenStats::of(&self.cache, Instant::now())
    }

    /// Stops the refresher and any fetch in flight. Pools using the provider keep their
    /// sessions but cannot log in once the cached token expires.
    pub fn close(&self) {
        self.cache.shut_down();
    }
}
