//! The "rebuild" pattern of several Azure guides: a `deadpool-postgres` pool built with a
//! token as its password, closed and replaced by a new pool with a fresh token on a timer
//! (at half the token's remaining lifetime). Callers waiting on the old pool fail.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::task::JoinHandle;

use super::mi::MiEndpoint;
use super::plain::{LoginCounters, Password, build_pool};
use super::{Occupancy, PoolCounters, PoolUnderTest, ReqError, ServerSettings};
use crate::pools::PoolKind;

struct Shared {
    current: RwLock<deadpool_postgres::Pool>,
    logins: Arc<LoginCounters>,
    rebuilds: AtomicU64,
    mi: Arc<MiEndpoint>,
}

/// A pool replaced on a timer.
pub struct RebuildPool {
    shared: Arc<Shared>,
    timer: JoinHandle<()>,
}

impl RebuildPool {
    /// Fetches a token, builds the first pool and starts the timer.
    pub async fn start(
        s: &ServerSettings,
        user: &str,
        mi: Arc<MiEndpoint>,
    ) -> Result<RebuildPool, String> {
        let logins = Arc::new(LoginCounters::default());
        let token = mi.fetch().await?;
        let pool = build_pool(
            s,
            user,
            Password::Static(token.secret.clone()),
            logins.clone(),
            "churn-rebuild",
            None,
        )?;
        let shared = Arc::new(Shared {
            current: RwLock::new(pool),
            logins,
            rebuilds: AtomicU64::new(0),
            mi,
        });
        let timer = tokio::spawn(rebuild_loop(
            shared.clone(),
            s.clone(),
            user.to_string(),
            token.remaining(),
        ));
        Ok(RebuildPool { shared, timer })
    }
}

async fn rebuild_loop(
    shared: Arc<Shared>,
    s: ServerSettings,
    user: String,
    mut remaining: Duration,
) {
    loop {
        let wait = (remaining / 2).max(Duration::from_secs(1));
        tokio::time::sleep(wait).await;
        match shared.mi.fetch().await {
            Ok(token) => {
                remaining = token.remaining();
                match build_pool(
                    &s,
                    &user,
                    Password::Static(token.secret.clone()),
                    shared.logins.clone(),
                    "churn-rebuild",
                    None,
                ) {
                    Ok(new) => {
                        let old = {
                            let mut cur = shared.current.write().unwrap_or_else(|p| p.into_inner());
                            std::mem::replace(&mut *cur, new)
                        };
                        old.close();
                        shared.rebuilds.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "rebuild: building the new pool failed");
                        remaining = Duration::from_secs(2);
                    }
                }
            }
            Err(e) => {
                // The pattern has no better answer than to keep the old pool and retry.
                tracing::debug!(error = %e, "rebuild: token fetch failed");
                remaining = Duration::from_secs(2);
            }
        }
    }
}

impl PoolUnderTest for RebuildPool {
    fn kind(&self) -> PoolKind {
        PoolKind::Rebuild
    }

    fn get(&self) -> BoxFuture<'_, Result<super::Checkout, ReqError>> {
        let pool = self
            .shared
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Box::pin(async move {
            pool.get()
                .await
                .map(super::Checkout::Deadpool)
                .map_err(|e| super::classify_pool_error(&e))
        })
    }

    fn counters(&self) -> PoolCounters {
        let rebuilds = self.shared.rebuilds.load(Ordering::Relaxed);
        let mut retirements = BTreeMap::new();
        retirements.insert("pool-rebuilt".to_string(), rebuilds);
        let calls = self.shared.mi.calls();
        let failures = self.shared.mi.failures();
        PoolCounters {
            logins: self.shared.logins.ok.load(Ordering::Relaxed),
            login_failures: self.shared.logins.failed.load(Ordering::Relaxed),
            token_refreshes: calls - failures,
            token_refresh_failures: failures,
            identity_calls: calls,
            retirements,
            logins_waited_for_token: None,
        }
    }

    fn occupancy(&self) -> Occupancy {
        self.shared
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .status()
            .into()
    }

    fn close(&self) {
        self.timer.abort();
        self.shared
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .close();
    }
}
