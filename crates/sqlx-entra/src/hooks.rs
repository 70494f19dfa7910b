//! The hooks sqlx calls: `after_connect` records a login, `before_acquire` decides by the
//! shared retirement rule whether an idle session leaves before it is handed out.
//!
//! A session's place in its spread windows comes from its creation time (sqlx keeps no
//! data of ours per session): a Weyl sequence over the millisecond it was created, so
//! that sessions created together leave spread out.

use std::time::Duration;

use entra_pg_token::retire::{
    gate::{Decision, Gate, decide, ready_token},
    plan,
};
use tokio::time::Instant;

use deadpool_entra::metrics::LoginOrigin;

use crate::shared::Shared;

const GOLDEN_RATIO_CONJUGATE: f64 = 0.618_033_988_749_894_9;

/// The place in `[0, 1)` of a session created at `created`, for the `k`-th of its windows.
fn place(shared: &Shared, created: Instant, k: f64) -> f64 {
    let ms = created.saturating_duration_since(shared.epoch).as_millis() as f64;
    (shared.seed + k * 0.5 + ms * GOLDEN_RATIO_CONJUGATE).fract()
}

/// `after_connect`: a login succeeded.
pub(crate) fn connected(shared: &Shared) {
    shared.counters.login(None, true, LoginOrigin::Checkout);
    shared.login_ok(Instant::now());
}

/// `before_acquire`: whether the session of age `age` stays (`true`) or leaves.
pub(crate) fn keep(shared: &Shared, age: Duration) -> bool {
    let now = Instant::now();
    let Some(created) = now.checked_sub(age) else {
        return true;
    };
    let token = shared.switches.token_of(created);
    let p = plan(
        &shared.policy,
        created,
        token.expiry,
        place(shared, created, 0.0),
        place(shared, created, 1.0),
    );
    if p.earliest.is_none_or(|(t, _)| now < t) {
        return true;
    }
    let latest = shared.switches.latest();
    let cache = shared.tokens.cache();
    // A replacement logs in with the token in the options: only that one counts, and
    // only while the cache still holds it with more than its margin left.
    let ready = ready_token(cache, now, &shared.policy).filter(|_| {
        cache
            .peek()
            .is_some_and(|t| t.generation == latest.generation)
    });
    let gate = Gate {
        unconditional: shared.policy.retire_without_replacement,
        token: ready,
        recent: shared.switches.recent(),
        logins_ok_since: shared
            .health
            .ok_since()
            .filter(|_| !shared.proof.unproven()),
    };
    match decide(&p, &gate, now) {
        Decision::Keep => true,
        Decision::Overdue(_) => {
            shared.counters.overdue();
            true
        }
        Decision::Retire(reason) => {
            let at = shared.nanos(now);
            if gate.unconditional {
                shared.proof.force(at);
            } else if !shared.proof.claim(at) {
                // Another checkout retired one a moment ago, unproven yet.
                shared.counters.overdue();
                return true;
            }
            shared.counters.retired(reason);
            tracing::debug!(target: "deadpool_entra", reason = reason.as_str(), "session retired");
            false
        }
    }
}
