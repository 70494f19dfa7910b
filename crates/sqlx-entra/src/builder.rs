//! Building the pool: the configuration checked, the token provider, the first token and
//! the user, the connect options, sqlx's pool with our hooks, the first login, the
//! watcher.

use std::{sync::Arc, time::Duration};

use deadpool_entra::{Config, error::ConfigError};
use entra_pg_token::{
    TokenProvider, TokenSource, claims::user_from_token, retire::health::LoginHealth,
    token::cache::CachedToken,
};
use sqlx::PgPool;
use tokio::time::Instant;

use crate::{
    counters::Counters,
    error::Error,
    hooks, options,
    pool::Pool,
    shared::Shared,
    switches::{Switch, Switches},
    watcher,
};

/// Builds a [`Pool`] from a [`Config`]: the same configuration, environment variables
/// and URL as a deadpool-entra pool.
///
/// ```no_run
/// # async fn f() -> Result<(), sqlx_entra::Error> {
/// let pool = sqlx_entra::PoolBuilder::from_env()?.build().await?;
/// let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&*pool).await.unwrap();
/// # Ok(()) }
/// ```
pub struct PoolBuilder {
    cfg: Config,
    provider: Option<TokenProvider>,
    source: Option<Box<dyn TokenSource>>,
}

impl PoolBuilder {
    /// A builder for `cfg`.
    pub fn new(cfg: Config) -> Self {
        Self {
            cfg,
            provider: None,
            source: None,
        }
    }

    /// A builder for the configuration in the environment (`Config::from_env`).
    pub fn from_env() -> Result<Self, Error> {
        Ok(Self::new(Config::from_env()?))
    }

    /// Logs in with `provider`'s token, shared with other pools (a deadpool-entra pool
    /// gives its provider with `TokenProvider::shared`): one identity call per refresh
    /// for all of them.
    pub fn token_provider(mut self, provider: &TokenProvider) -> Self {
        self.provider = Some(provider.clone());
        self
    }

    /// Takes tokens from `source` instead of the configuration's credential chain.
    pub fn token_source(mut self, source: impl TokenSource) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Builds the pool. It waits for the first token (sqlx's connect options need it as
    /// the password, and the user may come from its claims). Unless the configuration is
    /// `lazy`, it then logs in `min_connections` sessions (at least one), so that a wrong
    /// host, user or token is reported here; when lazy, it logs them in in the
    /// background (at most `max_size - 1`: callers keep a slot while the fill runs).
    pub async fn build(self) -> Result<Pool, Error> {
        let cfg = self.cfg;
        cfg.validate()?;
        let (tokens, _) = deadpool_entra::TokenProvider::for_pool(
            &cfg,
            self.provider.map(Into::into),
            self.source,
        )?;
        let tokens = tokens.shared().clone();
        tokens.start_refresher();
        let token = first_token(&cfg, &tokens).await?;
        let user = match (&cfg.user, tokens.is_password()) {
            (Some(u), _) => u.clone(),
            (None, true) => {
                return Err(ConfigError::new(
                    "user",
                    "password mode needs a user: set PGUSER or AZURE_POSTGRESQL_USER",
                )
                .into());
            }
            (None, false) => {
                user_from_token(token.secret.expose()).ok_or_else(ConfigError::no_user)?
            }
        };
        let base = options::connect_options(&cfg, &user)?;
        let ignored = options::ignored(&cfg);
        if !ignored.is_empty() {
            tracing::warn!(target: "deadpool_entra", settings = ?ignored, "sqlx has no TCP timeouts or keepalives: these settings are ignored (sqlx pings an idle session before handing it out, and acquire_timeout bounds a login)");
        }
        let now = Instant::now();
        let shared = Arc::new(Shared {
            tokens,
            policy: cfg.retire.clone(),
            switches: Switches::new(Switch {
                at: now,
                generation: token.generation,
                expiry: token.deadline,
            }),
            health: LoginHealth::new(now),
            counters: Counters::new(&metrics_name(&cfg)),
            epoch: now,
            seed: rand_unit(),
            proof: Default::default(),
            login_limit: cfg.create_timeout.unwrap_or(Duration::from_secs(30)),
            base: base.clone(),
        });
        let (on_connect, on_acquire) = (shared.clone(), shared.clone());
        let pg = options::pool_options(&cfg)
            .after_connect(move |_conn, _meta| {
                hooks::connected(&on_connect);
                Box::pin(async { Ok(()) })
            })
            .before_acquire(move |_conn, meta| {
                let keep = hooks::keep(&on_acquire, meta.age);
                Box::pin(async move { Ok(keep) })
            })
            .connect_lazy_with(watcher::with_password(&base, token.secret.expose()));
        let max = options::max_connections(&cfg) as usize;
        let floor = cfg.min_connections.min(max);
        if cfg.lazy {
            // sqlx fills `min_connections` only when it reaps a session: log them in in
            // the background. Callers come meanwhile, and the fill holds what it has
            // logged in until its last login ends: it leaves them at least one slot.
            let floor = floor.min(max.saturating_sub(1));
            let (pg, shared) = (pg.clone(), shared.clone());
            tokio::spawn(async move {
                if let Err(e) = fill(&pg, &shared, floor).await {
                    tracing::warn!(target: "deadpool_entra", error = %e, "logging in min_connections in the background failed; sessions open on demand");
                }
            });
        } else if let Err(e) = fill(&pg, &shared, floor.max(1)).await {
            pg.close().await;
            return Err(Error::Login(e));
        }
        tokio::spawn(watcher::run(pg.clone(), shared.clone()));
        Ok(Pool { pg, shared })
    }
}

/// Logs in `n` sessions (the first alone and timed, as it sets the login window, then the
/// rest together) and returns them to the pool.
async fn fill(pg: &PgPool, shared: &Shared, n: usize) -> Result<(), sqlx::Error> {
    if n == 0 {
        return Ok(());
    }
    hooks::AHEAD_OF_NEED
        .scope((), async {
            let started = Instant::now();
            let first = pg.acquire().await?;
            shared.switches.saw_login(started.elapsed());
            let more = futures_util::future::join_all((1..n).map(|_| pg.acquire())).await;
            drop(first);
            more.into_iter().collect::<Result<Vec<_>, _>>().map(drop)
        })
        .await
}

/// The first token, within the startup limit: at least 30 s, and longer than one fetch
/// may take, so that a source that never answers is reported as the token error.
async fn first_token(cfg: &Config, tokens: &TokenProvider) -> Result<Arc<CachedToken>, Error> {
    let fetch = cfg.refresh.fetch_timeout.unwrap_or_default();
    let limit = cfg
        .create_timeout
        .unwrap_or_default()
        .max(Duration::from_secs(30))
        .max(fetch.saturating_add(Duration::from_secs(1)));
    match tokio::time::timeout(limit, tokens.cache().get()).await {
        Ok(t) => Ok(t?),
        Err(_) => Err(Error::TokenTimeout(limit)),
    }
}

/// The pool's name in metrics: the configured `pool_name`, else the deadpool pool's
/// default (`host:port/database`) marked `(sqlx)`, so that a deadpool pool and a sqlx
/// pool on one configuration write two series.
fn metrics_name(cfg: &Config) -> String {
    match &cfg.pool_name {
        Some(name) => name.clone(),
        None => format!("{} (sqlx)", cfg.metrics_pool_name()),
    }
}

/// A random number in `[0, 1)`, from the standard library's randomly keyed hasher.
fn rand_unit() -> f64 {
    use std::hash::{BuildHasher, RandomState};
    (RandomState::new().hash_one(0u8) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use entra_pg_token::{FnSource, RefreshPolicy, Token};

    use super::*;

    fn never_answers() -> TokenProvider {
        let source = FnSource::new("Silent", |_scope| async {
            std::future::pending::<Result<Token, entra_pg_token::TokenSourceError>>().await
        });
        TokenProvider::new(
            source,
            "scope",
            RefreshPolicy {
                fetch_timeout: None,
                ..RefreshPolicy::default()
            },
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_source_that_never_answers_is_a_token_timeout_of_at_least_30_s() {
        let mut cfg = Config::new();
        cfg.create_timeout = Some(Duration::from_secs(2));
        cfg.refresh.fetch_timeout = None;
        let started = Instant::now();
        let e = first_token(&cfg, &never_answers()).await.unwrap_err();
        assert!(
            matches!(e, Error::TokenTimeout(d) if d == Duration::from_secs(30)),
            "{e}"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        // A longer creation limit is the limit.
        cfg.create_timeout = Some(Duration::from_secs(45));
        let e = first_token(&cfg, &never_answers()).await.unwrap_err();
        assert!(
            matches!(e, Error::TokenTimeout(d) if d == Duration::from_secs(45)),
            "{e}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_startup_limit_outlasts_one_fetch_so_the_fetchs_own_error_is_reported() {
        let mut cfg = Config::new();
        cfg.create_timeout = Some(Duration::from_secs(2));
        cfg.refresh.fetch_timeout = Some(Duration::from_secs(40));
        let source = FnSource::new("Silent", |_scope| async {
            std::future::pending::<Result<Token, entra_pg_token::TokenSourceError>>().await
        });
        let tokens = TokenProvider::new(source, "scope", cfg.refresh.clone());
        let started = Instant::now();
        let e = first_token(&cfg, &tokens).await.unwrap_err();
        assert!(matches!(e, Error::Token(_)), "{e}");
        assert_eq!(started.elapsed(), Duration::from_secs(40));
    }

    #[test]
    fn the_metrics_name_is_the_configured_one_or_the_deadpool_default_marked_sqlx() {
        let mut cfg: Config = "postgresql://srv.example:6432/app".parse().unwrap();
        assert_eq!(metrics_name(&cfg), "srv.example:6432/app (sqlx)");
        assert_ne!(metrics_name(&cfg), cfg.metrics_pool_name());
        cfg.pool_name = Some("orders".into());
        assert_eq!(metrics_name(&cfg), "orders");
    }

    #[test]
    fn the_seed_is_a_unit_fraction() {
        for _ in 0..1000 {
            let u = rand_unit();
            assert!((0.0..1.0).contains(&u), "{u}");
        }
    }
}
