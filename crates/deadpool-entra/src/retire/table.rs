//! Per-connection retirement plans, and the two hooks that keep them: `post_create`
//! records a new connection's plan, `pre_recycle` refuses one that is closed or due (when
//! a replacement can log in), so deadpool drops it and moves on to the next.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak},
};

use deadpool_postgres::{ClientWrapper, StatementCache};
use tokio::time::Instant;

use super::{
    RetirePlan,
    first_due::FirstDue,
    gate::{Decision, decide},
};

pub(crate) struct ConnInfo {
    pub(crate) alive: Weak<StatementCache>,
    pub(crate) plan: RetirePlan,
    /// When it logged in.
    pub(crate) created: Instant,
    /// The server address it logged in to (`None`: not known).
    pub(crate) addr: Option<IpAddr>,
    /// The network suspicion epoch at which it last proved alive (its login, or a
    /// liveness check).
    pub(crate) checked_epoch: u64,
    /// The server's name no longer resolves to its address: retire it (when a
    /// replacement can log in).
    pub(crate) stale: bool,
}

/// What the checkout path must do with a connection that may be due.
pub(crate) enum Due {
    /// Its address is no longer the server's.
    Stale,
    /// Scheduled to retire by now.
    Scheduled(RetirePlan),
}

/// Per-connection login facts, keyed by the address of the connection's statement
/// cache (unique while the connection lives; entries of dead connections are swept).
#[derive(Default)]
pub(crate) struct ConnTable {
    // Read on checkouts that may meet a due connection, written on every login and
    // retirement: a read-mostly lock.
    map: RwLock<HashMap<usize, ConnInfo>>,
    /// Lets checkouts before the first due time skip the lock.
    first_due: FirstDue,
}

pub(crate) fn key(w: &ClientWrapper) -> usize {
    Arc::as_ptr(&w.statement_cache) as usize
}

impl ConnTable {
    pub(crate) fn write(&self) -> RwLockWriteGuard<'_, HashMap<usize, ConnInfo>> {
        entra_pg_token::sync::write(&self.map)
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, HashMap<usize, ConnInfo>> {
        entra_pg_token::sync::read(&self.map)
    }

    pub(crate) fn insert(
        &self,
        w: &ClientWrapper,
        plan: RetirePlan,
        created: Instant,
        addr: Option<IpAddr>,
        epoch: u64,
    ) {
        let mut map = self.write();
        map.insert(
            key(w),
            ConnInfo {
                alive: Arc::downgrade(&w.statement_cache),
                plan,
                created,
                addr,
                checked_epoch: epoch,
                stale: false,
            },
        );
        self.first_due.lower_to(plan.earliest.map(|(t, _)| t));
    }

    /// Forgets connections that left the pool some other way, and sets the first due
    /// time to the remaining ones' (under the write lock `map` comes from); a stale
    /// connection is due now.
    pub(crate) fn prune_and_reschedule(&self, map: &mut HashMap<usize, ConnInfo>) {
        map.retain(|_, i| i.alive.strong_count() > 0);
        self.first_due.set(
            map.values()
                .filter_map(|i| {
                    if i.stale {
                        Some(i.created)
                    } else {
                        i.plan.earliest.map(|(t, _)| t)
                    }
                })
                .min(),
        );
    }

    /// Marks the connections whose address is not in `current` as stale (and the others
    /// not), so that they retire; returns how many are stale.
    pub(crate) fn mark_stale(&self, current: &[IpAddr]) -> usize {
        let mut map = self.write();
        let mut n = 0;
        let mut earliest = None;
        for i in map.values_mut() {
            i.stale = i.addr.is_some_and(|a| !current.contains(&a));
            if i.stale && i.alive.strong_count() > 0 {
                n += 1;
                earliest = Some(earliest.map_or(i.created, |e: Instant| e.min(i.created)));
            }
        }
        self.first_due.lower_to(earliest);
        n
    }

    /// The address of a connection that has not proved alive at suspicion epoch
    /// `epoch` (`Some(None)`: address unknown), or `None` when it has.
    pub(crate) fn unchecked(&self, w: &ClientWrapper, epoch: u64) -> Option<Option<IpAddr>> {
        let map = self.read();
        let info = map.get(&key(w))?;
        (info.checked_epoch < epoch).then_some(info.addr)
    }

    /// The keys of the live connections to `addr` (any address when unknown) that have
    /// not proved alive at epoch `epoch`.
    pub(crate) fn unchecked_at(
        &self,
        addr: Option<IpAddr>,
        epoch: u64,
    ) -> std::collections::HashSet<usize> {
        self.read()
            .iter()
            .filter(|(_, i)| i.alive.strong_count() > 0 && i.checked_epoch < epoch)
            .filter(|(_, i)| addr.is_none() || i.addr == addr)
            .map(|(k, _)| *k)
            .collect()
    }

    /// A connection proved alive at epoch `epoch`.
    pub(crate) fn mark_checked(&self, w: &ClientWrapper, epoch: u64) {
        if let Some(i) = self.write().get_mut(&key(w)) {
            i.checked_epoch = i.checked_epoch.max(epoch);
        }
    }

    /// Whether every live connection has proved alive at epoch `epoch` or later.
    pub(crate) fn all_checked(&self, epoch: u64) -> bool {
        self.read()
            .values()
            .filter(|i| i.alive.strong_count() > 0)
            .all(|i| i.checked_epoch >= epoch)
    }

    /// Live connections whose address the server's name no longer resolves to.
    pub(crate) fn stale(&self) -> usize {
        self.read()
            .values()
            .filter(|i| i.stale && i.alive.strong_count() > 0)
            .count()
    }

    /// The login time and plan of a live connection.
    pub(crate) fn info(&self, w: &ClientWrapper) -> Option<(Instant, RetirePlan)> {
        self.read().get(&key(w)).map(|i| (i.created, i.plan))
    }

    /// How many live connections will be due, and replaceable, at `at` given `gate`.
    pub(crate) fn due_by(&self, gate: &super::gate::Gate, at: Instant) -> usize {
        self.read()
            .values()
            .filter(|i| i.alive.strong_count() > 0)
            .filter(|i| matches!(decide(&i.plan, gate, at), Decision::Retire(_)))
            .count()
    }

    /// How many connections are alive (idle or in use).
    pub(crate) fn live(&self) -> usize {
        self.read()
            .values()
            .filter(|i| i.alive.strong_count() > 0)
            .count()
    }

    pub(crate) fn remove(&self, w: &ClientWrapper) {
        self.write().remove(&key(w));
    }

    /// Whether the connection is stale or scheduled to retire by `at` (the fast path: an
    /// atomic load before the first due time, one read lock after it, no gate).
    #[inline]
    pub(crate) fn scheduled_by(&self, w: &ClientWrapper, at: Instant) -> Option<Due> {
        if !self.first_due.may_be_due(at) {
            return None;
        }
        let map = self.read();
        let info = map.get(&key(w))?;
        if info.stale {
            return Some(Due::Stale);
        }
        let plan = info.plan;
        plan.earliest
            .filter(|(t, _)| *t <= at)
            .map(|_| Due::Scheduled(plan))
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Weak, time::Duration};

    use tokio::time::Instant;

    use super::*;
    use crate::retire::RetirePolicy;

    #[tokio::test(start_paused = true)]
    async fn pruning_forgets_dead_connections_and_raises_the_first_due_time() {
        let table = ConnTable::default();
        let now = Instant::now();
        let expiry = now + Duration::from_secs(3600);
        let plan = super::super::plan(&RetirePolicy::default(), now, Some(expiry), 0.5, 0.5);
        let due = plan.earliest.expect("retires by token age").0;
        {
            let mut map = table.write();
            let info = ConnInfo {
                alive: Weak::new(),
                plan,
                created: now,
                addr: None,
                checked_epoch: 0,
                stale: false,
            };
            map.insert(1, info);
            table.first_due.lower_to(Some(due));
        }
        assert!(table.first_due.may_be_due(due));
        let mut map = table.write();
        table.prune_and_reschedule(&mut map);
        assert!(
            map.is_empty(),
            "a connection whose client is gone is forgotten"
        );
        drop(map);
        assert!(
            !table
                .first_due
                .may_be_due(due + Duration::from_secs(1_000_000)),
            "nothing left is due"
        );
    }
}
