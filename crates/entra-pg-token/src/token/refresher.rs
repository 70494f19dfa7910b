//! The refresher: renews the cached token ahead of its expiry, retries after failures when
//! their delay ends, asks again soon when the source served its own cache, and looks at the
//! wall clock at least once a minute (a resumed machine). It runs under a supervisor that
//! restarts it if it panics, and holds only a `Weak` to the cache.

use std::sync::{Arc, Weak, atomic::Ordering};
use std::time::Duration;

use tokio::{
    sync::{Notify, watch},
    task::JoinHandle,
    time::Instant,
};

use super::{Refresh, TokenCache, join, wait_shutdown};
use crate::{
    time::later,
    token::backoff::{backoff, floor, same_token_retry},
};

/// How often the refresher looks at the wall clock at the latest.
const WALL_CHECK: Duration = Duration::from_secs(60);

/// Starts the refresher under a supervisor that restarts it if it panics (logged and
/// counted). Both hold only a `Weak` to the cache and end when it is dropped or shut down.
pub fn spawn_refresher(cache: &Arc<TokenCache>) -> JoinHandle<()> {
    let weak: Weak<TokenCache> = Arc::downgrade(cache);
    let shutdown = cache.shutdown.subscribe();
    let changed = cache.changed.clone();
    tokio::spawn(async move {
        loop {
            let run = tokio::spawn(refresh_loop(
                weak.clone(),
                shutdown.clone(),
                changed.clone(),
            ));
            match run.await {
                Err(e) if e.is_panic() => {
                    let Some(cache) = weak.upgrade() else { return };
                    cache
                        .counters
                        .refresher_panics
                        .fetch_add(1, Ordering::Relaxed);
                    let pause = floor(&cache.policy);
                    drop(cache);
                    tracing::error!(
                        target: "deadpool_entra",
                        restart_in_secs = pause.as_secs_f64(),
                        "the token refresher panicked; restarting it"
                    );
                    let mut rx = shutdown.clone();
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = wait_shutdown(&mut rx) => return,
                    }
                }
                _ => return,
            }
        }
    })
}

/// The refresher: renews the token at its refresh point, retries after failures when
/// their retry delay ends, and asks again soon when the source served its cache.
async fn refresh_loop(
    weak: Weak<TokenCache>,
    mut shutdown: watch::Receiver<bool>,
    changed: Arc<Notify>,
) {
    // After the source returned the same token: how often, and when to ask again.
    let mut same: u32 = 0;
    let mut same_retry_at: Option<Instant> = None;
    loop {
        {
            let Some(cache) = weak.upgrade() else { return };
            if *shutdown.borrow() || !cache.can_refresh() {
                return;
            }
            let point = cache.next_refresh();
            let retry_at = cache.retry_at();
            if let (Some(_), Some(p)) = (same_retry_at, point)
                && p > Instant::now()
            {
                // Renewed elsewhere while we waited for the source's cache to turn over.
                same_retry_at = None;
                same = 0;
            }
            let due = same_retry_at.or(point).or_else(|| {
                // No token at all (a lazy pool whose first fetch failed): retry when the
                // failure's delay ends.
                retry_at.filter(|_| cache.peek().is_none())
            });
            let wake = match (due, retry_at) {
                (Some(d), Some(r)) => Some(d.max(r)),
                (d, _) => d,
            };
            // Look at least once a minute: after a suspend the monotonic clock is behind
            // and only the wall clock shows that the token expired.
            let wake = Some(match wake {
                Some(w) => w.min(later(Instant::now(), WALL_CHECK)),
                None => later(Instant::now(), WALL_CHECK),
            });
            drop(cache);
            tokio::select! {
                () = sleep_until_opt(wake) => {}
                // A token or a failure was stored elsewhere: recompute the schedule.
                () = changed.notified() => continue,
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() { return; }
                    continue;
                }
            }
        }
        let Some(cache) = weak.upgrade() else { return };
        #[cfg(test)]
        if cache.panic_refresher_once.swap(false, Ordering::SeqCst) {
            panic!("injected refresher panic");
        }
        let now = Instant::now();
        let retry_at = cache.retry_at();
        if retry_at.is_some_and(|r| now < r) {
            // A failure still stands; the schedule waits for its end.
            continue;
        }
        let due = same_retry_at.is_some_and(|t| t <= now)
            // Expired by the wall clock (a resume from suspend), or by tokio's clock.
            || (cache.peek().is_some() && cache.valid_now().is_none())
            || cache.next_refresh().is_some_and(|p| p <= now)
            // No token at all and the last failure's delay is over.
            || (cache.peek().is_none() && retry_at.is_some());
        if !due {
            continue;
        }
        let seen = cache.peek().map(|t| t.generation).unwrap_or(0);
        let policy = cache.policy.clone();
        let start = cache.refresh_start(seen);
        drop(cache);
        // The fetch runs in its own task; waiting for it holds no strong reference, and
        // shutdown wins.
        let outcome = match start {
            None => None,
            Some(Refresh::Done(o)) => Some(o),
            Some(Refresh::Wait(rx)) => tokio::select! {
                o = join(rx) => Some(o),
                () = wait_shutdown(&mut shutdown) => return,
            },
        };
        match outcome {
            Some(Ok(t)) if t.generation == seen => {
                // The credential served its own cache: it has not reached its renewal
                // window yet. Ask again soon, and never later than a quarter of the
                // token's remaining life, so that the asks land in a renewal window
                // however short (backoff steps of 4 s and 8 s would step over the last
                // 2.5 s of a 30 s token, and the token would expire in the cache).
                same = same.saturating_add(1);
                let d = same_token_retry(&policy, same, t.deadline, Instant::now());
                tracing::debug!(
                    target: "deadpool_entra",
                    next_retry_in_secs = d.as_secs_f64(),
                    "token source returned the same token; asking again later"
                );
                same_retry_at = Some(later(Instant::now(), d));
            }
            Some(Ok(_)) => {
                same = 0;
                same_retry_at = None;
            }
            // A failure is remembered by the cache with its retry delay; `None`: one
            // still stands. Either way the schedule is recomputed from the cache, unless
            // the flight ended without settling (it panicked): then back off here.
            Some(Err(_)) | None => {
                let settled = weak
                    .upgrade()
                    .is_some_and(|c| c.retry_at().is_some_and(|r| r > Instant::now()));
                if !settled {
                    same = same.saturating_add(1);
                    same_retry_at = Some(later(Instant::now(), backoff(&policy, same)));
                }
            }
        }
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
