//! Deadlines that cannot overflow: any duration a user or an identity endpoint supplies
//! (a token that lives for ever, an absurd `max_lifetime`) is capped before it is added.

use std::time::Duration;

use tokio::time::Instant;

/// Durations beyond this (a century) are treated as this, so that no deadline overflows.
pub const LONGEST: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `at + d`, with `d` capped at [`LONGEST`] (and at a day should even that overflow).
pub fn later(at: Instant, d: Duration) -> Instant {
    at.checked_add(d.min(LONGEST))
        .or_else(|| at.checked_add(Duration::from_secs(86_400)))
        .unwrap_or(at)
}
