//! The pool's events, each recorded once: into the counters behind [`crate::stats::Stats`] and
//! into the metrics (feature `metrics`, deadpool-entra's names and handles).

use std::sync::atomic::{AtomicU64, Ordering};

use deadpool_entra::metrics::{LoginOrigin, PoolMetrics, Sample, Stopwatch};
use entra_pg_token::retire::RetireReason;

/// Event counters behind [`crate::stats::Stats`] (named as deadpool-entra's), and the metrics.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) logins_ok: AtomicU64,
    pub(crate) logins_failed: AtomicU64,
    pub(crate) probe_logins: AtomicU64,
    pub(crate) retired_token_age: AtomicU64,
    pub(crate) retired_max_lifetime: AtomicU64,
    pub(crate) overdue_checks: AtomicU64,
    pub(crate) token_switches: AtomicU64,
    metrics: PoolMetrics,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    /// Counters for the pool named `pool_name` in metrics.
    pub(crate) fn new(pool_name: &str) -> Self {
        Self {
            metrics: PoolMetrics::new(pool_name),
            ..Self::default()
        }
    }

    /// A login ended: `took` is its stopwatch when the pool timed it (sqlx's own logins
    /// are reported by `after_connect` untimed, and only when they succeed).
    pub(crate) fn login(&self, took: Option<&Stopwatch>, ok: bool, origin: LoginOrigin) {
        bump(if ok {
            &self.logins_ok
        } else {
            &self.logins_failed
        });
        if origin == LoginOrigin::Probe {
            bump(&self.probe_logins);
        }
        match took {
            Some(t) => self.metrics.login(t, ok, origin),
            None => self.metrics.counted_login(ok, origin),
        }
    }

    /// A session retired.
    pub(crate) fn retired(&self, reason: RetireReason) {
        bump(match reason {
            RetireReason::MaxLifetime => &self.retired_max_lifetime,
            _ => &self.retired_token_age,
        });
        self.metrics.retired(reason, 1);
    }

    /// A session due was kept.
    pub(crate) fn overdue(&self) {
        bump(&self.overdue_checks);
    }

    /// A new token went into the connect options.
    pub(crate) fn switched(&self) {
        bump(&self.token_switches);
    }

    /// The gauges.
    pub(crate) fn sample(&self, s: &Sample) {
        self.metrics.sample(s);
    }

    /// The pool closed: its gauges read 0.
    pub(crate) fn close(&self) {
        self.metrics.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    #[test]
    fn each_event_lands_in_its_own_counter() {
        let c = Counters::new("p");
        c.login(None, true, LoginOrigin::Checkout);
        c.login(Some(&Stopwatch::start()), true, LoginOrigin::Probe);
        c.login(Some(&Stopwatch::start()), false, LoginOrigin::Probe);
        assert_eq!(
            (n(&c.logins_ok), n(&c.logins_failed), n(&c.probe_logins)),
            (2, 1, 2)
        );
        c.retired(RetireReason::TokenAge);
        c.retired(RetireReason::MaxLifetime);
        c.retired(RetireReason::MaxLifetime);
        assert_eq!(
            (n(&c.retired_token_age), n(&c.retired_max_lifetime)),
            (1, 2)
        );
        c.overdue();
        c.switched();
        c.switched();
        assert_eq!((n(&c.overdue_checks), n(&c.token_switches)), (1, 2));
    }
}
