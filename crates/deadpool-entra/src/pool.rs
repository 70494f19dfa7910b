//! The pool: deadpool_postgres's own pool and manager, with our `Connect`, our hooks in
//! front of the user's, a token cache, a refresher and a sweeper.

use std::{
    fmt,
    ops::Deref,
    path::PathBuf,
    sync::{Arc, OnceLock, atomic::Ordering},
    time::Duration,
};

use deadpool_postgres::{
    Hook, HookError, Manager, ManagerConfig, PoolError, QueueMode, RecyclingMethod, Runtime,
    TimeoutType, Timeouts,
};
use tokio::{sync::watch, time::Instant};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{
    ChainSource, Config, ConfigError, CredentialSource, Degraded, Error, HealthReport, PoolStatus,
    RecyclePolicy, RefreshPolicy, SslMode, StaticPassword, Stats, TimeoutKind, TokenSource,
    TokenStats, UserAssignedId,
    cloud::ScopeFrom,
    config::{AuthMethod, ChannelBinding, validate},
    connect::{EntraConnect, GET_CONTEXT, GetContext, Tls, no_user_error},
    error::classify_pg,
    recycle::{
        self, ConnTable,
        gate::{Gate, LoginHealth},
    },
    stats::PoolCounters,
    token::{
        cache::{TokenCache, spawn_refresher},
        claims::user_from_token,
    },
};

/// State shared by the pool, its `Connect`, its hooks and its background tasks.
pub(crate) struct Shared {
    pub(crate) cache: Arc<TokenCache>,
    pub(crate) conns: ConnTable,
    pub(crate) spread: recycle::SpreadSequence,
    pub(crate) counters: PoolCounters,
    pub(crate) recycle: RecyclePolicy,
    pub(crate) create_timeout: Option<Duration>,
    pub(crate) tls: Tls,
    pub(crate) endpoint: String,
    pub(crate) user: Option<String>,
    pub(crate) credential_name: OnceLock<String>,
    pub(crate) initial_name: String,
    pub(crate) closed: watch::Sender<bool>,
    /// Whether logins are succeeding (voluntary retirements pause while they fail).
    pub(crate) logins: LoginHealth,
    /// The login configuration, for the sweeper's probe logins.
    pub(crate) pg_config: tokio_postgres::Config,
}

impl Shared {
    /// Whether a replacement could log in, as seen at `now`.
    pub(crate) fn gate(&self, now: Instant) -> Gate {
        Gate {
            unconditional: self.recycle.retire_without_replacement,
            token: self.cache.ready_token(now, &self.recycle),
            recent: self.cache.recent_tokens(),
            logins_ok_since: self.logins.ok_since(),
        }
    }

    fn user_for_errors(&self) -> String {
        self.user.clone().unwrap_or_else(|| {
            self.cache
                .peek()
                .and_then(|t| user_from_token(t.secret.expose()))
                .unwrap_or_else(|| "<from token>".into())
        })
    }
}

/// A pool of `deadpool_postgres` clients that log in with Entra ID tokens.
///
/// `Deref`s to [`deadpool_postgres::Pool`], so `status()`, `resize()`, `retain()`,
/// `timeout_get()` and `close()` work as before; [`Pool::get`] returns the same
/// [`deadpool_postgres::Client`] with typed errors.
#[derive(Clone)]
pub struct Pool {
    inner: deadpool_postgres::Pool,
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("endpoint", &self.shared.endpoint)
            .field("user", &self.shared.user)
            .field("credential", &self.credential_name())
            .field("status", &self.inner.status())
            .finish()
    }
}

impl Deref for Pool {
    type Target = deadpool_postgres::Pool;
    fn deref(&self) -> &deadpool_postgres::Pool {
        &self.inner
    }
}

impl Pool {
    /// A builder.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::from_config(Config::default())
    }

    /// A pool configured from the environment ([`Config::from_env`]).
    pub async fn from_env() -> Result<Pool, Error> {
        Config::from_env()?.build_pool().await
    }

    pub(crate) fn from_parts(inner: deadpool_postgres::Pool, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// The `deadpool_postgres` pool inside.
    pub fn inner(&self) -> &deadpool_postgres::Pool {
        &self.inner
    }

    /// Checks out a connection: an idle one that is not due for retirement, or a new
    /// login with the cached token.
    pub async fn get(&self) -> Result<deadpool_postgres::Client, Error> {
        self.get_with(&self.inner.timeouts()).await
    }

    /// [`Pool::get`] with other timeouts.
    pub async fn timeout_get(
        &self,
        timeouts: &Timeouts,
    ) -> Result<deadpool_postgres::Client, Error> {
        self.get_with(timeouts).await
    }

    pub(crate) async fn get_with(
        &self,
        timeouts: &Timeouts,
    ) -> Result<deadpool_postgres::Client, Error> {
        if self.inner.is_closed() {
            return Err(Error::Closed);
        }
        // No token check here: an idle session serves without one (the server checked its
        // token at login). A checkout that needs a login gets the typed token error from
        // our `Connect`, through the context below.
        //
        // While logins fail or no token is valid, `Connect` declines to log in as long as
        // the pool has sessions, and a login that fails then is not the request's end: the
        // checkout waits for a session to come back (polling, since deadpool has no return
        // hook), up to the wait timeout, and then tries one real login, whose error (or
        // connection) it returns.
        let started = Instant::now();
        let mut pause = Duration::from_millis(1);
        // Without a wait timeout, wait for a session as long as a login may take.
        let patience = timeouts
            .wait
            .or(timeouts.create)
            .unwrap_or(Duration::from_secs(30));
        loop {
            let waited = started.elapsed();
            let login_now = waited >= patience;
            let t = Timeouts {
                wait: timeouts.wait.map(|w| w.saturating_sub(waited)),
                ..*timeouts
            };
            let context = GetContext {
                login_now: std::cell::Cell::new(login_now),
                ..GetContext::default()
            };
            let (result, stashed, declined) = GET_CONTEXT
                .scope(context, async {
                    let r = self.inner.timeout_get(&t).await;
                    let (stashed, declined) =
                        GET_CONTEXT.with(|c| (c.error.borrow_mut().take(), c.declined.get()));
                    (r, stashed, declined)
                })
                .await;
            match result {
                // A login that failed while other sessions exist (the first one to meet a
                // fault): wait for a session too, rather than fail the request.
                Err(PoolError::Backend(_) | PoolError::Timeout(TimeoutType::Create))
                    if declined || (!login_now && self.shared.conns.live() > 0) =>
                {
                    self.shared.counters.checkouts_waited_for_session.fetch_add(
                        u64::from(pause == Duration::from_millis(1)),
                        Ordering::Relaxed,
                    );
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                r => return r.map_err(|e| self.map_error(e, stashed)),
            }
        }
    }

    fn map_error(&self, e: PoolError, stashed: Option<Error>) -> Error {
        match e {
            PoolError::Timeout(TimeoutType::Wait) => Error::Timeout(TimeoutKind::Wait),
            PoolError::Timeout(TimeoutType::Create) => Error::Timeout(TimeoutKind::Create),
            PoolError::Timeout(TimeoutType::Recycle) => Error::Timeout(TimeoutKind::Recycle),
            PoolError::Closed => Error::Closed,
            PoolError::NoRuntimeSpecified => {
                Error::Config(ConfigError::new("runtime", "no runtime specified"))
            }
            PoolError::Backend(pg) => stashed.unwrap_or_else(|| {
                classify_pg(pg, &self.shared.endpoint, &self.shared.user_for_errors())
            }),
            PoolError::PostCreateHook(h) => stashed.unwrap_or_else(|| match h {
                HookError::Backend(pg) => {
                    classify_pg(pg, &self.shared.endpoint, &self.shared.user_for_errors())
                }
                HookError::Message(m) => Error::Hook(m.into_owned()),
            }),
        }
    }

    /// A snapshot of the counters, the token state and the pool size.
    pub fn stats(&self) -> Stats {
        let now = Instant::now();
        let c = &self.shared.counters;
        let tc = &self.shared.cache.counters;
        let token = self.shared.cache.peek();
        let status = self.inner.status();
        Stats {
            token: TokenStats {
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
                retry_in_secs: self
                    .shared
                    .cache
                    .retry_at()
                    .filter(|&r| r > now)
                    .map(|r| r.saturating_duration_since(now).as_secs_f64()),
                refresher_panics: tc.refresher_panics.load(Ordering::Relaxed),
                last_error: self.shared.cache.last_error(),
                failing_for_secs: secs_since(self.shared.cache.failing_since(), now),
                source: self.shared.cache.source_name(),
            },
            logins_ok: c.logins_ok.load(Ordering::Relaxed),
            logins_failed: c.logins_failed.load(Ordering::Relaxed),
            logins_waited_for_token: c.logins_waited_for_token.load(Ordering::Relaxed),
            forced_refresh_retries: c.forced_refresh_retries.load(Ordering::Relaxed),
            same_token_after_refusal: c.same_token_after_refusal.load(Ordering::Relaxed),
            retired_token_age: c.retired_token_age.load(Ordering::Relaxed),
            retired_max_lifetime: c.retired_max_lifetime.load(Ordering::Relaxed),
            retired_broken: c.retired_broken.load(Ordering::Relaxed),
            replaced_in_background: c.replaced_in_background.load(Ordering::Relaxed),
            probe_logins: c.probe_logins.load(Ordering::Relaxed),
            checkouts_waited_for_session: c.checkouts_waited_for_session.load(Ordering::Relaxed),
            degraded: self.degraded(now),
            pool: PoolStatus {
                size: status.size,
                available: status.available,
                waiting: status.waiting,
                max_size: status.max_size,
            },
        }
    }

    /// The degraded-but-serving state at `now`.
    fn degraded(&self, now: Instant) -> Degraded {
        let survey = self.shared.conns.survey(&self.shared.gate(now), now);
        Degraded {
            overdue: survey.overdue,
            sessions_past_token_expiry: survey.past_token_expiry,
            oldest_session_token_expires_in_secs: survey.oldest_token_expiry.map(|e| {
                if e >= now {
                    (e - now).as_secs_f64()
                } else {
                    -(now - e).as_secs_f64()
                }
            }),
            logins_failing_for_secs: secs_since(self.shared.logins.failing_since(), now),
            identity_failing_for_secs: secs_since(self.shared.cache.failing_since(), now),
        }
    }

    /// A health check: `SELECT 1` through a normal checkout, 5 s timeout, plus the
    /// token's state.
    pub async fn health(&self) -> HealthReport {
        self.health_with_timeout(Duration::from_secs(5)).await
    }

    /// [`Pool::health`] with another timeout.
    pub async fn health_with_timeout(&self, timeout: Duration) -> HealthReport {
        let start = Instant::now();
        let result = tokio::time::timeout(timeout, async {
            let client = self.get().await?;
            client
                .simple_query("SELECT 1")
                .await
                .map_err(Error::Postgres)?;
            Ok::<_, Error>(())
        })
        .await
        .unwrap_or(Err(Error::Timeout(TimeoutKind::Health)));
        let latency = start.elapsed().as_secs_f64() * 1000.0;
        let token = self.shared.cache.peek();
        let database_ok = result.is_ok();
        let degraded_state = self.degraded(Instant::now());
        HealthReport {
            healthy: database_ok,
            degraded: degraded_state.is_degraded(),
            degraded_state,
            database_ok,
            database_latency_ms: database_ok.then_some(latency),
            token_expires_in_secs: token
                .and_then(|t| t.deadline)
                .map(|d| d.saturating_duration_since(Instant::now()).as_secs_f64()),
            token_source: self.shared.cache.source_name(),
            last_refresh_error: self.shared.cache.last_error(),
            error: result.err().map(|e| e.to_string()),
        }
    }

    /// Closes the pool (as `deadpool_postgres::Pool::close`) and stops the background
    /// tasks.
    pub fn close(&self) {
        self.inner.close();
        self.shared.closed.send_replace(true);
        self.shared.cache.shut_down();
    }

    /// The token source in use; for the chain, the link that produced the token
    /// (e.g. `ManagedIdentityCredential`).
    pub fn credential_name(&self) -> &str {
        if let Some(n) = self.shared.credential_name.get() {
            return n;
        }
        if self.shared.cache.peek().is_some() {
            return self
                .shared
                .credential_name
                .get_or_init(|| self.shared.cache.source_name());
        }
        &self.shared.initial_name
    }
}

fn secs_since(since: Option<Instant>, now: Instant) -> Option<f64> {
    since.map(|s| now.saturating_duration_since(s).as_secs_f64())
}

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
    /// Call once per host when several are configured.
    pub fn hostaddr(mut self, addr: std::net::IpAddr) -> Self {
        self.config.hostaddr.push(addr);
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
    /// [`crate::US_GOVERNMENT_SCOPE`] and [`crate::CHINA_SCOPE`]; [`DEFAULT_SCOPE`] for any
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
    pub fn recycle_policy(mut self, p: RecyclePolicy) -> Self {
        self.config.recycle = p;
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
        let source: Box<dyn TokenSource> = match self.source {
            Some(s) => s,
            None if cfg.uses_password() => match &cfg.password {
                Some(p) => Box::new(StaticPassword::new(p.clone())),
                None => {
                    return Err(ConfigError::new(
                        "password",
                        "password mode needs a password (PGPASSWORD or AZURE_POSTGRESQL_PASSWORD)",
                    )
                    .into());
                }
            },
            None => {
                let id = cfg.client_id.clone().map(UserAssignedId::ClientId);
                match cfg.auth_method {
                    AuthMethod::ManagedIdentity => Box::new(ChainSource::managed_identity_only(id)),
                    _ => Box::new(ChainSource::with_managed_identity(id)),
                }
            }
        };
        let password_mode = source.is_password();
        validate(&cfg, password_mode)?;
        let host = cfg.host.clone().unwrap_or_default();
        // The first host names the cloud (several hosts are one server's replicas).
        let first_host = host.split(',').next().unwrap_or_default().trim().to_owned();
        let tls = match crate::tls::client_config(cfg.ssl_mode, cfg.ssl_root_cert.as_deref())? {
            Some(c) => Tls::Rustls(MakeRustlsConnect::new(c)),
            None => Tls::Plain,
        };
        let initial_name = source.name();
        let (scope, scope_from) = crate::cloud::scope_for(cfg.scope.as_deref(), &first_host);
        if !password_mode {
            let from = match scope_from {
                ScopeFrom::Explicit => "configured".to_owned(),
                ScopeFrom::HostName(cloud) => format!("{cloud}, from the host name"),
                ScopeFrom::Default => {
                    "the public cloud's (the host name names no Azure cloud; set the scope for a sovereign cloud behind a custom name)".to_owned()
                }
            };
            tracing::info!(target: "deadpool_entra", host = %host, scope = %scope, chosen = %from, "token scope");
        }
        let cache = TokenCache::new(source, scope, cfg.refresh.clone());
        let credential_name = OnceLock::new();
        if !cfg.lazy {
            let first = cache.get();
            // At least 30 s at startup, and longer than one fetch may take, so that a
            // source that never answers is reported as such (the token error), not as a
            // generic create timeout.
            let startup_limit = |t: Duration| {
                let fetch = cfg.refresh.fetch_timeout.unwrap_or_default();
                t.max(Duration::from_secs(30))
                    .max(fetch.saturating_add(Duration::from_secs(1)))
            };
            let token = match cfg.create_timeout {
                Some(t) => tokio::time::timeout(startup_limit(t), first)
                    .await
                    .map_err(|_| Error::Timeout(TimeoutKind::Create))??,
                None => first.await?,
            };
            if cfg.user.is_none()
                && !password_mode
                && user_from_token(token.secret.expose()).is_none()
            {
                return Err(no_user_error().into());
            }
            let _ = credential_name.set(cache.source_name());
        }

        let pg = crate::config::pg_config(&cfg, matches!(tls, Tls::Rustls(_)));

        let (closed, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            cache: cache.clone(),
            conns: ConnTable::default(),
            spread: recycle::SpreadSequence::new(),
            counters: PoolCounters::default(),
            recycle: cfg.recycle.clone(),
            create_timeout: cfg.create_timeout,
            tls,
            endpoint: crate::config::endpoint_text(&cfg),
            user: cfg.user.clone(),
            credential_name,
            initial_name,
            closed,
            logins: LoginHealth::new(Instant::now()),
            pg_config: pg.clone(),
        });
        let manager = Manager::from_connect(
            pg,
            EntraConnect {
                shared: shared.clone(),
            },
            ManagerConfig {
                recycling_method: cfg.recycling_method.clone(),
            },
        );
        let mut builder = deadpool_postgres::Pool::builder(manager)
            .runtime(Runtime::Tokio1)
            .wait_timeout(cfg.wait_timeout)
            .create_timeout(cfg.create_timeout)
            .recycle_timeout(cfg.recycle_timeout)
            .queue_mode(cfg.queue_mode);
        if let Some(n) = cfg.max_size {
            builder = builder.max_size(n);
        }
        let s = shared.clone();
        builder = builder.post_create(Hook::sync_fn(move |w, _| {
            recycle::table::post_create(&s, w);
            Ok(())
        }));
        let s = shared.clone();
        builder = builder.pre_recycle(Hook::sync_fn(move |w, _| {
            recycle::table::pre_recycle(&s, w)
        }));
        for h in self.post_create {
            builder = builder.post_create(h);
        }
        for h in self.pre_recycle {
            builder = builder.pre_recycle(h);
        }
        for h in self.post_recycle {
            builder = builder.post_recycle(h);
        }
        let inner = builder
            .build()
            .map_err(|e| ConfigError::new("pool", e.to_string()))?;
        if !password_mode {
            spawn_refresher(&cache);
        }
        recycle::sweeper::spawn_sweeper(&shared, &inner);
        tracing::debug!(
            target: "deadpool_entra",
            endpoint = %shared.endpoint,
            source = %shared.initial_name,
            "pool built"
        );
        Ok(Pool { inner, shared })
    }
}
