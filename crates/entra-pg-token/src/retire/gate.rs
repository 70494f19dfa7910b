//! When a due connection may really leave: only when a replacement can log in now.
//!
//! Azure checks a token only at login, so a session keeps working after its token
//! expires. Retiring a working session is worth it only when a new login will succeed;
//! otherwise the pool would trade working sessions for failing logins and drain to zero
//! during an identity outage (a naive pool that never retires keeps serving). The
//! decision is a pure function of the connection's plan, a snapshot of the pool's state
//! ([`Gate`]) and the time, so every rule is tested without sleeping.

use std::time::Duration;

use tokio::time::Instant;

use super::{RetirePlan, RetirePolicy, RetireReason, token_margin};
use crate::token::cache::{RecentTokens, TokenCache};

/// A token that a replacement could log in with now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadyToken {
    /// Its expiry (`None`: never, a password).
    pub expiry: Option<Instant>,
    /// Since when a usable token has been cached without a gap (the end of the last
    /// stretch with no valid token).
    pub usable_since: Instant,
}

/// The cached token, if a replacement connection could log in with it now: valid, with
/// more than its retirement margin left (a password always).
pub fn ready_token(cache: &TokenCache, now: Instant, policy: &RetirePolicy) -> Option<ReadyToken> {
    cache
        .with_valid(now, |t| {
            let near_expiry = matches!((t.deadline, t.lifetime), (Some(d), Some(life))
                if d.saturating_duration_since(now) <= token_margin(policy, life));
            (!near_expiry).then_some(ReadyToken {
                expiry: t.deadline,
                usable_since: t.usable_since,
            })
        })
        .flatten()
}

/// What the pool knows, at one moment, about whether a replacement could log in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gate {
    /// [`super::RetirePolicy::retire_without_replacement`]: retire on schedule whatever.
    pub unconditional: bool,
    /// The cached token, if it is valid for longer than its retirement margin.
    pub token: Option<ReadyToken>,
    /// The latest tokens, to tell since when one newer than a connection's own exists.
    pub recent: RecentTokens,
    /// Since when logins have been succeeding (`None`: the last one failed).
    pub logins_ok_since: Option<Instant>,
}

/// What to do with a connection at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not due.
    Keep,
    /// Due, but kept in service: no replacement can log in yet, or it waits for its
    /// place in the spread after replacements became possible again.
    Overdue(RetireReason),
    /// Retire it now.
    Retire(RetireReason),
}

/// Two expiries closer than this are one token served again from a credential's cache.
const SAME_TOKEN: Duration = Duration::from_secs(1);

fn newer(expiry: Option<Instant>, own: Option<Instant>) -> bool {
    match (own, expiry) {
        (Some(own), Some(e)) => own.checked_add(SAME_TOKEN).is_some_and(|o| e > o),
        _ => true,
    }
}

/// Since when a connection due by token age could be replaced: a token newer than its
/// own is cached, usable without a gap since, and logins succeed (`None`: not now).
fn token_age_release(plan: &RetirePlan, gate: &Gate) -> Option<Instant> {
    let token = gate.token?;
    let logins = gate.logins_ok_since?;
    if !newer(token.expiry, plan.token_expiry) {
        return None;
    }
    let first_newer = gate
        .recent
        .iter()
        .flatten()
        .find(|(_, e)| newer(*e, plan.token_expiry))
        .map_or(token.usable_since, |(at, _)| *at);
    Some(first_newer.max(token.usable_since).max(logins))
}

/// Since when a connection due by lifetime could be replaced: a usable token is cached
/// and logins succeed (`None`: not now).
fn lifetime_release(gate: &Gate) -> Option<Instant> {
    Some(gate.token?.usable_since.max(gate.logins_ok_since?))
}

/// The decision for one rule: `due` is the scheduled time, `release` since when a
/// replacement could log in, `moved` the due time given that release (never earlier than
/// `due`). `None`: not due; `Some(true)`: retire; `Some(false)`: overdue.
fn rule(
    at: Instant,
    due: Instant,
    release: Option<Instant>,
    moved: impl FnOnce(Instant) -> Instant,
) -> Option<bool> {
    (at >= due).then(|| release.is_some_and(|g| moved(g) <= at))
}

/// The decision for `plan` at `at`, given the pool's state `gate`.
///
/// Token age: the window `[start, end]` becomes `[max(start, G), max(end, G + width/2)]`
/// where `G` is since when a replacement could log in, and the connection keeps its
/// place `u` in it: connections held back by an outage leave spread out, not all at
/// once, and in normal operation none leaves before the newer token exists (it would
/// log in with the outgoing token and be retired again minutes later). Maximum lifetime:
/// at its deadline, or at `G + recovery_spread * u` if that passed before `G`.
pub fn decide(plan: &RetirePlan, gate: &Gate, at: Instant) -> Decision {
    let Some((first, first_reason)) = plan.earliest else {
        return Decision::Keep;
    };
    if at < first {
        return Decision::Keep;
    }
    if gate.unconditional {
        return Decision::Retire(first_reason);
    }
    let by_token = match (plan.token_due(), plan.token_window) {
        (Some(due), Some((s, e))) => rule(at, due, token_age_release(plan, gate), |g| {
            let start = s.max(g);
            let end = e.max(g + (e - s) / 2);
            end - (end - start).mul_f64(plan.u)
        }),
        _ => None,
    };
    let by_life = plan.lifetime.and_then(|l| {
        rule(at, l, lifetime_release(gate), |g| {
            if g <= l {
                l
            } else {
                g + plan.recovery_spread.mul_f64(plan.u)
            }
        })
    });
    match (by_token, by_life) {
        (Some(true), _) => Decision::Retire(RetireReason::TokenAge),
        (_, Some(true)) => Decision::Retire(RetireReason::MaxLifetime),
        (Some(false), _) => Decision::Overdue(RetireReason::TokenAge),
        (_, Some(false)) => Decision::Overdue(RetireReason::MaxLifetime),
        (None, None) => Decision::Keep,
    }
}

#[cfg(test)]
#[path = "gate_tests.rs"]
mod tests;
