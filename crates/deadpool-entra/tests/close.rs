//! Closing a pool, against the emulator: after `close()` (ours or deadpool's own, through
//! `inner()`), no session of the pool stays on the server and no identity call follows,
//! even when the close races with spares logging in.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use deadpool_entra::{Pool, RetirePolicy};
use entra_emulator::Emulator;

mod common;

use common::{builder, emulator, source};

/// Short tokens: spares log in all the time (a rotation every 2 s).
const LIFETIME: Duration = Duration::from_secs(2);

/// Server sessions whose `application_name` is `app`.
async fn sessions(emu: &Emulator, app: &str) -> usize {
    let rows = emu
        .cluster()
        .execute(
            emu.database(),
            &format!("SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}'"),
        )
        .await
        .expect("pg_stat_activity");
    rows[0][0].as_deref().unwrap_or("0").parse().unwrap()
}

/// Waits up to 5 s for the sessions of `app` to be gone; returns how many remain.
async fn sessions_after_close(emu: &Emulator, app: &str) -> usize {
    let mut left = usize::MAX;
    for _ in 0..50 {
        left = sessions(emu, app).await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    left
}

async fn pool(emu: &Arc<Emulator>, app: &str) -> (Pool, Arc<std::sync::atomic::AtomicU64>) {
    let mi = emu.default_identity().name.clone();
    let (src, calls) = source(emu, &mi, LIFETIME);
    let pool = builder(emu)
        .token_source(src)
        .user(mi)
        .application_name(app)
        .max_size(4)
        .min_connections(3)
        .retire_policy(RetirePolicy {
            sweep_interval: Duration::from_millis(20),
            ..RetirePolicy::default()
        })
        .build()
        .await
        .unwrap();
    (pool, calls)
}

/// Closed at many moments of a rotation (some while spares log in): nothing stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_close_no_session_stays_and_no_identity_call_follows() {
    let emu = emulator().await;
    for round in 0..5u64 {
        let app = format!("close-{round}");
        let (pool, calls) = pool(&emu, &app).await;
        tokio::time::sleep(LIFETIME / 2 + Duration::from_millis(round * 250)).await;
        pool.close();
        let left = sessions_after_close(&emu, &app).await;
        assert_eq!(
            left,
            0,
            "round {round}: sessions left after close: {:?}",
            pool.stats()
        );
        let before = calls.load(Ordering::SeqCst);
        tokio::time::sleep(LIFETIME).await;
        assert_eq!(
            calls.load(Ordering::SeqCst),
            before,
            "round {round}: identity called after close"
        );
        assert_eq!(
            sessions(&emu, &app).await,
            0,
            "round {round}: a session came back"
        );
    }
}

/// deadpool's own `close()`, which the design page shows through `inner()`, stops the
/// pool's background work too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_the_inner_pool_stops_the_refresher_and_the_spares() {
    let emu = emulator().await;
    let app = "close-inner";
    let (pool, calls) = pool(&emu, app).await;
    tokio::time::sleep(LIFETIME / 2).await;
    pool.inner().close();
    let left = sessions_after_close(&emu, app).await;
    assert_eq!(
        left,
        0,
        "sessions left after inner().close(): {:?}",
        pool.stats()
    );
    let before = calls.load(Ordering::SeqCst);
    tokio::time::sleep(LIFETIME * 2).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        before,
        "identity called after close"
    );
    assert!(matches!(
        pool.get().await,
        Err(deadpool_entra::Error::Closed)
    ));
}
