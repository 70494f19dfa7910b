//! The cache and refresher on tokio's paused clock, with a fake token source.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, AtomicU64, Ordering},
};
use std::time::Duration;

use tokio::time::Instant;

use super::flight::MAX_REFUSAL_HOLD;
use super::*;
use crate::token::backoff::{backoff, backoff_ceiling};
use crate::{
    token::source::BoxFuture, token::source::Token, token::source::TokenSource,
    token::source::TokenSourceError,
};

const SECRET: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOi.SECRET-PAYLOAD-4711.signature";

/// A source that returns tokens with a fixed lifetime after an optional latency, or
/// fails while `failing` is set; it records when it was called.
struct Fake {
    lifetime: Duration,
    latency: Duration,
    failing: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    call_times: Arc<Mutex<Vec<Instant>>>,
}

struct FakeHandle {
    failing: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    call_times: Arc<Mutex<Vec<Instant>>>,
}

impl FakeHandle {
    fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
    fn fail(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }
    fn times(&self) -> Vec<Instant> {
        self.call_times.lock().unwrap().clone()
    }
}

fn fake(lifetime: Duration, latency: Duration) -> (Fake, FakeHandle) {
    let failing = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let call_times = Arc::new(Mutex::new(Vec::new()));
    (
        Fake {
            lifetime,
            latency,
            failing: failing.clone(),
            calls: calls.clone(),
            call_times: call_times.clone(),
        },
        FakeHandle {
            failing,
            calls,
            call_times,
        },
    )
}

impl TokenSource for Fake {
    fn fetch<'a>(&'a self, _scope: &'a str) -> BoxFuture<'a, Result<Token, TokenSourceError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.call_times.lock().unwrap().push(Instant::now());
            if !self.latency.is_zero() {
                tokio::time::sleep(self.latency).await;
            }
            if self.failing.load(Ordering::SeqCst) {
                return Err(TokenSourceError::new("identity endpoint returned 500")
                    .with_hint("check IDENTITY_ENDPOINT"));
            }
            // Every new token has a new secret.
            let n = self.calls.load(Ordering::SeqCst);
            Ok(Token::expiring_in(format!("{SECRET}-{n}"), self.lifetime))
        })
    }
    fn name(&self) -> String {
        "Fake".into()
    }
}

fn cache_with(source: Fake) -> Arc<TokenCache> {
    TokenCache::new(Box::new(source), "scope/.default", RefreshPolicy::default())
}

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(start_paused = true)]
async fn one_identity_call_for_a_thousand_waiters() {
    let (source, h) = fake(HOUR, Duration::from_millis(200));
    let cache = cache_with(source);
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let c = cache.clone();
            tokio::spawn(async move { c.get().await.map(|t| t.generation) })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 1);
    }
    assert_eq!(h.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn one_identity_call_for_a_thousand_waiters_when_it_fails() {
    let (source, h) = fake(HOUR, Duration::from_millis(200));
    h.fail(true);
    let cache = cache_with(source);
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let c = cache.clone();
            tokio::spawn(async move { c.get().await.is_err() })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap());
    }
    assert_eq!(h.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn refresh_happens_at_the_refresh_point_not_before() {
    for (lifetime, ahead) in [
        (HOUR, Duration::from_secs(270)), // min(270 s, 1800 s)
        (Duration::from_secs(60), Duration::from_secs(30)), // min(270 s, 30 s)
    ] {
        let (source, h) = fake(lifetime, Duration::ZERO);
        let cache = cache_with(source);
        let t0 = Instant::now();
        cache.get().await.unwrap();
        let refresher = spawn_refresher(&cache);
        let point = t0 + lifetime - ahead;
        tokio::time::sleep_until(point - Duration::from_millis(1)).await;
        assert_eq!(h.calls(), 1, "refreshed before the refresh point");
        tokio::time::sleep_until(point + Duration::from_millis(1)).await;
        assert_eq!(h.calls(), 2, "no refresh at the refresh point");
        assert_eq!(h.times()[1], point);
        assert_eq!(cache.valid_now().unwrap().generation, 2);
        cache.shut_down();
        refresher.await.unwrap();
    }
}

#[test]
fn backoff_ceiling_grows_and_is_capped() {
    let p = RefreshPolicy::default();
    let ceilings: Vec<u64> = (1..=8).map(|n| backoff_ceiling(&p, n).as_secs()).collect();
    assert_eq!(ceilings, [1, 2, 4, 8, 16, 30, 30, 30]);
    for n in 1..50 {
        let d = backoff(&p, n);
        assert!(d >= p.min_backoff && d <= p.max_backoff, "{d:?}");
        assert!(d <= backoff_ceiling(&p, n));
    }
}

#[tokio::test(start_paused = true)]
async fn failed_refreshes_back_off_while_the_cached_token_serves() {
    let lifetime = Duration::from_secs(600);
    let (source, h) = fake(lifetime, Duration::ZERO);
    let cache = cache_with(source);
    let t0 = Instant::now();
    let first = cache.get().await.unwrap();
    h.fail(true);
    let _refresher = spawn_refresher(&cache);
    // Refresh point: 600 - min(270, 300) = 330 s. The token stays usable until
    // 600 - 5 s (safety).
    let usable_until = t0 + lifetime - Duration::from_secs(5);
    while Instant::now() + Duration::from_secs(1) < usable_until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t = cache.get().await.expect("the cached token keeps serving");
        assert_eq!(t.generation, first.generation);
    }
    let times = h.times();
    assert!(times.len() > 6, "retries: {}", times.len());
    assert_eq!(times[1], t0 + Duration::from_secs(330));
    let gaps: Vec<Duration> = times[1..].windows(2).map(|w| w[1] - w[0]).collect();
    for g in &gaps {
        assert!(*g >= Duration::from_secs(1), "gap below min_backoff: {g:?}");
        assert!(
            *g <= Duration::from_secs(30),
            "gap above max_backoff: {g:?}"
        );
    }
    // The ceiling doubles: the first gaps are bounded by 1, 2, 4, 8 s.
    for (i, g) in gaps.iter().take(4).enumerate() {
        assert!(*g <= Duration::from_secs(1 << (i + 1)), "gap {i}: {g:?}");
    }
    // Over many attempts the delays reach well beyond the first ones.
    assert!(
        gaps.iter().skip(5).any(|g| *g > Duration::from_secs(4)),
        "{gaps:?}"
    );
    assert!(cache.counters.refreshes_failed.load(Ordering::Relaxed) as usize >= gaps.len());
    assert!(cache.last_error().unwrap().contains("500"));
}

#[tokio::test(start_paused = true)]
async fn expired_token_is_never_returned() {
    let lifetime = Duration::from_secs(60);
    let (source, h) = fake(lifetime, Duration::ZERO);
    let cache = cache_with(source);
    let t0 = Instant::now();
    cache.get().await.unwrap();
    h.fail(true);
    // Safety is min(5 s, 6 s) = 5 s: usable while now < 55 s.
    tokio::time::sleep_until(t0 + Duration::from_millis(54_900)).await;
    assert!(cache.get().await.is_ok());
    tokio::time::sleep_until(t0 + Duration::from_secs(55)).await;
    let e = cache
        .get()
        .await
        .expect_err("a token in its last 5 s must not be handed out");
    assert!(e.cause.contains("500"));
    tokio::time::sleep_until(t0 + Duration::from_secs(61)).await;
    assert!(cache.get().await.is_err());
    assert!(cache.valid_now().is_none());
    h.fail(false);
    // The last failure stands for its retry delay, then the next call fetches.
    tokio::time::sleep_until(cache.retry_at().expect("a failure stands")).await;
    let t = cache.get().await.unwrap();
    assert_eq!(t.generation, 2);
}

#[tokio::test(start_paused = true)]
async fn refresher_ends_when_the_cache_is_dropped() {
    let (source, _h) = fake(HOUR, Duration::ZERO);
    let cache = cache_with(source);
    cache.get().await.unwrap();
    let refresher = spawn_refresher(&cache);
    tokio::task::yield_now().await;
    assert!(!refresher.is_finished());
    drop(cache);
    tokio::time::timeout(Duration::from_millis(10), refresher)
        .await
        .expect("the refresher outlived its cache")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn refresher_ends_on_shutdown() {
    let (source, _h) = fake(HOUR, Duration::ZERO);
    let cache = cache_with(source);
    cache.get().await.unwrap();
    let refresher = spawn_refresher(&cache);
    tokio::task::yield_now().await;
    cache.shut_down();
    tokio::time::timeout(Duration::from_millis(10), refresher)
        .await
        .expect("the refresher ignored shutdown")
        .unwrap();
    assert!(Arc::strong_count(&cache) == 1);
}

#[tokio::test(start_paused = true)]
async fn same_token_from_the_credential_is_not_a_renewal() {
    // A credential that serves its own cache: the expiry does not move.
    let deadline_holder = Arc::new(Mutex::new(None::<Instant>));
    let calls = Arc::new(AtomicU64::new(0));
    let (d2, c2) = (deadline_holder.clone(), calls.clone());
    let source = crate::token::sources::FnSource::new("Cached", move |_| {
        let d = d2.clone();
        let c = c2.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            let mut d = d.lock().unwrap();
            let deadline = *d.get_or_insert(Instant::now() + Duration::from_secs(600));
            Ok(Token::expiring_in(SECRET, deadline - Instant::now()))
        }
    });
    let cache = TokenCache::new(Box::new(source), "s", RefreshPolicy::default());
    let t0 = Instant::now();
    cache.get().await.unwrap();
    let _r = spawn_refresher(&cache);
    tokio::time::sleep_until(t0 + Duration::from_secs(340)).await;
    // 330 s refresh point, then retries within seconds (not a 270 s wait).
    assert!(
        calls.load(Ordering::SeqCst) >= 3,
        "{}",
        calls.load(Ordering::SeqCst)
    );
}

#[tokio::test(start_paused = true)]
async fn a_credential_renewing_only_late_in_the_tokens_life_is_asked_again_before_expiry() {
    // Like Azure's endpoints with a short token: the same token until less than 5 s of
    // its 30 s are left, then a new one. The refresher asks at half-life and must keep
    // asking often enough to land in those 5 s before the token's last 3 s (its safety
    // margin, in which it is no longer handed out): backoff steps of 1, 2, 4 and 8 s
    // (asks at 15, 16, 18, 22 and 30 s) step over them. (Azure's window, 5 minutes, is
    // as far outside the 5 s margin of an hour-long token.)
    const LIFE: Duration = Duration::from_secs(30);
    const WINDOW: Duration = Duration::from_secs(5);
    let state = Arc::new(Mutex::new((0u32, None::<Instant>)));
    let s2 = state.clone();
    let source = crate::token::sources::FnSource::new("RenewsLate", move |_| {
        let s = s2.clone();
        async move {
            let mut s = s.lock().unwrap();
            let now = Instant::now();
            if s.1
                .is_none_or(|d| d.saturating_duration_since(now) < WINDOW)
            {
                s.0 += 1;
                s.1 = Some(now + LIFE);
            }
            let left = s.1.unwrap() - now;
            Ok(Token::expiring_in(format!("{SECRET}-{}", s.0), left))
        }
    });
    let cache = TokenCache::new(Box::new(source), "s", RefreshPolicy::default());
    let t0 = Instant::now();
    cache.get().await.unwrap();
    let _r = spawn_refresher(&cache);
    let mut lapses = 0;
    while Instant::now() < t0 + LIFE * 4 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        lapses += usize::from(cache.valid_now().is_none());
    }
    let renewed = state.lock().unwrap().0;
    assert_eq!(lapses, 0, "the cached token lapsed ({renewed} tokens)");
    assert_eq!(cache.counters.refreshes_failed.load(Ordering::Relaxed), 0);
    assert!(renewed >= 4, "{renewed}");
}

#[tokio::test(start_paused = true)]
async fn forced_refresh_is_skipped_when_another_task_already_refreshed() {
    let (source, h) = fake(HOUR, Duration::ZERO);
    let cache = cache_with(source);
    let used = cache.get().await.unwrap();
    let Forced::New(a) = cache.force_refresh(&used).await else {
        panic!("a new token was expected")
    };
    let Forced::New(b) = cache.force_refresh(&used).await else {
        panic!("the token already replaced was expected")
    };
    assert_eq!(a.generation, 2);
    assert_eq!(b.generation, 2);
    assert_eq!(h.calls(), 2);
}

/// A credential that serves its own cache: `fetch` returns the same token until told to
/// mint; `fetch_fresh` (a new credential instance) returns a new one only if `fresh_helps`.
struct Caching {
    calls: Arc<AtomicU64>,
    fresh_calls: Arc<AtomicU64>,
    minted: Arc<AtomicU64>,
    fresh_helps: bool,
}

impl Caching {
    fn token(&self) -> Token {
        let n = self.minted.load(Ordering::SeqCst);
        Token::expiring_in(format!("{SECRET}-{n}"), HOUR)
    }
}

impl TokenSource for Caching {
    fn fetch<'a>(&'a self, _scope: &'a str) -> BoxFuture<'a, Result<Token, TokenSourceError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let t = self.token();
        Box::pin(async move { Ok(t) })
    }
    fn fetch_fresh<'a>(
        &'a self,
        _scope: &'a str,
    ) -> BoxFuture<'a, Result<Token, TokenSourceError>> {
        self.fresh_calls.fetch_add(1, Ordering::SeqCst);
        if self.fresh_helps {
            self.minted.fetch_add(1, Ordering::SeqCst);
        }
        let t = self.token();
        Box::pin(async move { Ok(t) })
    }
    fn name(&self) -> String {
        "Caching".into()
    }
}

fn caching(fresh_helps: bool) -> (Arc<TokenCache>, Arc<AtomicU64>, Arc<AtomicU64>) {
    let (calls, fresh_calls) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let source = Caching {
        calls: calls.clone(),
        fresh_calls: fresh_calls.clone(),
        minted: Arc::new(AtomicU64::new(0)),
        fresh_helps,
    };
    (cache_with_source(source), calls, fresh_calls)
}

fn cache_with_source(source: impl TokenSource) -> Arc<TokenCache> {
    TokenCache::new(Box::new(source), "scope/.default", RefreshPolicy::default())
}

#[tokio::test(start_paused = true)]
async fn after_a_refusal_the_same_token_is_reported_not_resent_nor_counted_as_a_refresh() {
    let (cache, calls, fresh_calls) = caching(false);
    let used = cache.get().await.unwrap();
    assert_eq!(cache.counters.refreshes_ok.load(Ordering::Relaxed), 1);
    let Forced::Same(same) = cache.force_refresh(&used).await else {
        panic!("the source returns the refused token: nothing new to log in with")
    };
    assert_eq!(same.generation, used.generation);
    assert_eq!(
        fresh_calls.load(Ordering::SeqCst),
        1,
        "a cache-bypassing fetch was asked for"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // Not a refresh: same generation, same counters, counted as a same-token answer.
    assert_eq!(cache.valid_now().unwrap().generation, used.generation);
    assert_eq!(cache.counters.refreshes_ok.load(Ordering::Relaxed), 1);
    assert_eq!(cache.counters.same_token_answers.load(Ordering::Relaxed), 1);
    // The next refusal of the same token within the retry delay asks nobody.
    assert!(matches!(cache.force_refresh(&used).await, Forced::Same(_)));
    assert_eq!(fresh_calls.load(Ordering::SeqCst), 1);
    // After a backoff step (1 s, then 2 s) it asks again.
    tokio::time::sleep(Duration::from_millis(1001)).await;
    assert!(matches!(cache.force_refresh(&used).await, Forced::Same(_)));
    assert_eq!(fresh_calls.load(Ordering::SeqCst), 2);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(matches!(cache.force_refresh(&used).await, Forced::Same(_)));
    assert_eq!(
        fresh_calls.load(Ordering::SeqCst),
        2,
        "the second step is 2 s"
    );
}

#[tokio::test(start_paused = true)]
async fn after_a_refusal_a_cache_bypassing_fetch_gives_a_new_token() {
    let (cache, _calls, fresh_calls) = caching(true);
    let used = cache.get().await.unwrap();
    let Forced::New(new) = cache.force_refresh(&used).await else {
        panic!("a fresh credential instance mints a new token")
    };
    assert_ne!(new.secret.expose(), used.secret.expose());
    assert_eq!(new.generation, used.generation + 1);
    assert_eq!(fresh_calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.counters.refreshes_ok.load(Ordering::Relaxed), 2);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_hint_sets_the_next_attempt() {
    let calls = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let c2 = calls.clone();
    let source = crate::token::sources::FnSource::new("Throttled", move |_| {
        let c = c2.clone();
        async move {
            let mut c = c.lock().unwrap();
            c.push(Instant::now());
            if c.len() == 1 {
                Ok(Token::expiring_in(SECRET, Duration::from_secs(600)))
            } else {
                Err(TokenSourceError::new("429 Too Many Requests")
                    .with_retry_after(Duration::from_secs(7)))
            }
        }
    });
    let cache = TokenCache::new(Box::new(source), "s", RefreshPolicy::default());
    let t0 = Instant::now();
    cache.get().await.unwrap();
    let _r = spawn_refresher(&cache);
    tokio::time::sleep_until(t0 + Duration::from_secs(360)).await;
    let times = calls.lock().unwrap().clone();
    assert_eq!(times[1], t0 + Duration::from_secs(330));
    for w in times[1..].windows(2) {
        assert_eq!(w[1] - w[0], Duration::from_secs(7));
    }
}

/// A source whose calls never answer while `hang` is set when they start (a request to an
/// endpoint that drops packets): the call stays pending even after `hang` is cleared.
fn hanging_source(
    hang: Arc<AtomicBool>,
    calls: Arc<Mutex<Vec<Instant>>>,
) -> crate::token::sources::FnSource {
    crate::token::sources::FnSource::new("Hanging", move |_| {
        let (hang, calls) = (hang.clone(), calls.clone());
        async move {
            let n = {
                let mut calls = calls.lock().unwrap();
                calls.push(Instant::now());
                calls.len()
            };
            if hang.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            Ok(Token::expiring_in(
                format!("{SECRET}-{n}"),
                Duration::from_secs(600),
            ))
        }
    })
}

#[tokio::test(start_paused = true)]
async fn a_token_source_that_never_answers_does_not_stall_the_refresher() {
    let hang = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let source = hanging_source(hang.clone(), calls.clone());
    let cache = TokenCache::new(Box::new(source), "s", RefreshPolicy::default());
    let t0 = Instant::now();
    let first = cache.get().await.unwrap();
    hang.store(true, Ordering::SeqCst);
    let _r = spawn_refresher(&cache);
    // The refresh at 330 s hangs; after 30 s (the default fetch_timeout) it counts as
    // failed and the refresher backs off and calls again.
    tokio::time::sleep_until(t0 + Duration::from_secs(330 + 30 + 1)).await;
    assert_eq!(cache.counters.refreshes_failed.load(Ordering::Relaxed), 1);
    let err = cache.last_error().expect("the hung fetch is recorded");
    assert!(err.contains("within 30 s"), "{err}");
    // Meanwhile the cached token keeps serving.
    assert_eq!(cache.get().await.unwrap().generation, first.generation);
    // The endpoint answers again: a retry (backoff at most 30 s, plus the one still
    // hanging) renews the token well before the old one expires at 600 s.
    hang.store(false, Ordering::SeqCst);
    tokio::time::sleep_until(t0 + Duration::from_secs(330 + 30 + 30 + 30 + 1)).await;
    let now = cache.valid_now().expect("a valid token");
    assert!(
        now.generation > first.generation,
        "no renewal after the hang"
    );
    assert!(cache.last_error().is_none());
    assert!(calls.lock().unwrap().len() >= 3);
}

#[tokio::test(start_paused = true)]
async fn a_login_waiting_behind_a_hung_fetch_gets_an_error_not_a_hang() {
    let hang = Arc::new(AtomicBool::new(true));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let source = hanging_source(hang.clone(), calls.clone());
    let policy = RefreshPolicy {
        fetch_timeout: Some(Duration::from_secs(5)),
        ..RefreshPolicy::default()
    };
    let cache = TokenCache::new(Box::new(source), "s", policy);
    let t0 = Instant::now();
    let (a, b) = tokio::join!(cache.get(), cache.get());
    // Single flight: one call, one shared failure, both after the 5 s limit.
    assert_eq!(Instant::now() - t0, Duration::from_secs(5));
    assert!(a.unwrap_err().cause.contains("within 5 s"));
    assert!(b.is_err());
    assert_eq!(calls.lock().unwrap().len(), 1);
    // With no limit, the same call would wait forever.
    let no_limit = RefreshPolicy {
        fetch_timeout: None,
        ..RefreshPolicy::default()
    };
    let source = hanging_source(hang.clone(), calls.clone());
    let cache = TokenCache::new(Box::new(source), "s", no_limit);
    assert!(
        tokio::time::timeout(Duration::from_secs(3600), cache.get())
            .await
            .is_err()
    );
}

#[tokio::test(start_paused = true)]
async fn a_storm_of_checkouts_during_an_outage_makes_one_identity_call_per_backoff_step() {
    let (source, h) = fake(Duration::from_secs(60), Duration::ZERO);
    let policy = RefreshPolicy {
        min_backoff: Duration::from_secs(5),
        max_backoff: Duration::from_secs(5),
        ..RefreshPolicy::default()
    };
    let cache = TokenCache::new(Box::new(source), "s", policy);
    let t0 = Instant::now();
    cache.get().await.unwrap();
    let _r = spawn_refresher(&cache);
    // The identity endpoint goes down; the refresher's tries fail; the token runs out at
    // 55 s (its last 5 s are not handed out).
    h.fail(true);
    tokio::time::sleep_until(t0 + Duration::from_secs(55)).await;
    assert!(cache.valid_now().is_none());
    let before = h.calls();
    let outage = Duration::from_secs(60);
    let start = Instant::now();
    // 1,000 checkouts spread over the outage, each needing a token.
    let mut errors = 0;
    for i in 0..1000u32 {
        tokio::time::sleep_until(start + outage * i / 1000).await;
        if cache.get().await.is_err() {
            errors += 1;
        }
    }
    let calls = h.calls() - before;
    // One call per 5 s retry delay (12 in 60 s), plus the one that started it.
    let steps = outage.as_secs() / 5;
    assert!(
        calls <= steps + 1,
        "{calls} identity calls for {steps} backoff steps"
    );
    assert!(calls >= steps - 1, "the endpoint was retried: {calls}");
    assert_eq!(errors, 1000);
    // When the endpoint answers again, a token comes within one step.
    h.fail(false);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(cache.get().await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_callers_timeout_does_not_cancel_the_shared_fetch() {
    // A fetch that takes 8 s; the first caller gives up after 2 s.
    let (source, h) = fake(HOUR, Duration::from_secs(8));
    let cache = cache_with(source);
    assert!(
        tokio::time::timeout(Duration::from_secs(2), cache.get())
            .await
            .is_err()
    );
    // The next caller joins the same fetch: it completes at 8 s, one call in all.
    let t = cache.get().await.unwrap();
    assert_eq!(t.generation, 1);
    assert_eq!(h.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_huge_retry_after_is_capped_and_harmless() {
    let calls = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let c2 = calls.clone();
    let source = crate::token::sources::FnSource::new("Throttled", move |_| {
        let c = c2.clone();
        async move {
            c.lock().unwrap().push(Instant::now());
            Err::<Token, _>(
                TokenSourceError::new("429").with_retry_after(Duration::from_secs(u64::MAX)),
            )
        }
    });
    let cache = TokenCache::new(Box::new(source), "s", RefreshPolicy::default());
    let _r = spawn_refresher(&cache);
    let t0 = Instant::now();
    assert!(cache.get().await.is_err());
    assert_eq!(
        cache.retry_at(),
        Some(t0 + crate::token::policy::RETRY_AFTER_CAP)
    );
    tokio::time::sleep(crate::token::policy::RETRY_AFTER_CAP + Duration::from_secs(1)).await;
    let times = calls.lock().unwrap().clone();
    assert_eq!(
        times,
        [t0, t0 + crate::token::policy::RETRY_AFTER_CAP],
        "the refresher retried at the cap"
    );
    assert_eq!(cache.counters.refresher_panics.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn a_zero_min_backoff_does_not_make_a_busy_loop() {
    let (source, h) = fake(HOUR, Duration::ZERO);
    h.fail(true);
    let policy = RefreshPolicy {
        min_backoff: Duration::ZERO,
        max_backoff: Duration::ZERO,
        ..RefreshPolicy::default()
    };
    let cache = TokenCache::new(Box::new(source), "s", policy);
    let _r = spawn_refresher(&cache);
    let _ = cache.get().await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    // At most one call per 100 ms floor.
    assert!(h.calls() <= 101, "{} calls in 10 s", h.calls());
}

/// A source whose fetch never answers and holds `alive` while pending.
fn never_answering(alive: Arc<()>) -> crate::token::sources::FnSource {
    crate::token::sources::FnSource::new("Never", move |_| {
        let alive = alive.clone();
        async move {
            let _held = alive;
            std::future::pending::<Result<Token, TokenSourceError>>().await
        }
    })
}

#[tokio::test(start_paused = true)]
async fn shutdown_wins_over_a_fetch_in_flight() {
    let alive = Arc::new(());
    let policy = RefreshPolicy {
        fetch_timeout: None,
        ..RefreshPolicy::default()
    };
    let cache = TokenCache::new(Box::new(never_answering(alive.clone())), "s", policy);
    let refresher = spawn_refresher(&cache);
    let waiter = {
        let c = cache.clone();
        tokio::spawn(async move { c.get().await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(Arc::strong_count(&alive), 3, "the fetch is pending");
    cache.shut_down();
    let e = tokio::time::timeout(Duration::from_secs(1), waiter)
        .await
        .expect("the waiter was released")
        .unwrap()
        .expect_err("no token");
    assert!(e.cause.contains("closed"), "{e}");
    tokio::time::timeout(Duration::from_secs(1), refresher)
        .await
        .expect("the refresher ended")
        .unwrap();
    tokio::task::yield_now().await;
    assert_eq!(
        Arc::strong_count(&alive),
        2,
        "the pending fetch was dropped"
    );
    drop(cache);
    assert_eq!(
        Arc::strong_count(&alive),
        1,
        "the source was dropped with the cache"
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_cache_ends_a_fetch_in_flight() {
    let alive = Arc::new(());
    let policy = RefreshPolicy {
        fetch_timeout: None,
        ..RefreshPolicy::default()
    };
    let cache = TokenCache::new(Box::new(never_answering(alive.clone())), "s", policy);
    let _ = tokio::time::timeout(Duration::from_secs(1), cache.get()).await;
    assert_eq!(
        Arc::strong_count(&alive),
        3,
        "the fetch is pending in its own task"
    );
    drop(cache);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        Arc::strong_count(&alive),
        1,
        "fetch and source were dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn a_panic_in_the_refresher_is_counted_and_the_refresher_restarted() {
    let (source, h) = fake(HOUR, Duration::ZERO);
    let cache = cache_with(source);
    let t0 = Instant::now();
    cache.get().await.unwrap();
    cache.panic_refresher_once.store(true, Ordering::SeqCst);
    let _r = spawn_refresher(&cache);
    // The first look (at the latest after a minute) panics.
    tokio::time::sleep(Duration::from_secs(62)).await;
    assert_eq!(cache.counters.refresher_panics.load(Ordering::Relaxed), 1);
    // Restarted: it still refreshes at the refresh point (3600 - 270 s).
    tokio::time::sleep_until(t0 + Duration::from_secs(3331)).await;
    assert_eq!(h.calls(), 2);
    assert_eq!(cache.valid_now().unwrap().generation, 2);
}

/// A cache of hour-long fake tokens whose wall clock runs ahead of the real one by the
/// seconds in the returned counter (a machine that was suspended that long).
fn cache_on_a_skewable_wall_clock() -> (Arc<TokenCache>, FakeHandle, Arc<AtomicU64>) {
    let (source, h) = fake(HOUR, Duration::ZERO);
    let skew = Arc::new(AtomicU64::new(0));
    let s2 = skew.clone();
    let wall: WallClock = Arc::new(move || {
        std::time::SystemTime::now() + Duration::from_secs(s2.load(Ordering::SeqCst))
    });
    let cache = TokenCache::with_wall_clock(Box::new(source), "s", RefreshPolicy::default(), wall);
    (cache, h, skew)
}

#[tokio::test(start_paused = true)]
async fn a_token_past_its_wall_clock_expiry_is_not_handed_out_after_a_suspend() {
    let (cache, h, skew) = cache_on_a_skewable_wall_clock();
    cache.get().await.unwrap();
    // The machine sleeps for two hours: the monotonic clock stood still, the wall clock
    // did not.
    skew.store(7200, Ordering::SeqCst);
    assert!(
        cache.valid_now().is_none(),
        "an expired token counts as valid"
    );
    let t = cache.get().await.unwrap();
    assert_eq!(t.generation, 2);
    assert_eq!(h.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_refresher_notices_a_suspend_by_the_wall_clock() {
    let (cache, h, skew) = cache_on_a_skewable_wall_clock();
    cache.get().await.unwrap();
    let _r = spawn_refresher(&cache);
    tokio::time::sleep(Duration::from_secs(10)).await;
    skew.store(7200, Ordering::SeqCst);
    // Within a minute, without any checkout, a new token is there.
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert_eq!(h.calls(), 2);
    assert!(cache.valid_now().is_some());
}

#[tokio::test(start_paused = true)]
async fn a_same_token_answer_for_an_expired_token_is_a_failure_with_backoff() {
    // A credential that keeps its token past expiry (its clock behind ours).
    let calls = Arc::new(AtomicU64::new(0));
    let c2 = calls.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    let source = crate::token::sources::FnSource::new("Stuck", move |_| {
        c2.fetch_add(1, Ordering::SeqCst);
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        async move { Ok(Token::expiring_in(SECRET, left)) }
    });
    let cache = TokenCache::new(Box::new(source), "s", RefreshPolicy::default());
    cache.get().await.unwrap();
    tokio::time::sleep(Duration::from_secs(56)).await;
    let e = cache
        .get()
        .await
        .expect_err("the same, nearly expired token is no answer");
    assert!(e.cause.contains("returned before"), "{e}");
    // Remembered: a burst of checkouts makes no further call.
    for _ in 0..100 {
        assert!(cache.get().await.is_err());
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn refusals_answered_by_one_flight_count_as_one_backoff_step() {
    let (cache, _calls, fresh_calls) = caching(false);
    let used = cache.get().await.unwrap();
    let all = futures_util::future::join_all((0..10).map(|_| cache.force_refresh(&used))).await;
    assert!(all.iter().all(|f| matches!(f, Forced::Same(_))));
    assert_eq!(fresh_calls.load(Ordering::SeqCst), 1);
    // One step (1 s), not ten.
    tokio::time::sleep(Duration::from_millis(1001)).await;
    assert!(matches!(cache.force_refresh(&used).await, Forced::Same(_)));
    assert_eq!(fresh_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_during_a_plain_fetch_still_asks_for_a_fresh_token() {
    let (cache, calls, fresh_calls) = caching(true);
    let used = cache.get().await.unwrap();
    // A plain fetch is in flight (it answers from the credential's cache).
    let plain = {
        let mut flight = lock(&cache.flight);
        cache.join_or_start(&mut flight, false).unwrap().0
    };
    let forced = cache.force_refresh(&used).await;
    let _ = join(plain).await;
    assert!(
        matches!(forced, Forced::New(_)),
        "a fresh fetch followed the plain one"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(fresh_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_refusal_while_a_failure_stands_makes_no_call() {
    let (source, h) = fake(Duration::from_secs(60), Duration::ZERO);
    let cache = cache_with(source);
    let used = cache.get().await.unwrap();
    h.fail(true);
    tokio::time::sleep(Duration::from_secs(56)).await;
    assert!(cache.get().await.is_err(), "a failure now stands");
    let calls = h.calls();
    assert!(matches!(
        cache.force_refresh(&used).await,
        Forced::Failed(_)
    ));
    assert_eq!(h.calls(), calls, "the standing failure answered");
}

#[tokio::test(start_paused = true)]
async fn usable_since_spans_refreshes_without_a_gap_and_restarts_after_one() {
    let (source, h) = fake(Duration::from_secs(60), Duration::ZERO);
    let cache = cache_with(source);
    let t0 = Instant::now();
    cache.get().await.unwrap();
    let _r = spawn_refresher(&cache);
    // Refreshed at 30 s while the first was valid: usable since t0.
    tokio::time::sleep(Duration::from_secs(31)).await;
    let t = cache.valid_now().unwrap();
    assert_eq!(t.generation, 2);
    assert_eq!(t.usable_since, t0);
    // A gap (no valid token), then a new one: usable since it came.
    h.fail(true);
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(cache.valid_now().is_none());
    h.fail(false);
    tokio::time::sleep(Duration::from_secs(31)).await;
    let t = cache.valid_now().expect("a token after the gap");
    assert!(
        t.usable_since > t0 + Duration::from_secs(60),
        "{:?}",
        t.usable_since - t0
    );
}

#[tokio::test(start_paused = true)]
async fn recent_tokens_keep_the_latest_four() {
    let (source, _h) = fake(Duration::from_secs(60), Duration::ZERO);
    let cache = cache_with(source);
    cache.get().await.unwrap();
    let _r = spawn_refresher(&cache);
    // A refresh every 30 s: six tokens in 160 s.
    tokio::time::sleep(Duration::from_secs(160)).await;
    assert_eq!(cache.valid_now().unwrap().generation, 6);
    let recent = cache.recent_tokens();
    assert!(recent.iter().all(Option::is_some));
    let times: Vec<Instant> = recent.iter().map(|t| t.unwrap().0).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "oldest first");
    // The last one is the current token's.
    assert_eq!(
        recent[RECENT_TOKENS - 1].unwrap().1,
        cache.valid_now().unwrap().deadline
    );
}

#[tokio::test(start_paused = true)]
async fn a_password_is_not_an_identity_call() {
    let cache = TokenCache::fixed(
        crate::token::sources::StaticPassword::new("pw"),
        RefreshPolicy::default(),
    );
    cache.get().await.unwrap();
    assert_eq!(cache.counters.identity_calls.load(Ordering::Relaxed), 0);
    assert_eq!(cache.counters.refreshes_ok.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn another_token_is_asked_for_at_least_every_five_seconds_while_refused() {
    let (cache, _calls, fresh_calls) = caching(false);
    let used = cache.get().await.unwrap();
    for i in 1..=6u64 {
        assert!(matches!(cache.force_refresh(&used).await, Forced::Same(_)));
        assert_eq!(
            fresh_calls.load(Ordering::SeqCst),
            i,
            "asked again after the hold"
        );
        tokio::time::sleep(MAX_REFUSAL_HOLD + Duration::from_millis(1)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_token_is_not_handed_out_in_its_last_tenth_or_five_seconds() {
    // 20 s token: its last 2 s (a tenth) are withheld.
    let (source, _h) = fake(Duration::from_secs(20), Duration::ZERO);
    let cache = cache_with(source);
    let t0 = Instant::now();
    cache.get().await.unwrap();
    tokio::time::sleep_until(t0 + Duration::from_millis(17_900)).await;
    assert!(cache.valid_now().is_some());
    tokio::time::sleep_until(t0 + Duration::from_secs(18)).await;
    assert!(cache.valid_now().is_none());
}

#[tokio::test(start_paused = true)]
async fn what_the_pool_reads_from_the_cache() {
    let (source, h) = fake(Duration::from_secs(60), Duration::ZERO);
    let cache = cache_with(source);
    assert_eq!(cache.shortest_lifetime(), None);
    assert!(cache.can_refresh());
    let first = cache.get().await.unwrap();
    assert_eq!(cache.source_name(), "Fake");
    assert_eq!(cache.shortest_lifetime(), Some(Duration::from_secs(60)));
    assert!(!format!("{first:?}").contains(SECRET), "{first:?}");
    assert!(format!("{first:?}").contains("redacted"));
    let valid = |c: &TokenCache| c.with_valid(Instant::now(), |t| t.generation);
    assert_eq!(valid(&cache), Some(first.generation));
    // The last 5 s of its life are withheld.
    tokio::time::sleep(Duration::from_millis(54_500)).await;
    assert!(cache.valid_now().is_some());
    assert!(valid(&cache).is_some());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(valid(&cache).is_none());
    // A refresh: the previous deadline is known for what happened since before it.
    let before = Instant::now();
    h.fail(true);
    assert!(cache.force_refresh(&first).await.is_failed());
    let failed_at = cache.failing_since().expect("failing");
    assert_eq!(failed_at, before);
    h.fail(false);
    tokio::time::sleep_until(cache.retry_at().unwrap()).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = match cache.force_refresh(&first).await {
        Forced::New(t) => t,
        _ => panic!("a new token"),
    };
    assert_eq!(cache.failing_since(), None);
    assert_eq!(cache.previous_deadline_since(before), first.deadline);
    assert_eq!(
        cache.previous_deadline_since(Instant::now() + Duration::from_secs(1)),
        None
    );
    assert!(second.generation > first.generation);
    let slow = RefreshPolicy {
        min_backoff: Duration::from_secs(3),
        ..RefreshPolicy::default()
    };
    let password = TokenCache::fixed(
        crate::token::sources::StaticPassword::new("pw"),
        slow.clone(),
    );
    assert!(!password.can_refresh());
    assert_eq!(
        password.policy(),
        &slow,
        "its backoff paces the probe logins"
    );
}

/// A credential whose cache-bypassing fetch is slow (600 ms) and returns the same token.
struct SlowFresh {
    fresh_calls: Arc<AtomicU64>,
}

impl TokenSource for SlowFresh {
    fn fetch<'a>(&'a self, _scope: &'a str) -> BoxFuture<'a, Result<Token, TokenSourceError>> {
        Box::pin(async move { Ok(Token::expiring_in(SECRET, HOUR)) })
    }
    fn fetch_fresh<'a>(
        &'a self,
        _scope: &'a str,
    ) -> BoxFuture<'a, Result<Token, TokenSourceError>> {
        self.fresh_calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(600)).await;
            Ok(Token::expiring_in(SECRET, HOUR))
        })
    }
    fn name(&self) -> String {
        "SlowFresh".into()
    }
}

/// The hold after the source returned a refused token is the fetch's, not its waiters':
/// checkouts cut off by their `create_timeout` (300 ms) before the slow fresh fetch
/// (600 ms) ends still leave the 1, 2, 4, 5 s steps between asks, not one ask for each.
#[tokio::test(start_paused = true)]
async fn cancelled_waiters_keep_the_hold_between_fresh_fetches() {
    let fresh_calls = Arc::new(AtomicU64::new(0));
    let cache = cache_with_source(SlowFresh {
        fresh_calls: fresh_calls.clone(),
    });
    let used = cache.get().await.unwrap();
    // A refused login every second for 20 s, each cut off after 300 ms.
    for _ in 0..20 {
        let _ = tokio::time::timeout(Duration::from_millis(300), cache.force_refresh(&used)).await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    let n = fresh_calls.load(Ordering::SeqCst);
    // With the hold: asks at 0, 2, 5, 10 and 16 s.
    assert!(n <= 6, "{n} fresh fetches in 20 s");
    assert!(n >= 4, "{n}: it does ask again after each step");
}

/// A source whose tokens live 10 ms (a clock far off, a buggy source): the refresher
/// renews at most once per `min_backoff` (1 s), not every half-life.
#[tokio::test(start_paused = true)]
async fn tokens_that_live_milliseconds_are_not_refreshed_in_a_tight_loop() {
    let (source, h) = fake(Duration::from_millis(10), Duration::ZERO);
    let cache = cache_with(source);
    cache.get().await.unwrap();
    let _refresher = spawn_refresher(&cache);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let n = h.calls();
    assert!(n <= 12, "{n} identity calls in 10 s");
    assert!(n >= 5, "{n}: it does renew");
}
