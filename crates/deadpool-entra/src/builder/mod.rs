//! The builder: settings, hooks and the token source; [`PoolBuilder::build`] runs the
//! steps in `steps.rs` (the token provider, TLS, the first token, the shared state,
//! deadpool's pool), then starts the refresher and the sweeper.

mod steps;

use std::{
    fmt,
    path::PathBuf,
    sync::{Arc, OnceLock},
    time::Duration,
};

use deadpool_postgres::{Hook, QueueMode, RecyclingMethod};

use crate::{
    config::Config,
    config::SslMode,
    config::{AuthMethod, ChannelBinding, validate},
    error::Error,
    pool::Pool,
    pool::sweeper,
    provider::TokenProvider,
    retire::RetirePolicy,
};
use entra_pg_token::{
    token::ChainSource, token::CredentialSource, token::RefreshPolicy, token::TokenSource,
    token::UserAssignedId,
};

/// Builds a [`Pool`]. All setters consume and return the builder.
///
/// ```no_run
/// # async fn f() -> Result<(), deadpool_entra::Error> {
/// let pool = deadpool_entra::Pool::builder()
///     .host("myserver.postgres.database.azure.com")
///     .dbname("app")
///     .user("my-app-identity")
///     .max_size(16)
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
pub struct PoolBuilder {
    config: Config,
    source: Option<Box<dyn TokenSource>>,
    provider: Option<TokenProvider>,
    post_create: Vec<Hook>,
    pre_recycle: Vec<Hook>,
    post_recycle: Vec<Hook>,
}

impl fmt::Debug for PoolBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PoolBuilder")
            .field("config", &self.config)
            .field("source", &self.source.as_ref().map(|s| s.name()))
            .finish_non_exhaustive()
    }
}

impl PoolBuilder {
    pub(crate) fn from_config(config: Config) -> Self {
        Self {
            config,
            source: None,
            provider: None,
            post_create: Vec::new(),
            pre_recycle: Vec::new(),
            post_recycle: Vec::new(),
        }
    }

    /// Server host.
    pub fn host(mut self, h: impl Into<String>) -> Self {
        self.config.host = Some(h.into());
        self
    }
    /// The IP address to connect to (libpq's `hostaddr`), for a private endpoint whose
    /// name does not resolve here; the certificate is still verified against `host`.
    /// Call once per host when several are configured (see [`Config::hostaddr`] for a
    /// host whose name is to be resolved).
    pub fn hostaddr(mut self, addr: std::net::IpAddr) -> Self {
        self.config.hostaddr.push(Some(addr));
        self
    }

    /// Server port.
    pub fn port(mut self, p: u16) -> Self {
        self.config.port = Some(p);
        self
    }
    /// Database name.
    pub fn dbname(mut self, d: impl Into<String>) -> Self {
        self.config.dbname = Some(d.into());
        self
    }
    /// PostgreSQL user (default: from the token's claims).
    pub fn user(mut self, u: impl Into<String>) -> Self {
        self.config.user = Some(u.into());
        self
    }
    /// Use this token source.
    pub fn token_source(mut self, s: impl TokenSource) -> Self {
        self.source = Some(Box::new(s));
        self
    }
    /// Share `provider`'s token (its cache and refresher) with other pools: one identity
    /// call per refresh for all of them. Its source, scope and refresh policy apply; the
    /// builder's are ignored. Closing this pool leaves the provider running.
    pub fn token_provider(mut self, provider: &TokenProvider) -> Self {
        self.provider = Some(provider.clone());
        self
    }
    /// Use this Azure credential.
    pub fn credential(self, c: Arc<dyn azure_core::credentials::TokenCredential>) -> Self {
        self.token_source(CredentialSource::new(c))
    }
    /// Use a managed identity only (no chain): system-assigned with `None`, or a
    /// user-assigned one by client id, object id or resource id.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), deadpool_entra::Error> {
    /// use deadpool_entra::{Pool, UserAssignedId};
    /// let pool = Pool::builder()
    ///     .host("myserver.postgres.database.azure.com")
    ///     .user("my-identity")
    ///     .managed_identity(Some(UserAssignedId::ObjectId("0000-...".into())))
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn managed_identity(self, id: Option<UserAssignedId>) -> Self {
        self.token_source(ChainSource::managed_identity_only(id))
    }
    /// Static password mode.
    pub fn password(mut self, p: impl Into<String>) -> Self {
        self.config.password = Some(p.into());
        self.config.auth_method = AuthMethod::Password;
        self
    }
    /// Token scope (default: the scope of the Azure cloud the host name names, see
    /// [`entra_pg_token::cloud::US_GOVERNMENT_SCOPE`] and [`entra_pg_token::cloud::CHINA_SCOPE`]; [`entra_pg_token::cloud::DEFAULT_SCOPE`] for any
    /// other host).
    pub fn scope(mut self, s: impl Into<String>) -> Self {
        self.config.scope = Some(s.into());
        self
    }
    /// TLS mode (default verify-full).
    pub fn ssl_mode(mut self, m: SslMode) -> Self {
        self.config.ssl_mode = m;
        self
    }
    /// CA file (PEM) that signed the server's certificate.
    pub fn ssl_root_cert(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.ssl_root_cert = Some(path.into());
        self
    }
    /// Channel binding (default prefer; `Require` is refused with tokens).
    pub fn channel_binding(mut self, c: ChannelBinding) -> Self {
        self.config.channel_binding = c;
        self
    }
    /// Allows `sslmode` disable/allow/prefer (no TLS), but only when the host is a
    /// loopback address, `localhost` or a unix socket. For test servers; never for a
    /// server across a network.
    pub fn dangerous_allow_plaintext_on_loopback(mut self) -> Self {
        self.config.dangerous_allow_plaintext_on_loopback = true;
        self
    }
    /// `application_name` (default `deadpool-entra`).
    pub fn application_name(mut self, n: impl Into<String>) -> Self {
        self.config.application_name = Some(n.into());
        self
    }
    /// Maximum pool size.
    pub fn max_size(mut self, n: usize) -> Self {
        self.config.max_size = Some(n);
        self
    }
    /// The pool's name in metrics (`db.client.connection.pool.name`; default:
    /// `host:port/database`, see [`Config::pool_name`]).
    pub fn pool_name(mut self, name: impl Into<String>) -> Self {
        self.config.pool_name = Some(name.into());
        self
    }
    /// Connections kept open from the build on (default 0); see
    /// [`Config::min_connections`].
    pub fn min_connections(mut self, n: usize) -> Self {
        self.config.min_connections = n;
        self
    }
    /// Wait timeout (default 30 s).
    pub fn wait_timeout(mut self, t: Option<Duration>) -> Self {
        self.config.wait_timeout = t;
        self
    }
    /// Create timeout, token fetch included (default 10 s).
    pub fn create_timeout(mut self, t: Option<Duration>) -> Self {
        self.config.create_timeout = t;
        self
    }
    /// Recycle timeout (default 5 s).
    pub fn recycle_timeout(mut self, t: Option<Duration>) -> Self {
        self.config.recycle_timeout = t;
        self
    }
    /// How reused connections are checked (default Fast).
    pub fn recycling_method(mut self, m: RecyclingMethod) -> Self {
        self.config.recycling_method = m;
        self
    }
    /// Which idle connection is taken first (default Fifo).
    pub fn queue_mode(mut self, m: QueueMode) -> Self {
        self.config.queue_mode = m;
        self
    }
    /// Retirement policy.
    pub fn retire_policy(mut self, p: RetirePolicy) -> Self {
        self.config.retire = p;
        self
    }
    /// Refresh policy.
    pub fn refresh_policy(mut self, p: RefreshPolicy) -> Self {
        self.config.refresh = p;
        self
    }
    /// `true`: do not fetch the first token in `build()`.
    pub fn lazy(mut self, lazy: bool) -> Self {
        self.config.lazy = lazy;
        self
    }
    /// A `post_create` hook, run after ours.
    pub fn post_create(mut self, h: Hook) -> Self {
        self.post_create.push(h);
        self
    }
    /// A `pre_recycle` hook, run after ours.
    pub fn pre_recycle(mut self, h: Hook) -> Self {
        self.pre_recycle.push(h);
        self
    }
    /// A `post_recycle` hook.
    pub fn post_recycle(mut self, h: Hook) -> Self {
        self.post_recycle.push(h);
        self
    }

    /// Validates the configuration, fetches the first token (unless lazy) and builds
    /// the pool.
    pub async fn build(self) -> Result<Pool, Error> {
        let cfg = self.config;
        let (provider, owned) = TokenProvider::for_pool(&cfg, self.provider, self.source)?;
        let cache = provider.cache().clone();
        validate(&cfg, provider.is_password())?;
        let tls = steps::tls_connector(&cfg)?;
        let initial_name = cache.source_name();
        let credential_name = OnceLock::new();
        if !cfg.lazy {
            steps::first_token(&cfg, &cache).await?;
            let _ = credential_name.set(cache.source_name());
        }
        let shared = steps::shared_state(&cfg, cache, tls, owned, credential_name, initial_name);
        let hooks = steps::UserHooks {
            post_create: self.post_create,
            pre_recycle: self.pre_recycle,
            post_recycle: self.post_recycle,
        };
        let inner = steps::deadpool_pool(&cfg, &shared, hooks)?;
        provider.start_refresher();
        sweeper::spawn_sweeper(&shared, &inner);
        tracing::debug!(
            target: "deadpool_entra",
            endpoint = %shared.endpoint,
            source = %shared.initial_name,
            "pool built"
        );
        let pool = Pool::from_parts(inner, shared);
        // A lazy pool reaches its floor in the background (the sweeper), as soon as
        // a token is there.
        if cfg.min_connections > 0
            && !cfg.lazy
            && let Err(e) = pool.prewarm(cfg.min_connections).await
        {
            pool.close();
            return Err(e);
        }
        Ok(pool)
    }
}

/// Building from a configuration: here rather than in `config`, which knows nothing of
/// the pool.
// The builder's entry on the pool, here so that the pool knows nothing of its builder.
impl Pool {
    /// A builder.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::from_config(Config::default())
    }
}

impl Config {
    /// A [`PoolBuilder`] preloaded with this configuration.
    pub fn builder(&self) -> PoolBuilder {
        PoolBuilder::from_config(self.clone())
    }

    /// Builds the pool (fetches the first token unless `lazy`).
    pub async fn build_pool(&self) -> Result<Pool, Error> {
        self.builder().build().await
    }
}
