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

tokio::task_local! {
    /// Set while the pool logs in sessions ahead of need (`min_connections`): its logins
    /// are counted as `background`, a caller's as `checkout`. sqlx runs `after_connect`
    /// in the task that acquires.
    pub(crate) static AHEAD_OF_NEED: ();
}

/// The place in `[0, 1)` of a session created at `created`, for the `k`-th of its windows.
fn place(shared: &Shared, created: Instant, k: f64) -> f64 {
    let ms = created.saturating_duration_since(shared.epoch).as_millis() as f64;
    (shared.seed + k * 0.5 + ms * GOLDEN_RATIO_CONJUGATE).fract()
}

/// `after_connect`: a login succeeded.
pub(crate) fn connected(shared: &Shared) {
    let origin = match AHEAD_OF_NEED.try_with(|_| ()) {
        Ok(()) => LoginOrigin::Background,
        Err(_) => LoginOrigin::Checkout,
    };
    shared.counters.login(None, true, origin);
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

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    };

    use deadpool_entra::RetirePolicy;
    use entra_pg_token::{
        FnSource, RefreshPolicy, Token, TokenProvider, retire::health::LoginHealth,
        token::cache::CachedToken,
    };
    use sqlx::postgres::PgConnectOptions;

    use super::*;
    use crate::{
        counters::Counters,
        proof::Proof,
        switches::{Switch, Switches},
    };

    const HOUR: Duration = Duration::from_secs(3600);

    /// A pool's shared state on hour-long tokens, none fetched yet.
    fn shared() -> Shared {
        let n = Arc::new(AtomicU64::new(0));
        let source = FnSource::new("Counted", move |_scope| {
            let i = n.fetch_add(1, Ordering::SeqCst);
            async move { Ok(Token::expiring_in(format!("token-{i}"), HOUR)) }
        });
        let now = Instant::now();
        Shared {
            tokens: TokenProvider::new(source, "scope", RefreshPolicy::default()),
            // Token age only: a lifetime would be due first at these ages.
            policy: RetirePolicy {
                max_lifetime: None,
                ..RetirePolicy::default()
            },
            base: PgConnectOptions::new_without_pgpass(),
            switches: Switches::new(Switch {
                at: now,
                generation: 0,
                expiry: None,
            }),
            health: LoginHealth::new(now),
            counters: Counters::default(),
            epoch: now,
            seed: 0.25,
            proof: Proof::default(),
            login_limit: Duration::from_secs(5),
        }
    }

    fn switch_to(s: &Shared, t: &CachedToken) {
        s.switches.record(Switch {
            at: Instant::now(),
            generation: t.generation,
            expiry: t.deadline,
        });
    }

    fn retired(s: &Shared) -> u64 {
        s.counters.retired_token_age.load(Ordering::Relaxed)
    }

    /// The first token goes into the options, a session logs in with it a second later
    /// (returned: when), and at half-life a second token is cached (returned).
    async fn two_tokens(s: &Shared) -> (Instant, Arc<CachedToken>) {
        let first = s.tokens.cache().get().await.unwrap();
        switch_to(s, &first);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let created = Instant::now();
        tokio::time::sleep(HOUR / 2).await;
        match s.tokens.cache().force_refresh(&first).await {
            entra_pg_token::token::cache::Forced::New(t) => (created, t),
            _ => panic!("a second token"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_leaves_once_its_token_nears_expiry_and_the_newer_one_is_in_the_options() {
        let s = shared();
        let (created, second) = two_tokens(&s).await;
        // Past the end of the first token's window (expiry less its 60 s margin).
        tokio::time::sleep_until(s.epoch + HOUR - Duration::from_secs(55)).await;
        let age = Instant::now() - created;
        assert!(keep(&s, age), "the newer token is not in the options yet");
        assert_eq!(retired(&s), 0);
        switch_to(&s, &second);
        assert!(!keep(&s, age), "due, and a replacement can log in");
        assert_eq!(retired(&s), 1);
        // A session created with the second token stays.
        assert!(keep(&s, Duration::from_secs(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn one_retirement_waits_for_a_login_after_the_one_before() {
        let s = shared();
        let (created, second) = two_tokens(&s).await;
        switch_to(&s, &second);
        tokio::time::sleep_until(s.epoch + HOUR - Duration::from_secs(55)).await;
        let age = Instant::now() - created;
        assert!(!keep(&s, age));
        assert!(keep(&s, age), "the first retirement is unproven");
        assert_eq!(s.counters.overdue_checks.load(Ordering::Relaxed), 1);
        connected(&s);
        assert!(!keep(&s, age), "a login proved it");
        assert_eq!(retired(&s), 2);
        assert_eq!(s.counters.logins_ok.load(Ordering::Relaxed), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn sessions_created_together_take_places_spread_over_their_window() {
        let s = shared();
        let places: Vec<f64> = (0..100)
            .map(|ms| place(&s, s.epoch + Duration::from_millis(ms), 0.0))
            .collect();
        assert!(places.iter().all(|p| (0.0..1.0).contains(p)), "{places:?}");
        // Every tenth of the window holds some of 100 sessions made a millisecond apart.
        for tenth in 0..10 {
            let lo = f64::from(tenth) / 10.0;
            let n = places
                .iter()
                .filter(|p| (lo..lo + 0.1).contains(*p))
                .count();
            assert!((5..=15).contains(&n), "{n} in tenth {tenth}: {places:?}");
        }
        // The seed shifts them all; the lifetime's place is half a turn from the token's.
        let at = s.epoch + Duration::from_millis(7);
        let expected = (0.25 + 7.0 * GOLDEN_RATIO_CONJUGATE).fract();
        assert!((place(&s, at, 0.0) - expected).abs() < 1e-9);
        let life = place(&s, at, 1.0);
        assert!((life - (expected + 0.5).fract()).abs() < 1e-9, "{life}");
    }

    #[tokio::test(start_paused = true)]
    async fn inside_its_window_a_session_leaves_at_its_place() {
        let s = shared();
        let (created, second) = two_tokens(&s).await;
        switch_to(&s, &second);
        // The first token's window, as the rule computes it.
        let expiry = s.switches.token_of(created).expiry;
        let u = place(&s, created, 0.0);
        let p = plan(&s.policy, created, expiry, u, place(&s, created, 1.0));
        let (start, end) = p.token_window.unwrap();
        assert!(end - start >= Duration::from_secs(60), "{:?}", end - start);
        let leaves = p.token_due().unwrap();
        assert!(start < leaves && leaves < end);
        tokio::time::sleep_until(leaves - Duration::from_secs(2)).await;
        assert!(keep(&s, Instant::now() - created), "before its place ({u})");
        tokio::time::sleep_until(leaves + Duration::from_secs(2)).await;
        assert!(!keep(&s, Instant::now() - created), "after its place ({u})");
    }

    #[tokio::test(start_paused = true)]
    async fn while_logins_fail_a_due_session_stays() {
        let s = shared();
        let (created, second) = two_tokens(&s).await;
        switch_to(&s, &second);
        tokio::time::sleep_until(s.epoch + HOUR - Duration::from_secs(55)).await;
        s.health.failed(Instant::now());
        let age = Instant::now() - created;
        assert!(keep(&s, age));
        assert_eq!(retired(&s), 0);
        // Past its own token's expiry too: Azure checks a token only at login.
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert!(keep(&s, age + Duration::from_secs(120)));
        // A session older than the pool's clock can tell is kept.
        assert!(keep(&s, Duration::MAX));
    }

    #[tokio::test(start_paused = true)]
    async fn without_replacement_a_due_session_leaves_whatever() {
        let mut s = shared();
        s.policy.retire_without_replacement = true;
        let (created, _) = two_tokens(&s).await;
        tokio::time::sleep_until(s.epoch + HOUR - Duration::from_secs(55)).await;
        s.health.failed(Instant::now());
        let age = Instant::now() - created;
        assert!(!keep(&s, age));
        assert!(!keep(&s, age), "no wait for a proving login either");
        assert!(s.proof.unproven());
    }
}
