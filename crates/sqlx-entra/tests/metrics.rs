//! The sqlx pool's metrics, read back from a recording `metrics` recorder installed once
//! for this test binary: deadpool-entra's names, from the same handles.
#![cfg(feature = "metrics")]

mod common;

use std::{sync::Arc, time::Duration};

use common::{LIFETIME, config, emulator, source};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use sqlx_entra::PoolBuilder;

const POOL_NAME: &str = "db.client.connection.pool.name";

fn snapshotter() -> Snapshotter {
    let recorder = DebuggingRecorder::new();
    let s = recorder.snapshotter();
    recorder
        .install()
        .expect("the only recorder of this binary");
    s
}

/// Every value recorded for the pool `pool`: (name, labels other than the pool's, value).
fn values(s: &Snapshotter, pool: &str) -> Vec<(String, Vec<String>, f64)> {
    s.snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(ck, _, _, v)| {
            let key = ck.key();
            key.labels()
                .find(|l| l.key() == POOL_NAME && l.value() == pool)?;
            let labels = key
                .labels()
                .filter(|l| l.key() != POOL_NAME)
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let v = match v {
                DebugValue::Counter(c) => c as f64,
                DebugValue::Gauge(g) => g.into_inner(),
                DebugValue::Histogram(h) => h.len() as f64,
            };
            Some((key.name().to_owned(), labels, v))
        })
        .collect()
}

fn value(vs: &[(String, Vec<String>, f64)], name: &str, labels: &[&str]) -> f64 {
    vs.iter()
        .filter(|(n, l, _)| n == name && labels.iter().all(|w| l.iter().any(|x| x == w)))
        .map(|(_, _, v)| v)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlx_pool_writes_deadpool_entras_names_and_a_closed_pool_reads_zero() {
    let snap = snapshotter();
    let emu = emulator().await;
    let mi = emu.default_identity().name.clone();
    let (src, _) = source(&emu, &mi, LIFETIME * 900, Arc::default());
    let mut cfg = config(&emu, &mi, 3);
    cfg.min_connections = 2;
    cfg.pool_name = Some("sqlx-metrics".into());
    let pool = PoolBuilder::new(cfg)
        .token_source(src)
        .build()
        .await
        .unwrap();
    sqlx::query("SELECT 1").execute(&*pool).await.unwrap();
    // The watcher samples the gauges once a tick (200 ms here).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    loop {
        seen.extend(values(&snap, "sqlx-metrics"));
        if value(&seen, "db.client.connection.count", &[]) >= 2.0
            && value(&seen, "deadpool_entra.token.time_to_expiry", &[]) > 0.0
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never sampled: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        value(
            &seen,
            "deadpool_entra.logins",
            &["outcome=ok", "origin=background"]
        ) >= 2.0,
        "{seen:?}"
    );
    assert_eq!(
        value(&seen, "db.client.connection.max", &[]),
        3.0,
        "{seen:?}"
    );
    assert_eq!(
        value(&seen, "db.client.connection.idle.min", &[]),
        2.0,
        "{seen:?}"
    );
    let ttl = value(&seen, "deadpool_entra.token.time_to_expiry", &[]);
    assert!(ttl <= 3600.0, "{ttl}");
    // Sampled again since that snapshot (a snapshot resets what it reads), then closed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    pool.close().await;
    // Closed: the watcher zeroes the gauges.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = values(&snap, "sqlx-metrics");
    for name in [
        "db.client.connection.count",
        "db.client.connection.max",
        "deadpool_entra.token.time_to_expiry",
    ] {
        assert!(after.iter().any(|(n, _, _)| n == name), "{name}: {after:?}");
        assert_eq!(value(&after, name, &[]), 0.0, "{name}: {after:?}");
    }
}
