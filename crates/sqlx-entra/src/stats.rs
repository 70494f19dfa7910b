//! A snapshot of the pool: its token, its logins and retirements, named as
//! deadpool-entra's stats name them.

use std::sync::atomic::{AtomicU64, Ordering};

use entra_pg_token::TokenStats;

use crate::shared::Shared;

/// The pool's state and counters.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// The shared token's state and counters.
    pub token: TokenStats,
    /// Open sessions (idle and in use).
    pub size: u32,
    /// Idle sessions.
    pub idle: usize,
    /// Logins that succeeded (the pool's and the probes').
    pub logins_ok: u64,
    /// Probe logins that failed (sqlx does not tell of its own failed logins: its
    /// `acquire` returns them to the caller).
    pub logins_failed: u64,
    /// Probe logins: a new token tried before it goes into the connect options, and
    /// checks while logins fail.
    pub probe_logins: u64,
    /// Sessions retired because a newer token is cached and their own nears expiry.
    pub retired_token_age: u64,
    /// Sessions retired at their (jittered) maximum lifetime.
    pub retired_max_lifetime: u64,
    /// Checkouts that found a session due but kept it, because no replacement could log
    /// in yet (or its place in the spread had not come).
    pub overdue_checks: u64,
    /// Times a new token went into the connect options.
    pub token_switches: u64,
}

impl Stats {
    pub(crate) fn of(shared: &Shared, size: u32, idle: usize) -> Self {
        let c = &shared.counters;
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            token: shared.tokens.stats(),
            size,
            idle,
            logins_ok: n(&c.logins_ok),
            logins_failed: n(&c.logins_failed),
            probe_logins: n(&c.probe_logins),
            retired_token_age: n(&c.retired_token_age),
            retired_max_lifetime: n(&c.retired_max_lifetime),
            overdue_checks: n(&c.overdue_checks),
            token_switches: n(&c.token_switches),
        }
    }
}
