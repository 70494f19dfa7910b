//! `deadpool-entra`, the pool under test.

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;

use super::{Occupancy, PoolCounters, PoolUnderTest, ReqError};
use crate::cli::PoolKind;

/// Our pool.
pub struct OursPool {
    pool: deadpool_entra::Pool,
}

impl OursPool {
    /// Wraps a built pool.
    pub fn new(pool: deadpool_entra::Pool) -> OursPool {
        OursPool { pool }
    }
}

/// The error's stable kind (`Error::kind`): `token-expired`, `timeout-wait`, ...
pub fn classify_entra(e: &deadpool_entra::Error) -> ReqError {
    ReqError {
        kind: e.kind().as_str().to_owned(),
        message: e.to_string(),
    }
}

impl PoolUnderTest for OursPool {
    fn kind(&self) -> PoolKind {
        PoolKind::Ours
    }

    fn get(&self) -> BoxFuture<'_, Result<deadpool_postgres::Client, ReqError>> {
        Box::pin(async move { self.pool.get().await.map_err(|e| classify_entra(&e)) })
    }

    fn counters(&self) -> PoolCounters {
        let s = self.pool.stats();
        let mut retirements = BTreeMap::new();
        retirements.insert("token-age".to_string(), s.retired_token_age);
        retirements.insert("max-lifetime".to_string(), s.retired_max_lifetime);
        retirements.insert("broken".to_string(), s.retired_broken);
        PoolCounters {
            logins: s.logins_ok,
            login_failures: s.logins_failed,
            token_refreshes: s.token.refreshes_ok,
            token_refresh_failures: s.token.refreshes_failed,
            identity_calls: s.token.identity_calls,
            retirements,
            logins_waited_for_token: Some(s.logins_waited_for_token),
        }
    }

    fn occupancy(&self) -> Occupancy {
        self.pool.inner().status().into()
    }

    fn close(&self) {
        self.pool.close();
    }

    fn extra(&self) -> Option<serde_json::Value> {
        serde_json::to_value(self.pool.stats()).ok()
    }

    /// A spare logged in by the background is created by deadpool during the checkout
    /// but costs it no login: the pool knows when each connection logged in.
    fn logged_in_during(
        &self,
        client: &deadpool_postgres::Client,
        t0: tokio::time::Instant,
    ) -> bool {
        match self.pool.connection_info(client) {
            Some(i) => i.logged_in_at >= t0.into_std(),
            None => super::created_during(client, t0),
        }
    }
}
