//! One retirement at a time until a login proves that a replacement can log in.
//!
//! sqlx opens a retired session's replacement in the same acquire, and a login that
//! fails there is the caller's error. So a retirement is allowed only when every earlier
//! one has been followed by a successful login: a server that stops accepting logins
//! costs at most one session and one acquire before retirements pause. The claim is a
//! compare-and-swap, so that concurrent checkouts cannot both pass the check.

use std::sync::atomic::{AtomicU64, Ordering};

/// When a session was last retired, and when a login last succeeded, as nanoseconds
/// since the pool's epoch (0: never).
#[derive(Debug, Default)]
pub(crate) struct Proof {
    last_retired: AtomicU64,
    last_login_ok: AtomicU64,
}

impl Proof {
    /// A login succeeded at `at` (nanoseconds since the epoch).
    pub(crate) fn login_ok(&self, at: u64) {
        self.last_login_ok.fetch_max(at.max(1), Ordering::AcqRel);
    }

    /// A retirement has not yet been followed by a successful login.
    pub(crate) fn unproven(&self) -> bool {
        self.unproven_since().is_some()
    }

    /// When the retirement not yet followed by a successful login was claimed.
    pub(crate) fn unproven_since(&self) -> Option<u64> {
        let retired = self.last_retired.load(Ordering::Acquire);
        (retired > self.last_login_ok.load(Ordering::Acquire)).then_some(retired)
    }

    /// Claims a retirement at `at`: `false` when an earlier one is unproven, or another
    /// checkout claimed one at the same moment.
    pub(crate) fn claim(&self, at: u64) -> bool {
        let retired = self.last_retired.load(Ordering::Acquire);
        let ok = self.last_login_ok.load(Ordering::Acquire);
        if retired > ok {
            return false;
        }
        // Later than the last login, so that it counts as unproven until the next one.
        let mark = at.max(ok.saturating_add(1));
        self.last_retired
            .compare_exchange(retired, mark, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Records a retirement whatever (`retire_without_replacement`).
    pub(crate) fn force(&self, at: u64) {
        let ok = self.last_login_ok.load(Ordering::Acquire);
        self.last_retired
            .fetch_max(at.max(ok.saturating_add(1)), Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_retirement_at_a_time_until_a_login_proves_it() {
        let p = Proof::default();
        assert!(!p.unproven());
        assert!(p.claim(10));
        assert!(p.unproven());
        assert_eq!(p.unproven_since(), Some(10));
        assert!(!p.claim(11), "the first is unproven");
        p.login_ok(12);
        assert!(!p.unproven());
        assert_eq!(p.unproven_since(), None);
        assert!(p.claim(13));
        // A login recorded by another thread at a later instant than the claim's clock.
        p.login_ok(20);
        assert!(p.claim(15));
        assert!(
            p.unproven(),
            "a claim always counts as after the last login"
        );
    }

    #[test]
    fn concurrent_claims_let_exactly_one_through() {
        for _ in 0..200 {
            let p = std::sync::Arc::new(Proof::default());
            p.login_ok(5);
            let won: usize = std::thread::scope(|s| {
                let handles: Vec<_> = (0..4)
                    .map(|i| {
                        let p = p.clone();
                        s.spawn(move || usize::from(p.claim(10 + i)))
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).sum()
            });
            assert_eq!(won, 1);
        }
    }

    #[test]
    fn a_forced_retirement_is_unproven_too() {
        let p = Proof::default();
        p.login_ok(50);
        p.force(40);
        assert!(p.unproven());
        assert!(!p.claim(60));
    }
}
