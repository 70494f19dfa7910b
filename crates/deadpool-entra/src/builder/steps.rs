//! The steps [`PoolBuilder::build`](crate::builder::PoolBuilder::build) takes, in order (the
//! token provider is [`TokenProvider::for_pool`](crate::provider::TokenProvider::for_pool)): the TLS connector, the first token, the shared state, and deadpool's
//! pool with our hooks in front of the user's.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use deadpool_postgres::{Hook, Manager, ManagerConfig, RecyclingMethod, Runtime};
use tokio::{sync::watch, time::Instant};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{
    config::Config,
    config::ConfigError,
    connect::{EntraConnect, no_user_error},
    error::Error,
    error::TimeoutKind,
    pool::hooks,
    retire::{self, ConnTable, health::LoginHealth},
    shared::Shared,
    stats::PoolCounters,
    tls::Tls,
};
use entra_pg_token::token::{cache::TokenCache, claims::user_from_token};

/// rustls with the configuration's roots, or none (the loopback opt-out).
pub(crate) fn tls_connector(cfg: &Config) -> Result<Tls, ConfigError> {
    Ok(
        match crate::tls::client_config(cfg.ssl_mode, cfg.ssl_root_cert.as_deref())? {
            Some(c) => Tls::Rustls(MakeRustlsConnect::new(c)),
            None => Tls::Plain,
        },
    )
}

/// Fetches the first token, and checks that a user is known: configured, or named by the
/// token.
pub(crate) async fn first_token(cfg: &Config, cache: &Arc<TokenCache>) -> Result<(), Error> {
    let first = cache.get();
    // At least 30 s at startup, and longer than one fetch may take, so that a source that
    // never answers is reported as such (the token error), not as a generic create
    // timeout.
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
    // Password mode without a user was refused by `validate`.
    if cfg.user.is_none() && user_from_token(token.secret.expose()).is_none() {
        return Err(no_user_error().into());
    }
    Ok(())
}

/// The state the pool's parts share.
pub(crate) fn shared_state(
    cfg: &Config,
    cache: Arc<TokenCache>,
    tls: Tls,
    owns_cache: bool,
    credential_name: OnceLock<String>,
    initial_name: String,
) -> Arc<Shared> {
    let uses_tls = matches!(tls, Tls::Rustls(_));
    let pg = crate::config::pg_config(cfg, uses_tls);
    let (closed, _) = watch::channel(false);
    let pool_name = cfg.metrics_pool_name();
    Arc::new(Shared {
        cache,
        conns: ConnTable::default(),
        spread: retire::SpreadSequence::new(),
        counters: PoolCounters {
            metrics: crate::metrics::PoolMetrics::new(&pool_name),
            ..PoolCounters::default()
        },
        retire: cfg.retire.clone(),
        create_timeout: cfg.create_timeout,
        tls,
        endpoint: crate::config::endpoint_text(cfg),
        user: cfg.user.clone(),
        credential_name,
        initial_name,
        closed,
        logins: LoginHealth::new(Instant::now()),
        net: Arc::new(crate::network::NetWatch::with_metrics(
            &pg,
            crate::network::metrics::NetMetrics::new(&pool_name),
        )),
        pg_config: pg,
        owns_cache,
        sweep_now: Default::default(),
        spares: Default::default(),
        min_connections: cfg.min_connections,
        hosts: crate::hosts::Hosts::new(cfg, uses_tls),
    })
}

/// The user's hooks, which run after ours.
pub(crate) struct UserHooks {
    pub(crate) post_create: Vec<Hook>,
    pub(crate) pre_recycle: Vec<Hook>,
    pub(crate) post_recycle: Vec<Hook>,
}

/// deadpool's pool, with our `Connect` and our hooks in front of the user's.
pub(crate) fn deadpool_pool(
    cfg: &Config,
    shared: &Arc<Shared>,
    user: UserHooks,
) -> Result<deadpool_postgres::Pool, ConfigError> {
    let manager = Manager::from_connect(
        shared.pg_config.clone(),
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
        // `Fast` recycling does no I/O (it looks at the client's closed flag): a timer
        // around it protects nothing and costs every warm checkout one. Plain
        // deadpool-postgres sets none by default either.
        .recycle_timeout(match cfg.recycling_method {
            RecyclingMethod::Fast => None,
            _ => cfg.recycle_timeout,
        })
        .queue_mode(cfg.queue_mode);
    if let Some(n) = cfg.max_size {
        builder = builder.max_size(n);
    }
    let s = shared.clone();
    builder = builder.post_create(Hook::sync_fn(move |w, _| {
        hooks::post_create(&s, w);
        Ok(())
    }));
    let s = shared.clone();
    builder = builder.pre_recycle(Hook::sync_fn(move |w, _| hooks::pre_recycle(&s, w)));
    for h in user.post_create {
        builder = builder.post_create(h);
    }
    for h in user.pre_recycle {
        builder = builder.pre_recycle(h);
    }
    for h in user.post_recycle {
        builder = builder.post_recycle(h);
    }
    let inner = builder
        .build()
        .map_err(|e| ConfigError::new("pool", e.to_string()))?;
    // deadpool's default size (2 × the logical CPUs) may be below the floor the user
    // asked for; the pool holds the floor (prewarm would otherwise wait for ever for
    // sessions it cannot have). A `max_size` that is set is checked in `validate`.
    if cfg.max_size.is_none() && inner.status().max_size < cfg.min_connections {
        inner.resize(cfg.min_connections);
    }
    Ok(inner)
}
