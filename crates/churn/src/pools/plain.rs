//! `deadpool-postgres` pools: the baseline (static password) and per-connect (a token
//! fetched from the identity endpoint on every login). Both count their own logins.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{
    Connect, Hook, HookError, Manager, ManagerConfig, RecyclingMethod, Runtime,
};
use futures_util::future::BoxFuture;
use tokio::task::JoinHandle;

use super::mi::MiEndpoint;
use super::{Checkout, Occupancy, PoolCounters, PoolUnderTest, ReqError, ServerSettings};
use crate::pools::PoolKind;

/// Where a login's password comes from.
#[derive(Clone)]
pub enum Password {
    /// A fixed password (the baseline) or a token baked in (a rebuilt pool).
    Static(String),
    /// A fresh token from the identity endpoint for every login.
    PerConnect(Arc<MiEndpoint>),
}

/// Login counters shared by a `deadpool-postgres` pool's connector.
#[derive(Debug, Default)]
pub struct LoginCounters {
    /// Logins that worked.
    pub ok: AtomicU64,
    /// Logins that failed (including a failed token fetch).
    pub failed: AtomicU64,
}

/// A `deadpool_postgres::Connect` that sets the password per login and counts logins.
pub struct CountingConnect {
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    password: Password,
    logins: Arc<LoginCounters>,
}

impl Connect for CountingConnect {
    fn connect(
        &self,
        pg_config: &tokio_postgres::Config,
    ) -> BoxFuture<'_, Result<(tokio_postgres::Client, JoinHandle<()>), tokio_postgres::Error>>
    {
        let mut cfg = pg_config.clone();
        Box::pin(async move {
            match &self.password {
                Password::Static(p) => {
                    cfg.password(p.as_bytes());
                }
                Password::PerConnect(mi) => match mi.fetch().await {
                    Ok(t) => {
                        cfg.password(t.secret.as_bytes());
                    }
                    Err(e) => {
                        // `tokio_postgres::Error` has no public constructor: a failed fetch
                        // is reported by the login it spoils (an empty password is refused).
                        tracing::debug!(error = %e, "per-connect token fetch failed");
                        cfg.password("");
                    }
                },
            }
            match cfg.connect(self.tls.clone()).await {
                Ok((client, conn)) => {
                    self.logins.ok.fetch_add(1, Ordering::Relaxed);
                    let handle = tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    Ok((client, handle))
                }
                Err(e) => {
                    self.logins.failed.fetch_add(1, Ordering::Relaxed);
                    Err(e)
                }
            }
        })
    }
}

/// Builds a `deadpool_postgres::Pool` through a [`CountingConnect`].
pub fn build_pool(
    s: &ServerSettings,
    user: &str,
    password: Password,
    logins: Arc<LoginCounters>,
    application_name: &str,
    lifetime: Option<Duration>,
) -> Result<deadpool_postgres::Pool, String> {
    let mut cfg = tokio_postgres::Config::new();
    cfg.host(&s.host)
        .port(s.port)
        .dbname(&s.dbname)
        .user(user)
        .application_name(application_name)
        .connect_timeout(Duration::from_secs(10))
        .ssl_mode(tokio_postgres::config::SslMode::Require);
    let connect = CountingConnect {
        tls: s.tls.clone(),
        password,
        logins,
    };
    let mgr = Manager::from_connect(
        cfg,
        connect,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let mut builder = deadpool_postgres::Pool::builder(mgr)
        .max_size(s.max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(s.wait_timeout))
        .create_timeout(Some(Duration::from_secs(15)));
    if let Some(life) = lifetime {
        builder = builder.pre_recycle(Hook::sync_fn(move |w, m| {
            if m.age() >= own_lifetime(life, Arc::as_ptr(&w.statement_cache) as usize) {
                return Err(HookError::message("lifetime reached"));
            }
            Ok(())
        }));
    }
    builder
        .build()
        .map_err(|e| format!("building the pool: {e}"))
}

/// A connection's own lifetime: `life` ± 10 %, fixed per connection (from `key`, its
/// statement cache's address), so that connections made together do not leave together.
fn own_lifetime(life: Duration, key: usize) -> Duration {
    let spread = (key as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54; // 0..1024
    life.mul_f64(0.9 + 0.2 * spread as f64 / 1024.0)
}

/// The baseline or the per-connect pool.
pub struct PlainPool {
    kind: PoolKind,
    pool: deadpool_postgres::Pool,
    logins: Arc<LoginCounters>,
    mi: Option<Arc<MiEndpoint>>,
}

impl PlainPool {
    /// Plain `deadpool-postgres` with a static password role: the baseline.
    pub fn baseline(s: &ServerSettings, user: &str, password: &str) -> Result<PlainPool, String> {
        let logins = Arc::new(LoginCounters::default());
        let pool = build_pool(
            s,
            user,
            Password::Static(password.to_string()),
            logins.clone(),
            "churn-baseline",
            None,
        )?;
        Ok(PlainPool {
            kind: PoolKind::Baseline,
            pool,
            logins,
            mi: None,
        })
    }

    /// `deadpool-postgres` fetching a token for every login; with `lifetime`, each
    /// connection leaves after it (± 10 %), so that the pool logs in as often as one that
    /// retires connections on token rotation.
    pub fn per_connect(
        s: &ServerSettings,
        user: &str,
        mi: Arc<MiEndpoint>,
        lifetime: Option<Duration>,
    ) -> Result<PlainPool, String> {
        let logins = Arc::new(LoginCounters::default());
        let pool = build_pool(
            s,
            user,
            Password::PerConnect(mi.clone()),
            logins.clone(),
            "churn-per-connect",
            lifetime,
        )?;
        Ok(PlainPool {
            kind: PoolKind::PerConnect,
            pool,
            logins,
            mi: Some(mi),
        })
    }
}

impl PoolUnderTest for PlainPool {
    fn kind(&self) -> PoolKind {
        self.kind
    }

    fn get(&self) -> BoxFuture<'_, Result<Checkout, ReqError>> {
        Box::pin(async move {
            self.pool
                .get()
                .await
                .map(Checkout::Deadpool)
                .map_err(|e| super::classify_pool_error(&e))
        })
    }

    fn counters(&self) -> PoolCounters {
        let (calls, failures) = self
            .mi
            .as_ref()
            .map(|m| (m.calls(), m.failures()))
            .unwrap_or((0, 0));
        PoolCounters {
            logins: self.logins.ok.load(Ordering::Relaxed),
            login_failures: self.logins.failed.load(Ordering::Relaxed),
            token_refreshes: calls - failures,
            token_refresh_failures: failures,
            identity_calls: calls,
            retirements: Default::default(),
            logins_waited_for_token: None,
        }
    }

    fn occupancy(&self) -> Occupancy {
        self.pool.status().into()
    }

    fn close(&self) {
        self.pool.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_lifetimes_spread_within_ten_percent() {
        let life = Duration::from_secs(15);
        let lives: Vec<Duration> = (0..200)
            .map(|i| own_lifetime(life, 0x5600_0000 + i * 0x240))
            .collect();
        assert!(
            lives
                .iter()
                .all(|l| *l >= life.mul_f64(0.9) && *l <= life.mul_f64(1.1))
        );
        let shortest = lives.iter().min().expect("lives");
        let longest = lives.iter().max().expect("lives");
        assert!(
            *longest - *shortest > Duration::from_secs(2),
            "{shortest:?}..{longest:?}"
        );
    }
}
