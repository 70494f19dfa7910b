//! A request rate limit like Azure's instance metadata service (about 5 requests per
//! second for tokens): requests beyond the limit within one second get 429 with
//! `Retry-After`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const OFF: u64 = 0;

/// A sliding one-second window over the identity endpoints' requests.
#[derive(Default)]
pub(crate) struct RateLimit {
    /// Requests allowed per second; 0: no limit.
    per_sec: AtomicU64,
    recent: Mutex<VecDeque<Instant>>,
}

impl RateLimit {
    pub fn set(&self, per_sec: Option<u32>) {
        self.per_sec
            .store(per_sec.map_or(OFF, u64::from), Ordering::Relaxed);
    }

    pub fn get(&self) -> Option<u32> {
        match self.per_sec.load(Ordering::Relaxed) {
            OFF => None,
            n => u32::try_from(n).ok(),
        }
    }

    /// `None` if the request may go on, else how long until a slot frees up.
    pub fn check(&self, now: Instant) -> Option<Duration> {
        let limit = usize::try_from(self.per_sec.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        if limit == 0 {
            return None;
        }
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            recent.pop_front();
        }
        if recent.len() < limit {
            recent.push_back(now);
            return None;
        }
        let oldest = recent.front().copied().unwrap_or(now);
        Some(Duration::from_secs(1).saturating_sub(now.duration_since(oldest)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_the_limit_per_second() {
        let r = RateLimit::default();
        let t0 = Instant::now();
        assert!(r.check(t0).is_none(), "off by default");
        r.set(Some(5));
        let r = RateLimit::default();
        r.set(Some(5));
        let passed = (0..20)
            .filter(|i| r.check(t0 + Duration::from_millis(10 * i)).is_none())
            .count();
        assert_eq!(passed, 5);
        let wait = r.check(t0 + Duration::from_millis(300)).expect("limited");
        assert_eq!(
            wait,
            Duration::from_millis(700),
            "until the oldest of the window is a second old"
        );
        assert!(
            r.check(t0 + Duration::from_millis(1001)).is_none(),
            "a slot freed up"
        );
        r.set(None);
        assert!((0..100).all(|_| r.check(t0 + Duration::from_millis(1002)).is_none()));
    }
}
