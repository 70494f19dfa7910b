//! The axum example's `/metrics`, scraped before and after a token rotation: the pool's
//! and the token's metrics are there, and they move.
//!
//! Its own test binary: it installs the process-wide Prometheus recorder.

mod common;

use std::time::Duration;

use deadpool_entra::{Config, RetirePolicy};
use deadpool_entra_examples::{notes, notes_axum};
use entra_emulator::Emulator;
use metrics_exporter_prometheus::PrometheusBuilder;

/// Tokens live 6 s: a run of 14 s crosses two refreshes and retires every connection.
const LIFETIME: Duration = Duration::from_secs(6);

/// The sum of the samples of `name` (Prometheus' sanitised name, matched as a prefix so
/// that a `_total` or unit suffix does not matter) whose labels contain each of `labels`.
fn value(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, v)) = line.rsplit_once(' ') else {
            continue;
        };
        let metric = series.split('{').next().unwrap_or_default();
        if metric.starts_with(name) && labels.iter().all(|l| series.contains(l)) {
            let v: f64 = v.parse().unwrap_or(f64::NAN);
            found = Some(found.unwrap_or(0.0) + v);
        }
    }
    found
}

/// `GET /notes`, which must succeed.
async fn list_notes(http: &reqwest::Client, base: &str) {
    let res = http.get(format!("{base}/notes")).send().await.unwrap();
    assert!(res.status().is_success(), "{}", res.status());
}

async fn scrape(http: &reqwest::Client, base: &str) -> String {
    let res = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert!(res.status().is_success());
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    res.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_across_a_token_rotation() {
    tokio::time::timeout(common::TEST_TIMEOUT, async {
        // First the recorder, then the pool: the pool registers its metrics with it.
        let prometheus = PrometheusBuilder::new().install_recorder().unwrap();
        deadpool_entra_examples::init_tracing("warn");
        let emulator = Emulator::builder()
            .token_lifetime(LIFETIME)
            .token_cache_window(LIFETIME * 6 / 10)
            .start()
            .await
            .expect("emulator starts");
        let pool = Config::from_env_vars(emulator.env())
            .unwrap()
            .builder()
            .token_source(common::managed_identity_over_http(&emulator))
            .pool_name("notes")
            .max_size(4)
            .retire_policy(RetirePolicy {
                sweep_interval: Duration::from_millis(200),
                ..RetirePolicy::default()
            })
            .build()
            .await
            .unwrap();
        notes::migrate(&pool).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(notes_axum::serve(
            listener,
            pool.clone(),
            Some(prometheus),
            async {
                let _ = stop_rx.await;
            },
        ));
        let http = reqwest::Client::new();
        let pool_label = r#"db_client_connection_pool_name="notes""#;

        // Some requests, then the first scrape.
        for _ in 0..10 {
            list_notes(&http, &base).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = scrape(&http, &base).await;
        let ttl_before = value(
            &before,
            "deadpool_entra_token_time_to_expiry",
            &[pool_label],
        )
        .expect("the token's time to expiry");
        assert!(ttl_before > 0.0 && ttl_before <= 6.0, "{ttl_before}");
        let max = value(&before, "db_client_connection_max", &[pool_label]);
        assert_eq!(max, Some(4.0));
        let open = value(&before, "db_client_connection_count", &[pool_label]).unwrap_or(0.0);
        assert!(open >= 1.0, "{before}");

        // Requests across more than two token lifetimes.
        let until = tokio::time::Instant::now() + LIFETIME * 2 + Duration::from_secs(2);
        while tokio::time::Instant::now() < until {
            list_notes(&http, &base).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let after = scrape(&http, &base).await;
        eprintln!("{after}");

        let moved = |name: &str, labels: &[&str]| {
            let a = value(&before, name, labels).unwrap_or(0.0);
            let b =
                value(&after, name, labels).unwrap_or_else(|| panic!("{name} {labels:?} missing"));
            assert!(b > a, "{name} {labels:?}: {a} then {b}");
        };
        moved("deadpool_entra_token_refreshes", &[r#"outcome="ok""#]);
        moved("deadpool_entra_token_identity_calls", &[]);
        moved("deadpool_entra_token_fetch_time", &[]);
        moved(
            "deadpool_entra_retirements",
            &[pool_label, r#"reason="token_age""#],
        );
        moved(
            "deadpool_entra_logins",
            &[pool_label, r#"outcome="ok""#, r#"origin="background""#],
        );
        moved("db_client_connection_wait_time_count", &[pool_label]);
        moved("db_client_connection_create_time_count", &[pool_label]);
        // The token was replaced: its age restarted below the first reading's lifetime.
        let ttl_after =
            value(&after, "deadpool_entra_token_time_to_expiry", &[pool_label]).unwrap();
        assert!(ttl_after > 0.0 && ttl_after <= 6.0, "{ttl_after}");
        let age = value(&after, "deadpool_entra_token_age", &[pool_label]).unwrap();
        assert!(
            age < 6.0,
            "the token in use is younger than one lifetime: {age}"
        );
        // No token ever reaches the metrics.
        assert!(!after.contains("eyJ"), "a JWT in the metrics");

        stop_tx.send(()).unwrap();
        server.await.unwrap().unwrap();
        pool.close();
        emulator.shutdown().await;
    })
    .await
    .expect("test finished in time");
}
