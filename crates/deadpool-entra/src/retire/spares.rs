//! Spares: connections logged in by the background before a checkout needs them.
//!
//! deadpool creates a connection only inside a checkout that finds no idle one, and has
//! no way to add one from outside. So the background logs in *spares* and holds them;
//! our `Connect` hands a spare to the next creation deadpool asks for, which then costs
//! no login. The sweeper decides how many to make ([`to_start`]): one for each
//! connection that will be due for retirement within a few sweeps (so that its
//! replacement exists before it leaves), and enough to keep `min_connections`.
//!
//! Spares log in with the cached token only when it is not the outgoing one (past its
//! refresh point) and logins are succeeding; a spare that breaks or falls due before it
//! is used is dropped like any connection.

use std::sync::{
    Mutex,
    atomic::{AtomicUsize, Ordering},
};

use tokio::{task::JoinHandle, time::Instant};
use tokio_postgres::Client as PgClient;

use super::{
    RetirePlan, RetireReason,
    gate::{Decision, Gate, decide},
    survey::Survey,
};
use crate::checkout::LoginRecord;
use entra_pg_token::sync::lock;

/// At most this many background logins run at once: a rotation of a hundred connections
/// is never a hundred simultaneous logins.
pub(crate) const MAX_BACKGROUND_LOGINS: usize = 2;

/// How many sessions a replacement may add over `max_size`, for the moments between its
/// login and the retirement of the connection it replaces (a full pool could not
/// replace ahead of time otherwise). The `min_connections` floor never goes over.
pub(crate) const SURGE: usize = 1;

/// A connection logged in by the background, not yet handed to a checkout.
pub(crate) struct Spare {
    pub(crate) client: PgClient,
    pub(crate) conn: JoinHandle<()>,
    pub(crate) record: LoginRecord,
    pub(crate) plan: RetirePlan,
}

/// The spares and the background logins in flight.
#[derive(Default)]
pub(crate) struct Spares {
    ready: Mutex<Vec<Spare>>,
    pub(crate) in_flight: AtomicUsize,
    /// Spares that stand for connections already retired (each retirement claims one,
    /// each handover fulfils one). A claimed spare that expires before it is used stays
    /// claimed, and is logged in again: the pool stays as warm as it was.
    claimed: AtomicUsize,
    /// The pool's `max_size`, as the sweeper last saw it (`resize()` changes it).
    pub(crate) max_size: AtomicUsize,
}

impl Spares {
    /// Spares ready now.
    pub(crate) fn ready(&self) -> usize {
        lock(&self.ready).len()
    }

    /// Background logins in flight.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Ready spares that no retirement has claimed.
    pub(crate) fn free(&self) -> usize {
        let ready = lock(&self.ready).len();
        ready.saturating_sub(self.claimed.load(Ordering::Acquire))
    }

    /// Spares claimed by retired connections (ready or owed).
    pub(crate) fn claimed(&self) -> usize {
        self.claimed.load(Ordering::Acquire)
    }

    /// Claimed spares that are not ready (they expired unused): to log in again.
    pub(crate) fn owed(&self) -> usize {
        let ready = lock(&self.ready).len();
        self.claimed.load(Ordering::Acquire).saturating_sub(ready)
    }

    /// Whether a due connection may leave now, given `live` connections in the pool: a
    /// free spare takes its place (claimed here), or none could be made (the pool and
    /// its ready spares are at `max_size` + [`SURGE`]), or it must leave (`must_leave`:
    /// past the end of its token-age window, where waiting for a spare would keep it
    /// past its schedule). A spare still logging in is not a session yet: the
    /// connection waits for it.
    pub(crate) fn may_retire(&self, live: usize, must_leave: bool) -> bool {
        let ready = lock(&self.ready);
        let claimed = self.claimed.load(Ordering::Acquire);
        if ready.len() > claimed {
            self.claimed.store(claimed + 1, Ordering::Release);
            return true;
        }
        let sessions = live.saturating_add(ready.len());
        must_leave || sessions >= self.max_size.load(Ordering::Acquire).saturating_add(SURGE)
    }

    /// The spare with the newest login that is open and not due at `now`; failing that,
    /// one that is due but not past its window's end (a session that serves: better than
    /// a login in the checkout). `None`: no such spare; the others stay for
    /// [`Spares::expire`].
    pub(crate) fn take(&self, gate: &Gate, now: Instant) -> Option<Spare> {
        let mut ready = lock(&self.ready);
        let open = |s: &&Spare| !s.client.is_closed();
        let i = ready
            .iter()
            .rposition(|s| open(&s) && usable(&s.plan, gate, now))
            .or_else(|| {
                ready
                    .iter()
                    .rposition(|s| open(&s) && !past_window(&s.plan, gate, now))
            })?;
        // A handover fulfils a claim, if any stands.
        let claimed = self.claimed.load(Ordering::Acquire);
        self.claimed
            .store(claimed.saturating_sub(1), Ordering::Release);
        Some(ready.remove(i))
    }

    /// How many ready spares will be due (and replaceable) at `at`: their replacements
    /// are logged in ahead, as for the pool's connections.
    pub(crate) fn due_by(&self, gate: &Gate, at: Instant) -> usize {
        lock(&self.ready)
            .iter()
            .filter(|s| matches!(decide(&s.plan, gate, at), Decision::Retire(_)))
            .count()
    }

    /// Drops the spares that are closed, or due at `now` and replaceable, given `live`
    /// connections in the pool and its `min_connections` floor; returns why each left.
    /// A due spare leaves as a due connection does: only while the spares left after it
    /// still stand for every retired connection (the claims) and the floor, unless it
    /// must leave (past its window's end) or no replacement could be made (the pool and
    /// its spares are at `max_size` + [`SURGE`]). Several due together leave one by one
    /// as their replacements log in, never all at once.
    pub(crate) fn expire(
        &self,
        gate: &Gate,
        now: Instant,
        live: usize,
        floor: usize,
    ) -> Vec<RetireReason> {
        let mut gone = Vec::new();
        let mut dropped = Vec::new();
        {
            let mut ready = lock(&self.ready);
            let keep = spares_to_keep(self.claimed.load(Ordering::Acquire), live, floor);
            let max_size = self.max_size.load(Ordering::Acquire);
            let mut i = 0;
            while i < ready.len() {
                let s = &ready[i];
                let why = if s.client.is_closed() {
                    Some(RetireReason::Broken)
                } else {
                    match decide(&s.plan, gate, now) {
                        // `retire_without_replacement`: on schedule, whatever.
                        Decision::Retire(r)
                            if gate.unconditional
                                || due_spare_may_leave(
                                    ready.len(),
                                    keep,
                                    must_leave(&s.plan, r, now),
                                    live,
                                    max_size,
                                ) =>
                        {
                            Some(r)
                        }
                        _ => None,
                    }
                };
                match why {
                    Some(r) => {
                        gone.push(r);
                        dropped.push(ready.remove(i));
                    }
                    None => i += 1,
                }
            }
        }
        drop(dropped);
        gone
    }

    /// Counts the ready spares into `s`: they are sessions too, and may be the only ones
    /// an idle pool has.
    pub(crate) fn survey_into(&self, s: &mut Survey, gate: &Gate, now: Instant) {
        for spare in lock(&self.ready).iter() {
            s.count(&spare.plan, gate, now);
        }
    }

    /// Drops every spare (the pool closed).
    pub(crate) fn clear(&self) {
        let all = {
            let mut ready = lock(&self.ready);
            self.claimed.store(0, Ordering::Release);
            std::mem::take(&mut *ready)
        };
        drop(all);
    }

    /// Adds a spare, unless the pool has closed: checked under the lock that
    /// [`Spares::clear`] takes after the pool is marked closed, so that a spare whose
    /// login ends during a close is either cleared with the others or refused here
    /// (its session ends here), never kept. Returns whether it was kept.
    pub(crate) fn put(&self, s: Spare, closed: &tokio::sync::watch::Sender<bool>) -> bool {
        let mut ready = lock(&self.ready);
        if *closed.borrow() {
            drop(ready);
            drop(s);
            return false;
        }
        ready.push(s);
        true
    }
}

/// How many ready spares must stay while due ones leave: one for each retired
/// connection they stand for (`claimed`), or what the pool's `live` connections lack of
/// the `floor` (`min_connections`), the larger.
fn spares_to_keep(claimed: usize, live: usize, floor: usize) -> usize {
    claimed.max(floor.saturating_sub(live))
}

/// Whether a due spare may leave, with `ready` spares (itself included), `keep` of them
/// to stay, `live` connections in the pool: while more than `keep` are ready, when it
/// `must_leave` (past its window's end), or when no replacement could be made (the pool
/// and its spares at `max_size` + [`SURGE`]).
fn due_spare_may_leave(
    ready: usize,
    keep: usize,
    must_leave: bool,
    live: usize,
    max_size: usize,
) -> bool {
    ready > keep || must_leave || live.saturating_add(ready) >= max_size.saturating_add(SURGE)
}

/// Whether a connection due for `reason` at `now` is past the end of its token-age
/// window (its latest scheduled moment): then it leaves without waiting for a spare.
pub(crate) fn must_leave(plan: &RetirePlan, reason: RetireReason, now: Instant) -> bool {
    reason == RetireReason::TokenAge && plan.token_window.is_some_and(|(_, end)| now >= end)
}

/// A spare may be handed over unless it is due (its own replacement could log in).
fn usable(plan: &RetirePlan, gate: &Gate, now: Instant) -> bool {
    !matches!(decide(plan, gate, now), Decision::Retire(_))
}

/// Due and past the end of its token-age window: it must leave.
fn past_window(plan: &RetirePlan, gate: &Gate, now: Instant) -> bool {
    matches!(decide(plan, gate, now), Decision::Retire(r) if must_leave(plan, r, now))
}

/// What the sweeper knows when it decides how many background logins to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Need {
    /// Connections in the pool that will be due (and replaceable) within the lookahead.
    pub(crate) due_soon: usize,
    /// Connections in the pool (idle and in use), plus the claimed spares (they stand
    /// for connections that have left).
    pub(crate) size: usize,
    pub(crate) max_size: usize,
    pub(crate) min_connections: usize,
    /// Spares ready and not claimed.
    pub(crate) ready: usize,
    /// Claimed spares that expired unused: to log in again.
    pub(crate) owed: usize,
    /// Background logins in flight.
    pub(crate) in_flight: usize,
}

/// How many background logins to start now: enough spares for the connections due
/// soon (at most [`SURGE`] sessions over `max_size`), the owed ones, and those missing
/// to `min_connections` (within `max_size`), less what is ready or in flight, at most
/// [`MAX_BACKGROUND_LOGINS`] at once.
pub(crate) fn to_start(n: &Need) -> usize {
    let floor = n.min_connections.min(n.max_size).saturating_sub(n.size);
    // `size` counts owed spares already (they are claimed).
    let room = n
        .max_size
        .saturating_add(SURGE)
        .saturating_sub(n.size.saturating_sub(n.owed));
    let wanted = n
        .due_soon
        .saturating_add(n.owed)
        .saturating_add(floor)
        .min(room);
    wanted
        .saturating_sub(n.ready + n.in_flight)
        .min(MAX_BACKGROUND_LOGINS.saturating_sub(n.in_flight))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn need(due_soon: usize, size: usize, min: usize, ready: usize, in_flight: usize) -> Need {
        Need {
            due_soon,
            size,
            max_size: 8,
            min_connections: min,
            ready,
            owed: 0,
            in_flight,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn past_its_token_window_a_connection_leaves_without_waiting_for_a_spare() {
        let created = Instant::now();
        let expiry = created + Duration::from_secs(30);
        // 30 s token: window [13.5 s, 27 s] after login.
        let plan = super::super::plan(
            &crate::retire::RetirePolicy::default(),
            created,
            Some(expiry),
            0.5,
            0.5,
        );
        let at = |s: u64| created + Duration::from_secs(s);
        assert!(!must_leave(&plan, RetireReason::TokenAge, at(20)));
        assert!(must_leave(&plan, RetireReason::TokenAge, at(27)));
        assert!(must_leave(&plan, RetireReason::TokenAge, at(40)));
        assert!(!must_leave(&plan, RetireReason::MaxLifetime, at(40)));
        assert!(!must_leave(&plan, RetireReason::Broken, at(40)));
    }

    #[test]
    fn without_a_spare_a_due_connection_leaves_only_when_none_could_be_made_or_it_must() {
        let spares = Spares::default();
        spares.max_size.store(4, Ordering::Release);
        assert!(
            !spares.may_retire(4, false),
            "room for a spare: wait for it"
        );
        assert!(
            spares.may_retire(5, false),
            "max_size + 1 sessions: no room"
        );
        assert!(spares.may_retire(0, true), "past its window");
        spares.in_flight.store(1, Ordering::Release);
        assert!(
            !spares.may_retire(4, false),
            "a spare still logging in is not a session yet: wait for it"
        );
        assert_eq!(spares.claimed(), 0, "no spare was claimed");
    }

    #[test]
    fn due_spares_leave_one_by_one_as_replacements_stand_for_the_claims_and_floor() {
        // What stays: the claims, or the floor's shortfall in the pool, the larger.
        assert_eq!(spares_to_keep(0, 0, 4), 4, "an idle pool's floor");
        assert_eq!(spares_to_keep(2, 3, 4), 2, "the claims, over a met floor");
        assert_eq!(spares_to_keep(2, 1, 4), 3, "the floor, over fewer claims");
        assert_eq!(spares_to_keep(0, 9, 4), 0);
        // Four claimed spares due, one fresh replacement: one leaves, then none.
        assert!(due_spare_may_leave(5, 4, false, 0, 4));
        assert!(!due_spare_may_leave(4, 4, false, 0, 4));
        assert!(due_spare_may_leave(4, 4, true, 0, 4), "past its window");
        assert!(
            due_spare_may_leave(1, 4, false, 4, 4),
            "max_size + 1 sessions: no replacement could be made"
        );
        assert!(!due_spare_may_leave(1, 4, false, 3, 4));
    }

    #[test]
    fn claimed_spares_that_expired_are_logged_in_again() {
        // 4 connections retired while idle, their spares expired unused: size counts the
        // 4 claims, all owed.
        let n = Need {
            owed: 4,
            ..need(0, 4, 0, 0, 0)
        };
        assert_eq!(to_start(&n), 2);
        let n = Need {
            owed: 4,
            ..need(0, 4, 0, 0, 2)
        };
        assert_eq!(to_start(&n), 0);
        let n = Need {
            owed: 1,
            ..need(0, 8, 0, 0, 0)
        };
        assert_eq!(to_start(&n), 1);
    }

    #[test]
    fn one_spare_per_connection_due_soon_at_most_two_logins_at_once() {
        assert_eq!(to_start(&need(0, 4, 0, 0, 0)), 0);
        assert_eq!(to_start(&need(1, 4, 0, 0, 0)), 1);
        assert_eq!(to_start(&need(5, 4, 0, 0, 0)), 2);
        assert_eq!(to_start(&need(5, 4, 0, 0, 1)), 1);
        assert_eq!(to_start(&need(5, 4, 0, 0, 2)), 0);
        // Ready spares count.
        assert_eq!(to_start(&need(3, 4, 0, 2, 0)), 1);
        assert_eq!(to_start(&need(3, 4, 0, 3, 0)), 0);
    }

    #[test]
    fn a_full_pool_replaces_ahead_with_one_session_over_max_size() {
        assert_eq!(to_start(&need(4, 8, 0, 0, 0)), 1);
        assert_eq!(to_start(&need(4, 8, 0, 1, 0)), 0);
        assert_eq!(to_start(&need(4, 9, 0, 0, 0)), 0);
    }

    #[test]
    fn the_floor_fills_to_min_connections_within_max_size() {
        assert_eq!(to_start(&need(0, 0, 4, 0, 0)), 2);
        assert_eq!(to_start(&need(0, 0, 4, 2, 0)), 2);
        assert_eq!(to_start(&need(0, 2, 4, 2, 0)), 0);
        assert_eq!(to_start(&need(0, 3, 4, 0, 0)), 1);
        // Never over max_size for the floor.
        assert_eq!(to_start(&need(0, 8, 20, 0, 0)), 0);
        // Replacements add to the floor.
        assert_eq!(to_start(&need(1, 3, 4, 1, 0)), 1);
    }
}
