//! `deadpool-entra`, the pool under test.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::BoxFuture;

use super::{Checkout, Occupancy, PoolCounters, PoolUnderTest, ReqError};
use crate::pools::PoolKind;

/// Our pool; or several of ours on one `TokenProvider`, taking requests in turn.
pub struct OursPool {
    pool: deadpool_entra::Pool,
    /// More pools sharing `pool`'s token provider (`--replica-pool`).
    others: Vec<deadpool_entra::Pool>,
    next: AtomicUsize,
}

impl OursPool {
    /// Wraps a built pool.
    pub fn new(pool: deadpool_entra::Pool) -> OursPool {
        Self::several(pool, Vec::new())
    }

    /// Pools on one token provider: requests go to each in turn; token counters are
    /// the provider's (counted once), the others are summed.
    pub fn several(pool: deadpool_entra::Pool, others: Vec<deadpool_entra::Pool>) -> OursPool {
        OursPool {
            pool,
            others,
            next: AtomicUsize::new(0),
        }
    }

    fn all(&self) -> impl Iterator<Item = &deadpool_entra::Pool> {
        std::iter::once(&self.pool).chain(self.others.iter())
    }

    /// The pool that serves this request.
    fn pick(&self) -> &deadpool_entra::Pool {
        // One pool (every run but `--replica-pool`): no shared counter to bump, which would
        // cost ours a contended atomic per checkout that the baseline does not pay, and
        // share a cache line with the pool's handle.
        if self.others.is_empty() {
            return &self.pool;
        }
        let n = 1 + self.others.len();
        match self.next.fetch_add(1, Ordering::Relaxed) % n {
            0 => &self.pool,
            i => &self.others[i - 1],
        }
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

    fn get(&self) -> BoxFuture<'_, Result<Checkout, ReqError>> {
        Box::pin(async move {
            self.pick()
                .get()
                .await
                .map(Checkout::Deadpool)
                .map_err(|e| classify_entra(&e))
        })
    }

    fn counters(&self) -> PoolCounters {
        let s = self.pool.stats();
        let all: Vec<_> = self.all().map(|p| p.stats()).collect();
        let sum = |f: fn(&deadpool_entra::Stats) -> u64| all.iter().map(f).sum::<u64>();
        let mut retirements = BTreeMap::new();
        retirements.insert("token-age".to_string(), sum(|s| s.retired_token_age));
        retirements.insert("max-lifetime".to_string(), sum(|s| s.retired_max_lifetime));
        retirements.insert("broken".to_string(), sum(|s| s.retired_broken));
        PoolCounters {
            logins: sum(|s| s.logins_ok),
            login_failures: sum(|s| s.logins_failed),
            token_refreshes: s.token.refreshes_ok,
            token_refresh_failures: s.token.refreshes_failed,
            identity_calls: s.token.identity_calls,
            retirements,
            logins_waited_for_token: Some(sum(|s| s.logins_waited_for_token)),
        }
    }

    fn occupancy(&self) -> Occupancy {
        self.all()
            .map(|p| Occupancy::from(p.inner().status()))
            .fold(Occupancy::default(), |a, b| Occupancy {
                size: a.size + b.size,
                available: a.available + b.available,
                waiting: a.waiting + b.waiting,
            })
    }

    fn close(&self) {
        self.all().for_each(deadpool_entra::Pool::close);
    }

    fn extra(&self) -> Option<serde_json::Value> {
        if self.others.is_empty() {
            return serde_json::to_value(self.pool.stats()).ok();
        }
        serde_json::to_value(self.all().map(|p| p.stats()).collect::<Vec<_>>()).ok()
    }

    /// A spare logged in by the background is created by deadpool during the checkout
    /// but costs it no login: the pool knows when each connection logged in.
    fn logged_in_during(&self, client: &Checkout, t0: tokio::time::Instant) -> bool {
        let Checkout::Deadpool(client) = client else {
            return false;
        };
        // A connection deadpool recycled did not log in: ask the pool only about ones
        // deadpool created during this checkout (a login, or a spare taken), so that
        // the measurement adds no lookup to the warm path the baseline does not have.
        if !super::created_during(client, t0) {
            return false;
        }
        match self.all().find_map(|p| p.connection_info(client)) {
            Some(i) => i.logged_in_at >= t0.into_std(),
            None => true,
        }
    }
}
