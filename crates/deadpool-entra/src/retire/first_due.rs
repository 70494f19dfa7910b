//! A lower bound on when any pooled connection is due to retire, readable without a
//! lock: a warm checkout before it skips the connection table entirely.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

/// The earliest scheduled retirement among the connections in the table, as nanoseconds
/// since `base`, or `u64::MAX` for none. It may be earlier than the truth (a connection
/// left and the value was not raised yet), never later: a checkout that sees "not yet"
/// is right, and one that sees "maybe" looks the connection up.
pub(crate) struct FirstDue {
    base: Instant,
    nanos: AtomicU64,
}

impl Default for FirstDue {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            nanos: AtomicU64::new(u64::MAX),
        }
    }
}

impl FirstDue {
    fn nanos_of(&self, t: Instant) -> u64 {
        u64::try_from(t.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether some connection may be due at `at`.
    #[inline]
    pub(crate) fn may_be_due(&self, at: Instant) -> bool {
        self.nanos_of(at) >= self.nanos.load(Ordering::Acquire)
    }

    /// A connection due at `t` joined (`None`: never due). Call it under the table's
    /// write lock, as [`FirstDue::set`].
    pub(crate) fn lower_to(&self, t: Option<Instant>) {
        if let Some(t) = t {
            self.nanos.fetch_min(self.nanos_of(t), Ordering::AcqRel);
        }
    }

    /// The exact earliest due time of the connections in the table (`None`: none is
    /// ever due). Call it under the table's write lock, so that no connection joins
    /// between computing it and storing it.
    pub(crate) fn set(&self, t: Option<Instant>) {
        self.nanos
            .store(t.map_or(u64::MAX, |t| self.nanos_of(t)), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn only_the_earliest_due_time_counts_and_set_raises_it() {
        let f = FirstDue::default();
        let now = Instant::now();
        let at = |s: u64| now + Duration::from_secs(s);
        assert!(
            !f.may_be_due(at(1_000_000)),
            "an empty table has nothing due"
        );

        f.lower_to(None);
        assert!(
            !f.may_be_due(at(1_000_000)),
            "a connection never due changes nothing"
        );

        f.lower_to(Some(at(10)));
        assert!(!f.may_be_due(at(9)));
        assert!(f.may_be_due(at(10)));
        assert!(f.may_be_due(at(11)));

        f.lower_to(Some(at(20)));
        assert!(!f.may_be_due(at(9)), "a later one does not raise it");
        f.lower_to(Some(at(5)));
        assert!(f.may_be_due(at(5)) && !f.may_be_due(at(4)));

        f.set(Some(at(20)));
        assert!(!f.may_be_due(at(19)) && f.may_be_due(at(20)));
        f.set(None);
        assert!(!f.may_be_due(at(1_000_000)));
    }

    #[tokio::test(start_paused = true)]
    async fn times_before_the_base_are_due_at_once() {
        let before = Instant::now();
        tokio::time::advance(Duration::from_secs(5)).await;
        let f = FirstDue::default();
        f.lower_to(Some(before));
        assert!(f.may_be_due(Instant::now()));
    }
}
