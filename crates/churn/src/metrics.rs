//! Measurements: HDR histograms per task (each task locks only its own slot, so recording
//! is uncontended), merged per second for the time series and at the end for the summary.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Histogram range: 1 µs to 120 s, 3 significant digits.
const MAX_US: u64 = 120_000_000;

/// A fresh microsecond histogram.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("valid histogram bounds")
}

/// Records a duration in microseconds (saturating at the histogram's range).
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = (d.as_micros() as u64).clamp(1, MAX_US);
    h.saturating_record(us);
}

/// What one task has measured; the `win_*` fields are the current one-second window.
#[derive(Debug, Clone)]
pub struct TaskStats {
    /// Checkout latency, whole run.
    pub checkout: Histogram<u64>,
    /// Query latency, whole run.
    pub query: Histogram<u64>,
    /// Checkout latency of checkouts that waited for a login, whole run.
    pub login_checkout: Histogram<u64>,
    /// Request latency (checkout and query, worked or failed; an abandoned request
    /// counts the time it had run), whole run.
    pub request: Histogram<u64>,
    /// Checkout latency, current window.
    pub win_checkout: Histogram<u64>,
    /// The longest request that ended in the current window, microseconds.
    pub win_request_max_us: u64,
    /// Requests still in flight when their segment's hard stop aborted them (also
    /// counted in `errors` as `abandoned-in-flight`).
    pub abandoned: u64,
    /// Requests that worked.
    pub ok: u64,
    /// Requests that failed, by kind.
    pub errors: BTreeMap<String, u64>,
    /// A few example messages per error kind.
    pub error_examples: BTreeMap<String, String>,
    /// Checkouts that waited for a login.
    pub waited_for_login: u64,
    /// Checkouts.
    pub checkouts: u64,
}

impl Default for TaskStats {
    fn default() -> Self {
        TaskStats {
            checkout: new_histogram(),
            query: new_histogram(),
            login_checkout: new_histogram(),
            request: new_histogram(),
            win_checkout: new_histogram(),
            win_request_max_us: 0,
            abandoned: 0,
            ok: 0,
            errors: BTreeMap::new(),
            error_examples: BTreeMap::new(),
            waited_for_login: 0,
            checkouts: 0,
        }
    }
}

impl TaskStats {
    /// Counts an error.
    pub fn error(&mut self, kind: &str, message: &str) {
        *self.errors.entry(kind.to_string()).or_default() += 1;
        self.error_examples
            .entry(kind.to_string())
            .or_insert_with(|| message.chars().take(300).collect());
    }

    /// Records a request's latency (whole run and the window's longest).
    pub fn request(&mut self, d: Duration) {
        record(&mut self.request, d);
        self.win_request_max_us = self.win_request_max_us.max(d.as_micros() as u64);
    }
}

/// At most this many slots: tasks share them round-robin, so 1,000 tasks do not cost
/// 1,000 sets of histograms (memory the pool under test would be blamed for).
pub const MAX_SLOTS: usize = 64;

/// Per-task measurement slots of one pool (task `i` uses slot `i % MAX_SLOTS`).
#[derive(Clone, Default)]
pub struct Slots {
    slots: Arc<Vec<Mutex<TaskStats>>>,
}

impl Slots {
    /// Slots for `n` tasks.
    pub fn new(n: usize) -> Slots {
        let n = n.clamp(1, MAX_SLOTS);
        Slots {
            slots: Arc::new((0..n).map(|_| Mutex::new(TaskStats::default())).collect()),
        }
    }

    /// Locks slot `i`.
    pub fn lock(&self, i: usize) -> MutexGuard<'_, TaskStats> {
        self.slots[i % self.slots.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Totals so far, and the window histogram merged (windows are reset).
    pub fn take_window(&self) -> Window {
        let mut w = Window {
            checkout: new_histogram(),
            request_max_us: 0,
            ok: 0,
            errors: 0,
            waited: 0,
            checkouts: 0,
        };
        for s in self.slots.iter() {
            let mut s = s.lock().unwrap_or_else(|p| p.into_inner());
            let _ = w.checkout.add(&s.win_checkout);
            s.win_checkout.reset();
            w.request_max_us = w
                .request_max_us
                .max(std::mem::take(&mut s.win_request_max_us));
            w.ok += s.ok;
            w.errors += s.errors.values().sum::<u64>();
            w.waited += s.waited_for_login;
            w.checkouts += s.checkouts;
        }
        w
    }

    /// Everything merged.
    pub fn merged(&self) -> TaskStats {
        let mut out = TaskStats::default();
        for s in self.slots.iter() {
            let s = s.lock().unwrap_or_else(|p| p.into_inner());
            let _ = out.checkout.add(&s.checkout);
            let _ = out.query.add(&s.query);
            let _ = out.login_checkout.add(&s.login_checkout);
            let _ = out.request.add(&s.request);
            out.abandoned += s.abandoned;
            out.ok += s.ok;
            out.waited_for_login += s.waited_for_login;
            out.checkouts += s.checkouts;
            for (k, v) in &s.errors {
                *out.errors.entry(k.clone()).or_default() += v;
            }
            for (k, v) in &s.error_examples {
                out.error_examples
                    .entry(k.clone())
                    .or_insert_with(|| v.clone());
            }
        }
        out
    }
}

/// A one-second window across all tasks of a pool (counters are cumulative).
pub struct Window {
    /// Checkout latency in this window.
    pub checkout: Histogram<u64>,
    /// The longest request that ended in this window, microseconds.
    pub request_max_us: u64,
    /// Cumulative successful requests.
    pub ok: u64,
    /// Cumulative failed requests.
    pub errors: u64,
    /// Cumulative checkouts that waited for a login.
    pub waited: u64,
    /// Cumulative checkouts.
    pub checkouts: u64,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Maximum.
    pub max_ms: f64,
}

impl Percentiles {
    /// From a microsecond histogram.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Percentiles {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// Resident memory of this process in KiB (`VmRSS` in `/proc/self/status`), if known.
pub fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_in_ms() {
        let mut h = new_histogram();
        for i in 1..=1000u64 {
            record(&mut h, Duration::from_micros(i * 10));
        }
        let p = Percentiles::of(&h);
        assert_eq!(p.count, 1000);
        assert!((p.p50_ms - 5.0).abs() < 0.05, "{p:?}");
        assert!((p.max_ms - 10.0).abs() < 0.05, "{p:?}");
    }

    #[test]
    fn windows_reset() {
        let s = Slots::new(2);
        record(&mut s.lock(0).win_checkout, Duration::from_millis(1));
        s.lock(1).ok += 3;
        s.lock(1).request(Duration::from_millis(7));
        let w = s.take_window();
        assert_eq!(w.checkout.len(), 1);
        assert_eq!(w.ok, 3);
        assert_eq!(w.request_max_us, 7_000);
        let w = s.take_window();
        assert_eq!((w.checkout.len(), w.request_max_us), (0, 0));
    }

    #[test]
    fn rss_is_read() {
        assert!(rss_kib().unwrap_or(1) > 0);
    }
}
