//! A token provider that several pools share: one cache, one refresher, one identity call
//! per refresh for all of them (a writer and its read replicas, several databases on one
//! server).

use std::sync::Arc;

use crate::{config::AuthMethod, config::Config, config::ConfigError, stats::TokenStats};
use entra_pg_token::{
    cloud::ScopeFrom, token::ChainSource, token::RefreshPolicy, token::StaticPassword,
    token::TokenSource, token::UserAssignedId, token::cache::TokenCache,
};

/// One token cache and refresher for several pools.
///
/// Each pool built with [`crate::builder::PoolBuilder::token_provider`] logs in with the
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
#[derive(Clone, Debug)]
pub struct TokenProvider(entra_pg_token::TokenProvider);

impl TokenProvider {
    /// A provider of `scope` tokens from `source`, refreshed by `policy`.
    pub fn new(source: impl TokenSource, scope: impl Into<String>, policy: RefreshPolicy) -> Self {
        Self(entra_pg_token::TokenProvider::new(source, scope, policy))
    }

    /// The provider a pool built from `cfg` would have: its token source (the password,
    /// or the credential chain), its scope (configured, or the host's cloud) and its
    /// refresh policy. Fails only as the builder would (password mode with no password).
    pub fn from_config(cfg: &Config) -> Result<Self, ConfigError> {
        if cfg.uses_password() {
            return match &cfg.password {
                Some(p) => Ok(Self(entra_pg_token::TokenProvider::password(
                    StaticPassword::new(p.clone()),
                    cfg.refresh.clone(),
                ))),
                None => Err(ConfigError::new(
                    "password",
                    "password mode needs a password (PGPASSWORD or AZURE_POSTGRESQL_PASSWORD)",
                )),
            };
        }
        let scope = token_scope(cfg);
        Ok(Self::from_parts(
            default_source(cfg),
            scope,
            cfg.refresh.clone(),
        ))
    }

    /// The provider a pool logs in with, from what its builder was given: `provider`
    /// (shared with other pools), or a new one around `source`, or around the
    /// configuration's own source (as [`TokenProvider::from_config`]); and whether it is
    /// the pool's own rather than shared. Giving both is a configuration error. Both pool
    /// crates' builders (deadpool-entra's and sqlx-entra's) choose with this.
    pub fn for_pool(
        cfg: &Config,
        provider: Option<TokenProvider>,
        source: Option<Box<dyn TokenSource>>,
    ) -> Result<(Self, bool), ConfigError> {
        match (provider, source) {
            (Some(_), Some(_)) => Err(ConfigError::new(
                "token_provider",
                "both a token source and a token provider were given: the provider holds its own source; give one",
            )),
            (Some(p), None) => Ok((p, false)),
            (None, Some(source)) => {
                let scope = token_scope(cfg);
                Ok((Self::from_parts(source, scope, cfg.refresh.clone()), true))
            }
            (None, None) => Ok((Self::from_config(cfg)?, true)),
        }
    }

    pub(crate) fn from_parts(
        source: Box<dyn TokenSource>,
        scope: String,
        policy: RefreshPolicy,
    ) -> Self {
        Self(entra_pg_token::TokenProvider::from_parts(
            source, scope, policy,
        ))
    }

    pub(crate) fn cache(&self) -> &Arc<TokenCache> {
        self.0.cache()
    }

    /// Whether the secret is a static password (password mode) rather than Entra tokens.
    pub fn is_password(&self) -> bool {
        self.0.is_password()
    }

    /// Starts the refresher, once (never for a password).
    pub(crate) fn start_refresher(&self) {
        self.0.start_refresher();
    }

    /// The shared token's state and counters (each pool's [`crate::pool::Pool::stats`] shows
    /// the same).
    pub fn stats(&self) -> TokenStats {
        self.0.stats()
    }

    /// Stops the refresher and any fetch in flight. Pools using the provider keep their
    /// sessions but cannot log in once the cached token expires.
    pub fn close(&self) {
        self.0.close();
    }

    /// The token layer's provider inside: hand it to a pool of another kind (a sqlx pool
    /// through `sqlx-entra`) to share this provider's token and refresher.
    pub fn shared(&self) -> &entra_pg_token::TokenProvider {
        &self.0
    }
}

impl From<entra_pg_token::TokenProvider> for TokenProvider {
    fn from(p: entra_pg_token::TokenProvider) -> Self {
        Self(p)
    }
}

/// The token source a configuration names in token mode: the credential chain (managed
/// identity only with `auth_method = managed-identity`).
fn default_source(cfg: &Config) -> Box<dyn TokenSource> {
    let id = cfg.client_id.clone().map(UserAssignedId::ClientId);
    match cfg.auth_method {
        AuthMethod::ManagedIdentity => Box::new(ChainSource::managed_identity_only(id)),
        _ => Box::new(ChainSource::with_managed_identity(id)),
    }
}

/// The token scope for a configuration: the configured one, or the one of the Azure
/// cloud its first host names (several hosts are one server's replicas); said once in
/// an `info` event.
fn token_scope(cfg: &Config) -> String {
    let host = cfg.host.clone().unwrap_or_default();
    let first_host = cfg.first_host().to_owned();
    let (scope, scope_from) = entra_pg_token::cloud::scope_for(cfg.scope.as_deref(), &first_host);
    let from = match scope_from {
        ScopeFrom::Explicit => "configured".to_owned(),
        ScopeFrom::HostName(cloud) => format!("{cloud}, from the host name"),
        ScopeFrom::Default => {
            "the public cloud's (the host name names no Azure cloud; set the scope for a sovereign cloud behind a custom name)".to_owned()
        }
    };
    tracing::info!(target: "deadpool_entra", host = %host, scope = %scope, chosen = %from, "token scope");
    scope
}
