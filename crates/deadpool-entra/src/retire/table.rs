//! Per-connection retirement plans, and the two hooks that keep them: `post_create`
//! records a new connection's plan, `pre_recycle` refuses one that is closed or due (when
//! a replacement can log in), so deadpool drops it and moves on to the next.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak},
    time::Duration,
};

use deadpool_postgres::{ClientWrapper, HookError, StatementCache};
use tokio::time::Instant;

use super::{
    RetirePlan, RetireReason,
    first_due::FirstDue,
    gate::{Decision, decide},
};
use crate::{
    connect::{GET_CONTEXT, GetContext},
    pool::Shared,
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
        crate::sync::write(&self.map)
    }

    pub(crate) fn read(&self) -> RwLockReadGuard<'_, HashMap<usize, ConnInfo>> {
        crate::sync::read(&self.map)
    }

    fn insert(
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
    pub(crate) fn settle(&self, map: &mut HashMap<usize, ConnInfo>) {
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
    fn scheduled_by(&self, w: &ClientWrapper, at: Instant) -> Option<Due> {
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

/// Our `post_create` hook: stores the connection's retirement plan.
pub(crate) fn post_create(shared: &Shared, w: &ClientWrapper) {
    let now = Instant::now();
    let record = GET_CONTEXT.try_with(GetContext::take_login).ok().flatten();
    let (addr, epoch) = record.map_or((None, shared.net.epoch()), |r| (r.addr, r.epoch));
    let (created, deadline) = match record {
        Some(r) => (r.created, r.token_deadline),
        None => {
            // Created outside our `Pool::get` (someone used the inner deadpool pool):
            // assume the current token, or the one it replaced if the swap happened
            // within the create timeout (the login may have used the older one).
            let current = shared.cache.peek().and_then(|t| t.deadline);
            let window = shared.create_timeout.unwrap_or(Duration::from_secs(30));
            let since = now.checked_sub(window).unwrap_or(now);
            let previous = shared.cache.previous_deadline_since(since);
            let d = match (current, previous) {
                (Some(c), Some(p)) => Some(c.min(p)),
                (c, p) => c.or(p),
            };
            (now, d)
        }
    };
    let plan = super::plan(
        &shared.retire,
        created,
        deadline,
        shared.spread.next(),
        rand::random(),
    );
    shared.conns.insert(w, plan, created, addr, epoch);
}

/// Our `pre_recycle` hook: refuses connections that are closed, or due for retirement
/// while a replacement can log in, so deadpool drops them and moves on to the next one.
pub(crate) fn pre_recycle(shared: &Shared, w: &ClientWrapper) -> Result<(), HookError> {
    if w.is_closed() {
        shared.conns.remove(w);
        shared.counters.count_retired(RetireReason::Broken, 1);
        tracing::debug!(target: "deadpool_entra", reason = "broken", "connection retired");
        return Err(HookError::message("connection closed"));
    }
    // The checkout's start, which it read anyway (one clock read per checkout); the
    // clock when the inner pool is used directly.
    let now = GET_CONTEXT
        .try_with(|c| c.began)
        .ok()
        .flatten()
        .unwrap_or_else(Instant::now);
    let plan = match shared.conns.scheduled_by(w, now) {
        None => return Ok(()),
        Some(Due::Stale) => {
            let gate = shared.gate(now);
            if !(gate.unconditional || gate.logins_ok_since.is_some()) {
                return Ok(());
            }
            shared.conns.remove(w);
            shared
                .counters
                .count_retired(RetireReason::AddressChanged, 1);
            tracing::debug!(target: "deadpool_entra", reason = "address_changed", "connection retired");
            return Err(HookError::message(
                "connection retired: the server's name now resolves to another address",
            ));
        }
        Some(Due::Scheduled(plan)) => plan,
    };
    let gate = shared.gate(now);
    match decide(&plan, &gate, now) {
        // Kept until a spare can take its place (the sweeper is having one logged in),
        // unless none could be made: the caller is served now, by this connection.
        Decision::Retire(reason)
            if gate.unconditional
                || shared.spares.may_retire(
                    shared.conns.live(),
                    super::spares::must_leave(&plan, reason, now),
                ) =>
        {
            shared.conns.remove(w);
            shared.counters.count_retired(reason, 1);
            tracing::debug!(target: "deadpool_entra", reason = reason.as_str(), "connection retired");
            Err(HookError::message(match reason {
                RetireReason::TokenAge => "connection retired: its login token is about to expire",
                _ => "connection retired: maximum lifetime reached",
            }))
        }
        Decision::Retire(_) => {
            // Held for a spare: have the sweeper log one in now, not at its next sweep.
            shared.sweep_now.notify_one();
            Ok(())
        }
        Decision::Overdue(_) | Decision::Keep => Ok(()),
    }
}

/// The live connections seen at one moment, for stats and the sweeper's warnings.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Survey {
    /// Due for retirement, kept in service until a replacement can log in.
    pub(crate) overdue: usize,
    /// Serving on a session whose login token has expired (the server allows it).
    pub(crate) past_token_expiry: usize,
    /// The earliest expiry among the tokens live sessions logged in with.
    pub(crate) oldest_token_expiry: Option<Instant>,
}

impl Survey {
    /// Counts one session with retirement plan `plan`.
    pub(crate) fn count(&mut self, plan: &RetirePlan, gate: &super::gate::Gate, now: Instant) {
        if matches!(decide(plan, gate, now), Decision::Overdue(_)) {
            self.overdue += 1;
        }
        if let Some(e) = plan.token_expiry {
            if e <= now {
                self.past_token_expiry += 1;
            }
            self.oldest_token_expiry = Some(self.oldest_token_expiry.map_or(e, |o| o.min(e)));
        }
    }
}

impl ConnTable {
    /// Counts what the live connections are doing at `now`, given `gate`, into `s`.
    pub(crate) fn survey_into(&self, s: &mut Survey, gate: &super::gate::Gate, now: Instant) {
        let map = self.read();
        for info in map.values().filter(|i| i.alive.strong_count() > 0) {
            s.count(&info.plan, gate, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Weak, time::Duration};

    use tokio::time::Instant;

    use super::*;
    use crate::RetirePolicy;

    #[tokio::test(start_paused = true)]
    async fn settle_forgets_dead_connections_and_raises_the_first_due_time() {
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
        table.settle(&mut map);
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
