//! The sqlx pools: `sqlx-entra` (ours on sqlx) and plain sqlx with a static password (its
//! baseline). Both use sqlx's defaults where churn sets nothing (a ping before each
//! acquire, as plain sqlx does), so that the ratio measures the adapter alone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ::sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions, PgSslMode},
};
use futures_util::future::BoxFuture;

use super::{Checkout, Occupancy, PoolCounters, PoolKind, PoolUnderTest, ReqError};

/// A sqlx pool under test.
pub struct SqlxPool {
    kind: PoolKind,
    pg: PgPool,
    /// Ours: the adapter's handle (stats, close).
    ours: Option<sqlx_entra::Pool>,
    /// The baseline's logins, counted in `after_connect`.
    logins: Arc<AtomicU64>,
}

impl SqlxPool {
    /// Wraps a built `sqlx-entra` pool.
    pub fn ours(pool: sqlx_entra::Pool) -> SqlxPool {
        SqlxPool {
            kind: PoolKind::SqlxOurs,
            pg: pool.pg().clone(),
            ours: Some(pool),
            logins: Arc::default(),
        }
    }

    /// Plain sqlx logging in to `host:port/dbname` as `user` with `password`, verify-full
    /// against `ca`.
    pub async fn baseline(
        host: &str,
        port: u16,
        dbname: &str,
        ca: &std::path::Path,
        (user, password): (&str, &str),
        max_size: usize,
        wait_timeout: Duration,
    ) -> Result<SqlxPool, String> {
        let options = PgConnectOptions::new_without_pgpass()
            .host(host)
            .port(port)
            .database(dbname)
            .username(user)
            .password(password)
            .ssl_mode(PgSslMode::VerifyFull)
            .ssl_root_cert(ca);
        let logins = Arc::new(AtomicU64::new(0));
        let counted = logins.clone();
        let pg = PgPoolOptions::new()
            .max_connections(u32::try_from(max_size).unwrap_or(u32::MAX))
            .acquire_timeout(wait_timeout)
            .after_connect(move |_, _| {
                counted.fetch_add(1, Ordering::Relaxed);
                Box::pin(async { Ok(()) })
            })
            .connect_with(options)
            .await
            .map_err(|e| format!("building the plain sqlx pool: {e}"))?;
        Ok(SqlxPool {
            kind: PoolKind::SqlxBaseline,
            pg,
            ours: None,
            logins,
        })
    }
}

/// Classifies a sqlx error (an acquire's or a query's): `timeout-wait`, `closed`,
/// `token-expired`, `sqlstate-XXXXX`, `io`, `tls`, `other`.
pub fn classify_sqlx(e: &::sqlx::Error) -> String {
    match e {
        ::sqlx::Error::PoolTimedOut => "timeout-wait".into(),
        ::sqlx::Error::PoolClosed => "closed".into(),
        ::sqlx::Error::Database(db) => {
            let msg = db.message().to_ascii_lowercase();
            if msg.contains("expired") {
                "token-expired".into()
            } else {
                format!("sqlstate-{}", db.code().as_deref().unwrap_or("?"))
            }
        }
        ::sqlx::Error::Io(_) => "io".into(),
        ::sqlx::Error::Tls(_) => "tls".into(),
        _ => "other".into(),
    }
}

/// A query error classified for reports.
pub fn classify_sqlx_query_error(e: &::sqlx::Error) -> ReqError {
    ReqError {
        kind: format!("query-{}", classify_sqlx(e)),
        message: e.to_string(),
    }
}

impl PoolUnderTest for SqlxPool {
    fn kind(&self) -> PoolKind {
        self.kind
    }

    fn get(&self) -> BoxFuture<'_, Result<Checkout, ReqError>> {
        Box::pin(async move {
            self.pg
                .acquire()
                .await
                .map(Checkout::Sqlx)
                .map_err(|e| ReqError {
                    kind: classify_sqlx(&e),
                    message: e.to_string(),
                })
        })
    }

    fn counters(&self) -> PoolCounters {
        match &self.ours {
            Some(p) => {
                let s = p.stats();
                let mut retirements = BTreeMap::new();
                retirements.insert("token-age".to_string(), s.retired_token_age);
                retirements.insert("max-lifetime".to_string(), s.retired_max_lifetime);
                PoolCounters {
                    logins: s.logins_ok,
                    login_failures: s.logins_failed,
                    token_refreshes: s.token.refreshes_ok,
                    token_refresh_failures: s.token.refreshes_failed,
                    identity_calls: s.token.identity_calls,
                    retirements,
                    logins_waited_for_token: None,
                }
            }
            None => PoolCounters {
                logins: self.logins.load(Ordering::Relaxed),
                ..PoolCounters::default()
            },
        }
    }

    fn occupancy(&self) -> Occupancy {
        let size = self.pg.size() as usize;
        Occupancy {
            size,
            available: self.pg.num_idle(),
            // sqlx does not count its waiters.
            waiting: 0,
        }
    }

    fn close(&self) {
        let pg = self.pg.clone();
        tokio::spawn(async move { pg.close().await });
    }

    fn extra(&self) -> Option<serde_json::Value> {
        self.ours
            .as_ref()
            .map(|p| serde_json::Value::String(format!("{:?}", p.stats())))
    }
}
