//! The token's metrics, read back from a recorder local to each test (tokio's paused,
//! current-thread runtime runs the fetch tasks on the test's thread, where the recorder
//! is installed).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use tokio::time::Instant;

use super::cache::TokenCache;
use crate::{
    token::policy::RefreshPolicy, token::source::BoxFuture, token::source::Token,
    token::source::TokenSource, token::source::TokenSourceError, token::sources::FnSource,
};

/// One series: its name, its labels, its value.
struct Series {
    name: String,
    labels: Vec<(String, String)>,
    value: DebugValue,
}

impl Series {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn read(recorder: &DebuggingRecorder) -> Vec<Series> {
    recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(ck, _, _, value)| Series {
            name: ck.key().name().to_owned(),
            labels: ck
                .key()
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect(),
            value,
        })
        .collect()
}

/// The sum of the counters named `name` whose labels include `labels`.
fn counter(series: &[Series], name: &str, labels: &[(&str, &str)]) -> u64 {
    series
        .iter()
        .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
        .map(|s| match s.value {
            DebugValue::Counter(n) => n,
            _ => 0,
        })
        .sum()
}

fn refreshes(series: &[Series], outcome: &str) -> u64 {
    counter(
        series,
        "deadpool_entra.token.refreshes",
        &[("outcome", outcome)],
    )
}

#[tokio::test(start_paused = true)]
async fn a_same_but_expired_answer_is_counted_once_as_a_failed_refresh() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    // A credential that keeps its token past expiry (its clock behind ours).
    let deadline = Instant::now() + Duration::from_secs(60);
    let source = FnSource::new("Stuck", move |_| {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        async move { Ok(Token::expiring_in("stuck-token", left)) }
    });
    let cache = TokenCache::new(Box::new(source), "s", RefreshPolicy::default());
    cache.get().await.unwrap();
    tokio::time::sleep(Duration::from_secs(56)).await;
    cache
        .get()
        .await
        .expect_err("the same, nearly expired token");

    let series = read(&recorder);
    assert_eq!(refreshes(&series, "ok"), 1);
    assert_eq!(refreshes(&series, "failed"), 1, "the second fetch failed");
    assert_eq!(
        refreshes(&series, "same_token"),
        0,
        "an expired same token is not a same-token answer as well"
    );
    // The stats say the same.
    let c = &cache.counters;
    assert_eq!(c.refreshes_ok.load(Ordering::Relaxed), 1);
    assert_eq!(c.refreshes_failed.load(Ordering::Relaxed), 1);
    assert_eq!(c.same_token_answers.load(Ordering::Relaxed), 0);
}

/// Named like the credential chain: `ChainSource` until a link answers, then the link.
struct Chainlike {
    chosen: AtomicBool,
    calls: AtomicU64,
}

impl TokenSource for Chainlike {
    fn fetch<'a>(&'a self, _scope: &'a str) -> BoxFuture<'a, Result<Token, TokenSourceError>> {
        Box::pin(async move {
            self.chosen.store(true, Ordering::SeqCst);
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(Token::expiring_in(
                format!("token-{n}"),
                Duration::from_secs(3600),
            ))
        })
    }
    fn name(&self) -> String {
        if self.chosen.load(Ordering::SeqCst) {
            "AzureCliCredential".into()
        } else {
            "ChainSource".into()
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_token_source_label_names_the_link_that_answered() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let source = Chainlike {
        chosen: AtomicBool::new(false),
        calls: AtomicU64::new(0),
    };
    let cache = TokenCache::new(Box::new(source), "s", RefreshPolicy::default());
    cache.get().await.unwrap();
    assert_eq!(cache.source_name(), "AzureCliCredential");

    let series = read(&recorder);
    let token_series: Vec<_> = series
        .iter()
        .filter(|s| s.name.starts_with("deadpool_entra.token."))
        .collect();
    assert!(!token_series.is_empty());
    for s in &token_series {
        assert_eq!(
            s.label("token.source"),
            Some("AzureCliCredential"),
            "{} names the source as stats() does",
            s.name
        );
    }
    let link = [("token.source", "AzureCliCredential")];
    assert_eq!(
        counter(&series, "deadpool_entra.token.identity_calls", &link),
        1
    );
    assert_eq!(counter(&series, "deadpool_entra.token.refreshes", &link), 1);
}

/// A source that names itself anew on every call.
struct Restless(AtomicU64);

impl TokenSource for Restless {
    fn fetch<'a>(&'a self, _scope: &'a str) -> BoxFuture<'a, Result<Token, TokenSourceError>> {
        Box::pin(async move {
            let n = self.0.fetch_add(1, Ordering::SeqCst);
            Ok(Token::expiring_in(
                format!("t-{n}"),
                Duration::from_secs(3600),
            ))
        })
    }
    fn name(&self) -> String {
        format!("Restless-{}", self.0.load(Ordering::SeqCst))
    }
}

#[tokio::test(start_paused = true)]
async fn a_source_that_keeps_renaming_itself_makes_few_series() {
    let recorder = DebuggingRecorder::new();
    let _local = metrics::set_default_local_recorder(&recorder);
    let cache = TokenCache::new(
        Box::new(Restless(AtomicU64::new(0))),
        "s",
        RefreshPolicy::default(),
    );
    let mut calls = 0;
    for _ in 0..100 {
        let t = cache.get().await.unwrap();
        cache.force_refresh(&t).await;
        calls += 1;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let series = read(&recorder);
    let sources: std::collections::HashSet<_> = series
        .iter()
        .filter_map(|s| s.label("token.source"))
        .collect();
    assert!(sources.len() <= 17, "{} token sources", sources.len());
    // Nothing is lost: the calls beyond the bound are counted under one label.
    assert!(counter(&series, "deadpool_entra.token.identity_calls", &[]) >= calls);
}
