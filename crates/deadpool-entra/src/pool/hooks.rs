//! Our hooks in front of the user's: `post_create` stores a new connection's retirement
//! plan, `pre_recycle` retires a due connection at checkout (when a replacement can log
//! in).

use std::time::Duration;

use deadpool_postgres::{ClientWrapper, HookError};
use tokio::time::Instant;

use crate::{
    checkout::{GET_CONTEXT, GetContext},
    retire::{
        RetireReason,
        gate::{Decision, decide},
        plan,
        spares::must_leave,
        table::Due,
    },
    shared::Shared,
};

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
    let plan = plan(
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
                || shared
                    .spares
                    .may_retire(shared.conns.live(), must_leave(&plan, reason, now)) =>
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
