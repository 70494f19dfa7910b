//! The pool's metrics, read back from a recording `metrics` recorder installed once for
//! this test binary. Snapshots reset what they read, so the tests take turns.
#![cfg(feature = "metrics")]

mod common;

use std::{collections::HashSet, sync::OnceLock, time::Duration};

use common::{HOUR, builder, emulator, source};
use deadpool_entra::RetirePolicy;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

const POOL_NAME: &str = "db.client.connection.pool.name";

/// The recorder's reader; the recorder is installed on first use.
fn snapshotter() -> &'static Snapshotter {
    static SNAPSHOTTER: OnceLock<Snapshotter> = OnceLock::new();
    SNAPSHOTTER.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let s = recorder.snapshotter();
        recorder
            .install()
            .expect("the only recorder of this binary");
        s
    })
}

/// One test at a time: a snapshot resets the values it reads.
async fn turn() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

/// The gauges (name, pool name, value) recorded since the last snapshot.
fn gauges() -> Vec<(String, String, f64)> {
    snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(ck, _, _, v)| {
            let DebugValue::Gauge(g) = v else { return None };
            let pool = ck
                .key()
                .labels()
                .find(|l| l.key() == POOL_NAME)
                .map(|l| l.value().to_owned())?;
            Some((ck.key().name().to_owned(), pool, g.into_inner()))
        })
        .collect()
}

fn fast_sweeps() -> RetirePolicy {
    RetirePolicy {
        sweep_interval: Duration::from_millis(50),
        ..RetirePolicy::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pools_for_two_databases_on_one_server_write_two_series() {
    snapshotter();
    let _turn = turn().await;
    let emu = emulator().await;
    emu.cluster()
        .execute("postgres", "CREATE DATABASE reports")
        .await
        .expect("a second database");
    let mi = emu.default_identity().name.clone();
    let mut pools = Vec::new();
    for db in [emu.database(), "reports"] {
        let (src, _) = source(&emu, &mi, HOUR);
        let pool = builder(&emu)
            .dbname(db)
            .token_source(src)
            .user(mi.clone())
            .min_connections(1)
            .retire_policy(fast_sweeps())
            .build()
            .await
            .unwrap();
        pool.get()
            .await
            .unwrap()
            .simple_query("SELECT 1")
            .await
            .unwrap();
        pools.push(pool);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let names: HashSet<String> = gauges()
        .into_iter()
        .filter(|(name, _, v)| name == "db.client.connection.max" && *v > 0.0)
        .map(|(_, pool, _)| pool)
        .collect();
    let endpoint = format!("{}:{}", emu.pg_host(), emu.pg_port());
    let expected: HashSet<String> = [
        format!("{endpoint}/{}", emu.database()),
        format!("{endpoint}/reports"),
    ]
    .into();
    assert_eq!(
        names, expected,
        "one series per pool, named host:port/database"
    );
    for p in pools {
        p.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pool_reports_no_connections() {
    snapshotter();
    let _turn = turn().await;
    let emu = emulator().await;
    let mi = emu.default_identity().name.clone();
    let (src, _) = source(&emu, &mi, HOUR);
    let pool = builder(&emu)
        .token_source(src)
        .user(mi)
        .pool_name("closing")
        .min_connections(2)
        .retire_policy(fast_sweeps())
        .build()
        .await
        .unwrap();
    let busy = pool.get().await.unwrap();
    busy.simple_query("SELECT 1").await.unwrap();
    // Sampled by the sweeper: connections, and a token.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let open: f64 = gauges()
            .iter()
            .filter(|(n, p, _)| p == "closing" && n == "db.client.connection.count")
            .map(|(_, _, v)| v)
            .sum();
        if open >= 2.0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never sampled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Sampled again since that snapshot, then closed.
    tokio::time::sleep(Duration::from_millis(200)).await;
    pool.close();
    drop(busy);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left: Vec<_> = gauges()
        .into_iter()
        .filter(|(_, p, v)| p == "closing" && *v != 0.0)
        .collect();
    assert!(left.is_empty(), "a closed pool still reports {left:?}");
}
