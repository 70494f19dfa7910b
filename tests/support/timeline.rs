//! Load on a timeline: every request's start, end and outcome, so that a fault scenario
//! can say when throughput came back, how long any request was in flight and which
//! requests failed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_entra::Pool;

/// One checkout + `SELECT 1`.
#[derive(Debug, Clone)]
pub struct Request {
    /// From the start of the load.
    pub start: Duration,
    pub end: Duration,
    /// The error's text (secret-scanned), if it failed.
    pub error: Option<String>,
}

/// Every request of a load run.
#[derive(Debug, Default)]
pub struct Timeline {
    pub requests: Vec<Request>,
}

/// `tasks` tasks, each doing checkout + `SELECT 1` back to back until `run_for` has
/// passed; a request still running after `limit` is abandoned and counted as failed.
pub async fn record_load(
    pool: &Pool,
    tasks: usize,
    run_for: Duration,
    limit: Duration,
) -> Timeline {
    let t0 = Instant::now();
    let out = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (pool, out) = (pool.clone(), out.clone());
        handles.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            // Bounded in count as well as in time.
            for _ in 0..2_000_000u32 {
                let start = t0.elapsed();
                if start >= run_for {
                    break;
                }
                let error = match tokio::time::timeout(limit, request(&pool)).await {
                    Ok(r) => r.err(),
                    Err(_) => Some(format!("still in flight after {limit:?}")),
                };
                mine.push(Request {
                    start,
                    end: t0.elapsed(),
                    error,
                });
            }
            out.lock().unwrap_or_else(|e| e.into_inner()).extend(mine);
        }));
    }
    for h in handles {
        h.await.expect("load task panicked");
    }
    let mut requests = std::mem::take(&mut *out.lock().unwrap_or_else(|e| e.into_inner()));
    requests.sort_by_key(|r| r.start);
    Timeline { requests }
}

async fn request(pool: &Pool) -> Result<(), String> {
    let client = pool.get().await.map_err(|e| crate::note_error(&e))?;
    client
        .query_one("SELECT 1::int4", &[])
        .await
        .map_err(|e| crate::note_error(&e))?;
    Ok(())
}

impl Timeline {
    /// Successful requests per second that ended in `[from, to)`.
    pub fn rate(&self, from: Duration, to: Duration) -> f64 {
        let n = self
            .requests
            .iter()
            .filter(|r| r.error.is_none() && r.end >= from && r.end < to)
            .count();
        n as f64 / (to - from).as_secs_f64().max(1e-9)
    }

    /// How long after `after` the rate over a `window` first reached `target` (measured
    /// to the end of that window); `None`: never.
    pub fn back_to(&self, after: Duration, target: f64, window: Duration) -> Option<Duration> {
        let last = self.requests.iter().map(|r| r.end).max()?;
        let step = Duration::from_millis(50);
        let mut t = after;
        while t + window <= last {
            if self.rate(t, t + window) >= target {
                return Some(t + window - after);
            }
            t += step;
        }
        None
    }

    /// The request that was in flight longest.
    pub fn longest_request(&self) -> Option<&Request> {
        self.requests.iter().max_by_key(|r| r.end - r.start)
    }

    /// The longest a request was in flight.
    pub fn longest(&self) -> Duration {
        self.requests
            .iter()
            .map(|r| r.end - r.start)
            .max()
            .unwrap_or_default()
    }

    /// The longest a request that started in `[from, to)` was in flight.
    pub fn longest_started_in(&self, from: Duration, to: Duration) -> Duration {
        self.requests
            .iter()
            .filter(|r| r.start >= from && r.start < to)
            .map(|r| r.end - r.start)
            .max()
            .unwrap_or_default()
    }

    /// Failed requests that started at or after `t`.
    pub fn failed_started_after(&self, t: Duration) -> Vec<&Request> {
        self.requests
            .iter()
            .filter(|r| r.error.is_some() && r.start >= t)
            .collect()
    }

    /// Failed requests.
    pub fn failed(&self) -> usize {
        self.requests.iter().filter(|r| r.error.is_some()).count()
    }

    /// Requests that succeeded.
    pub fn ok(&self) -> usize {
        self.requests.len() - self.failed()
    }

    /// A one-line summary per second from `from` on, for the failure report.
    pub fn per_second(&self, from: Duration, to: Duration) -> String {
        let mut out = Vec::new();
        let mut t = from;
        while t < to {
            let next = t + Duration::from_secs(1);
            let failed = self
                .requests
                .iter()
                .filter(|r| r.error.is_some() && r.end >= t && r.end < next)
                .count();
            out.push(format!(
                "{:.0}s:{:.0}/s{}",
                t.as_secs_f64(),
                self.rate(t, next),
                if failed > 0 {
                    format!("({failed} failed)")
                } else {
                    String::new()
                }
            ));
            t = next;
        }
        out.join(" ")
    }
}
