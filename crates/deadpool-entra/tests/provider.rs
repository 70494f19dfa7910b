//! Several pools on one `TokenProvider`, against the emulator: a writer and a read-replica
//! pool share one token, one refresher and one identity call per refresh.

use std::time::Duration;

use deadpool_entra::{Pool, RefreshPolicy, RetirePolicy, TokenProvider};
use entra_emulator::OSSRDBMS_SCOPE;

mod common;

use common::{builder, emulator, light_load, source};

/// Short tokens (4 s): the refresher renews at half-life, every 2 s.
const LIFETIME: Duration = Duration::from_secs(4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_and_a_replica_pool_make_one_identity_call_per_refresh_together() {
    let emu = emulator().await;
    let mi = emu.default_identity().name.clone();
    let (src, calls) = source(&emu, &mi, LIFETIME);
    let tokens = TokenProvider::new(src, OSSRDBMS_SCOPE, RefreshPolicy::default());
    let policy = RetirePolicy {
        sweep_interval: Duration::from_millis(200),
        ..RetirePolicy::default()
    };
    let build = |port: u16| {
        builder(&emu)
            .port(port)
            .user(mi.clone())
            .max_size(4)
            .retire_policy(policy.clone())
            .token_provider(&tokens)
            .build()
    };
    let writer: Pool = build(emu.pg_port()).await.unwrap();
    let reader: Pool = build(emu.replica_pg_port()).await.unwrap();
    assert_eq!(tokens.stats().identity_calls, 1, "one first token for both");

    let run = LIFETIME * 3;
    let (w, r) = tokio::join!(
        light_load(&writer, 2, Duration::from_millis(50), run),
        light_load(&reader, 2, Duration::from_millis(50), run)
    );
    assert_eq!((w, r), (0, 0));
    let shared = tokens.stats();
    let (ws, rs) = (writer.stats(), reader.stats());
    eprintln!("provider {shared:?}\nwriter {ws:?}\nreader {rs:?}");
    // Both pools see the same token counters: there is one cache.
    assert_eq!(ws.token.identity_calls, shared.identity_calls);
    assert_eq!(rs.token.identity_calls, shared.identity_calls);
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        shared.identity_calls
    );
    // 12 s of 4 s tokens renewed at half-life: the first token and about 6 refreshes, for
    // both pools together (two caches would make about 14 calls).
    assert!(shared.identity_calls <= 9, "{shared:?}");
    assert!(shared.refreshes_ok >= 5, "{shared:?}");
    // Each pool retires its own connections by the shared token's expiry.
    assert!(ws.retired_token_age > 0 && rs.retired_token_age > 0);

    // Closing one pool leaves the provider running: the other keeps logging in across
    // the next expiries.
    writer.close();
    let before = tokens.stats().refreshes_ok;
    assert_eq!(
        light_load(&reader, 2, Duration::from_millis(50), LIFETIME * 2).await,
        0
    );
    let after = reader.stats();
    assert!(after.token.refreshes_ok >= before + 2, "{after:?}");
    assert!(after.logins_ok > rs.logins_ok, "{after:?}");
    reader.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_source_and_a_provider_together_are_a_configuration_error() {
    let emu = emulator().await;
    let mi = emu.default_identity().name.clone();
    let (a, _) = source(&emu, &mi, LIFETIME);
    let (b, _) = source(&emu, &mi, LIFETIME);
    let tokens = TokenProvider::new(a, OSSRDBMS_SCOPE, RefreshPolicy::default());
    let e = builder(&emu)
        .user(mi)
        .token_source(b)
        .token_provider(&tokens)
        .build()
        .await
        .unwrap_err();
    assert!(e.to_string().contains("give one"), "{e}");
    assert_eq!(tokens.stats().identity_calls, 0);
}
