//! Several hosts, chosen as libpq chooses: a `hostaddr` list that leaves some hosts to
//! their names, and libpq 14's `target_session_attrs` (`primary`, `standby`,
//! `prefer-standby`), which ask the server whether it is in recovery.
//!
//! The emulator's replica front is read-only (`default_transaction_read_only`) but not in
//! recovery, like every node it has: `pg_is_in_recovery()` is false everywhere. So these
//! tests prove what a server out of recovery means for each mode; a server in recovery
//! is covered by the unit tests of the decision (`hosts::fit`).

use std::time::Duration;

use deadpool_entra::{Config, Pool};

mod common;

use common::{HOUR, emulator, source};

/// The pool for a connection string, with the emulator's tokens.
async fn pool(emu: &std::sync::Arc<entra_emulator::Emulator>, conninfo: String) -> Pool {
    let mi = emu.default_identity().name.clone();
    let (src, _) = source(emu, &mi, HOUR);
    conninfo
        .parse::<Config>()
        .unwrap_or_else(|e| panic!("{conninfo}: {e}"))
        .builder()
        .token_source(src)
        .max_size(1)
        .create_timeout(Some(Duration::from_secs(10)))
        .build()
        .await
        .expect("pool builds")
}

fn conninfo(emu: &entra_emulator::Emulator, rest: &str) -> String {
    format!(
        "{rest} dbname={} sslrootcert={} connect_timeout=5",
        emu.database(),
        emu.ca_cert_path().display()
    )
}

/// `SHOW transaction_read_only` of a fresh session: `on` on the replica front.
async fn read_only(pool: &Pool) -> String {
    let c = pool.get().await.expect("a connection");
    c.query_one("SHOW transaction_read_only", &[])
        .await
        .unwrap()
        .get(0)
}

/// `hostaddr=,127.0.0.1`: the first host's name is resolved, the second is reached at its
/// address and never resolved (its name, under the emulator certificate's
/// `*.postgres.database.azure.com`, resolves nowhere here); TLS verifies each name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_without_an_address_is_resolved_and_one_with_an_address_is_not() {
    let emu = emulator().await;
    let unresolvable = "nowhere.postgres.database.azure.com";
    let hosts = |attrs: &str, addrs: &str| {
        conninfo(
            &emu,
            &format!(
                "host=localhost,{unresolvable} hostaddr={addrs} port={},{} target_session_attrs={attrs}",
                emu.replica_pg_port(),
                emu.pg_port()
            ),
        )
    };
    // `any`: the first host, by its name: the replica.
    let p = pool(&emu, hosts("any", ",127.0.0.1")).await;
    assert_eq!(read_only(&p).await, "on");
    p.close();
    // `read-write` skips the replica: the second host, by its address.
    let p = pool(&emu, hosts("read-write", ",127.0.0.1")).await;
    assert_eq!(read_only(&p).await, "off");
    p.close();
    // The other way round: the first by its address, the second by its name.
    let first = conninfo(
        &emu,
        &format!(
            "host={unresolvable},localhost hostaddr=127.0.0.1, port={},{}",
            emu.pg_port(),
            emu.replica_pg_port()
        ),
    );
    let p = pool(&emu, first).await;
    assert_eq!(read_only(&p).await, "off");
    p.close();
    assert_eq!(emu.counters().logins_accepted, 4);
}

/// `standby` with no server in recovery: every session is closed, and the error names
/// the mode and what to do; the pool keeps none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standby_without_a_server_in_recovery_is_a_typed_error() {
    let emu = emulator().await;
    let s = conninfo(
        &emu,
        &format!(
            "host=127.0.0.1,localhost port={},{} target_session_attrs=standby",
            emu.replica_pg_port(),
            emu.pg_port()
        ),
    );
    let p = pool(&emu, s).await;
    let e = p.get().await.expect_err("no standby");
    assert_eq!(e.kind().as_str(), "wrong-server-role", "{e:?}");
    let text = e.to_string();
    assert!(text.contains("target_session_attrs=standby"), "{text}");
    assert!(text.contains("prefer-standby"), "{text}");
    assert_eq!(
        emu.counters().logins_accepted,
        2,
        "both hosts asked, neither kept"
    );
    assert_eq!(p.status().size, 0);
    p.close();
}

/// `prefer-standby` with no server in recovery takes the first host that accepts the
/// login (libpq's second pass, `any`): here the replica front.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefer_standby_without_a_standby_takes_the_first_host() {
    let emu = emulator().await;
    let s = conninfo(
        &emu,
        &format!(
            "host=127.0.0.1,localhost port={},{} target_session_attrs=prefer-standby",
            emu.replica_pg_port(),
            emu.pg_port()
        ),
    );
    let p = pool(&emu, s).await;
    assert_eq!(read_only(&p).await, "on");
    p.close();
}

/// `primary` asks whether the server is in recovery, not whether it takes writes: a
/// read-only server out of recovery is a primary (where `read-write` skips it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_is_a_server_out_of_recovery_read_only_or_not() {
    let emu = emulator().await;
    let s = conninfo(
        &emu,
        &format!(
            "host=127.0.0.1,localhost port={},{} target_session_attrs=primary",
            emu.replica_pg_port(),
            emu.pg_port()
        ),
    );
    let p = pool(&emu, s).await;
    assert_eq!(read_only(&p).await, "on");
    p.close();
    // One host, the replica front alone: still a primary.
    let s = conninfo(
        &emu,
        &format!(
            "host=127.0.0.1 port={} target_session_attrs=primary",
            emu.replica_pg_port()
        ),
    );
    let p = pool(&emu, s).await;
    assert_eq!(read_only(&p).await, "on");
    p.close();
}
