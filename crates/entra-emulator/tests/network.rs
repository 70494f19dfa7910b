//! The Azure network: the server's names, its three nodes, and the faults the kernel makes
//! (packets dropped by `iptables`, in a private network namespace, as root).

mod common;

use std::future::Future;
use std::time::{Duration, Instant};

use entra_emulator::{Emulator, Error, Node, OSSRDBMS_RESOURCE, netns};
use tokio::task::JoinHandle;
use tokio_postgres::Client;
use tokio_postgres::config::TargetSessionAttrs;

const HOUR: Duration = Duration::from_secs(3600);
const SERVER: &str = "failover-test";

fn run<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(common::bounded(f))
}

async fn start() -> Emulator {
    Emulator::builder()
        .azure_network(SERVER)
        .start()
        .await
        .expect("the emulator starts in its network namespace")
}

/// Log in as the default identity to `host` on the front's port, verifying the certificate
/// against `host`, with `tweak` applied to the settings.
async fn login_to(
    emu: &Emulator,
    host: &str,
    tweak: impl FnOnce(&mut tokio_postgres::Config),
) -> Result<Client, tokio_postgres::Error> {
    login_watched(emu, host, tweak).await.map(|(c, _)| c)
}

/// As [`login_to`], with the connection's task, whose result is why the session ended.
async fn login_watched(
    emu: &Emulator,
    host: &str,
    tweak: impl FnOnce(&mut tokio_postgres::Config),
) -> Result<(Client, JoinHandle<Result<(), tokio_postgres::Error>>), tokio_postgres::Error> {
    let mi = emu.default_identity().name.clone();
    // The server accepts the token resource of the cloud its name is in.
    let resource = if host.ends_with(".chinacloudapi.cn") {
        entra_emulator::OSSRDBMS_RESOURCE_CHINA
    } else if host.ends_with(".usgovcloudapi.net") {
        entra_emulator::OSSRDBMS_RESOURCE_US_GOVERNMENT
    } else {
        OSSRDBMS_RESOURCE
    };
    let token = emu.issue_token(&mi, resource, HOUR);
    let mut cfg = common::config(host, emu.pg_port(), emu.database(), &mi, &token);
    tweak(&mut cfg);
    let (client, conn) = cfg.connect(common::tls(emu.ca_cert_path())).await?;
    Ok((client, tokio::spawn(conn)))
}

async fn login(emu: &Emulator) -> Client {
    let host = emu.server_host().expect("an Azure name");
    login_to(emu, &host, |_| {})
        .await
        .expect("login by the Azure name")
}

async fn resolve(emu: &Emulator, host: &str) -> Vec<std::net::SocketAddr> {
    tokio::net::lookup_host((host, emu.pg_port()))
        .await
        .expect("the name resolves")
        .collect()
}

async fn answers(c: &Client) -> Result<i32, tokio_postgres::Error> {
    c.query_one("SELECT 1", &[]).await.map(|r| r.get(0))
}

#[test]
fn azure_network_refuses_the_host_namespace() {
    // No `isolated`: this runs where the test binary was started.
    if netns::in_private_namespace() || std::env::var_os(netns::NETNS_ENV).is_some() {
        return;
    }
    run(async {
        let e = Emulator::builder()
            .azure_network(SERVER)
            .start()
            .await
            .expect_err("no Azure network outside a private namespace");
        assert!(matches!(e, Error::Network(_)), "{e}");
        assert!(!netns::in_private_namespace());
    });
}

#[test]
fn names_resolve_to_the_node_the_dns_points_at() {
    if !netns::isolated("names_resolve_to_the_node_the_dns_points_at") {
        return;
    }
    run(async {
        let emu = start().await;
        let net = emu.network().expect("an Azure network").clone();
        let host = emu.server_host().unwrap();
        assert_eq!(host, "failover-test.postgres.database.azure.com");
        assert_eq!(emu.server_hosts().len(), 3);
        for name in emu.server_hosts() {
            let addrs = resolve(&emu, &name).await;
            assert_eq!(addrs, [net.address(Node::Primary).into()], "{name}");
        }
        assert_eq!(net.current(), Node::Primary);
        let env = emu.env();
        assert!(env.contains(&("PGHOST".to_string(), host.clone())));

        // A TLS login by each name verifies the certificate against it.
        for name in emu.server_hosts() {
            let c = login_to(&emu, &name, |_| {})
                .await
                .unwrap_or_else(|e| panic!("login to {name}: {e}"));
            assert_eq!(answers(&c).await.unwrap(), 1);
        }
        let primary = login(&emu).await;
        primary
            .batch_execute("CREATE TABLE failover (n int); INSERT INTO failover VALUES (7)")
            .await
            .unwrap();
        assert_eq!(net.logins(Node::Primary), 4);

        // The failover: the name now points at the standby; the open session stays.
        net.dns_flip(Node::Standby).expect("flip");
        assert_eq!(net.current(), Node::Standby);
        assert_eq!(
            resolve(&emu, &host).await,
            [net.address(Node::Standby).into()]
        );
        let standby = login(&emu).await;
        assert_eq!(net.logins(Node::Standby), 1);
        let n: i32 = standby
            .query_one("SELECT n FROM failover", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 7, "the standby holds the same data");
        assert_eq!(answers(&primary).await.unwrap(), 1);
        // The nodes' addresses are in the certificate too.
        for node in [Node::Standby, Node::ReadOnlyStandby] {
            let c = login_to(&emu, &node.ip().to_string(), |_| {})
                .await
                .unwrap_or_else(|e| panic!("login to {node:?} by address: {e}"));
            assert_eq!(answers(&c).await.unwrap(), 1);
        }
        net.dns_flip(Node::Primary).expect("flip back");
        assert_eq!(
            resolve(&emu, &host).await,
            [net.address(Node::Primary).into()]
        );
        let c = net.counters();
        assert_eq!((c.dns_flips, c.logins_primary, c.logins_standby), (2, 4, 2));
        emu.shutdown().await;
    });
}

#[test]
fn a_vanished_node_hangs_open_sessions_until_tcp_user_timeout() {
    if !netns::isolated("a_vanished_node_hangs_open_sessions_until_tcp_user_timeout") {
        return;
    }
    run(async {
        let emu = start().await;
        let net = emu.network().unwrap().clone();
        let host = emu.server_host().unwrap();
        let plain = login(&emu).await;
        let (bounded, bounded_conn) = login_watched(&emu, &host, |c| {
            c.tcp_user_timeout(Duration::from_secs(1));
        })
        .await
        .unwrap();
        assert_eq!(emu.counters().sessions_open, 2);

        let cut = net.vanish(Node::Primary).expect("vanish");
        assert_eq!(cut, 2);
        assert_eq!(net.sessions_vanished(), 2);

        let started = Instant::now();
        let (hung, (failed, took)) = tokio::join!(
            tokio::time::timeout(Duration::from_secs(2), answers(&plain)),
            async { (answers(&bounded).await, started.elapsed()) },
        );
        assert!(
            hung.is_err(),
            "without a TCP bound the query hangs: {hung:?}"
        );
        let e = failed.expect_err("tcp_user_timeout ends the session");
        assert!(e.is_closed(), "{e:?}");
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(4),
            "failed after {took:?}"
        );
        // The connection died of the kernel's timeout, not of a reset.
        let why = bounded_conn
            .await
            .unwrap()
            .expect_err("the connection failed");
        let io = std::error::Error::source(&why)
            .and_then(|s| s.downcast_ref::<std::io::Error>())
            .map(std::io::Error::kind);
        assert_eq!(io, Some(std::io::ErrorKind::TimedOut), "{why:?}");
        eprintln!("tcp_user_timeout 1 s: the query failed after {took:?}: {why}");

        // The node's side ended its sessions (no RST or FIN reached the client).
        let deadline = Instant::now() + Duration::from_secs(5);
        while emu.counters().sessions_open > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(emu.counters().sessions_open, 0);
        // New connections go through.
        let fresh = login(&emu).await;
        assert_eq!(answers(&fresh).await.unwrap(), 1);
        assert!(
            tokio::time::timeout(Duration::from_millis(300), answers(&plain))
                .await
                .is_err(),
            "the vanished session still hangs"
        );
        net.clear().expect("clear");
        emu.shutdown().await;
    });
}

#[test]
fn a_partition_delays_queries_and_refuses_logins_until_healed() {
    if !netns::isolated("a_partition_delays_queries_and_refuses_logins_until_healed") {
        return;
    }
    run(async {
        let emu = start().await;
        let net = emu.network().unwrap().clone();
        let host = emu.server_host().unwrap();
        let session = login(&emu).await;
        let partition = Duration::from_secs(2);

        net.partition(Node::Primary, partition).expect("partition");
        let started = Instant::now();
        let query = tokio::spawn(async move {
            let r = answers(&session).await;
            (r.map_err(|e| e.to_string()), started.elapsed(), session)
        });
        let refused = login_to(&emu, &host, |c| {
            c.connect_timeout(Duration::from_millis(700));
        })
        .await;
        assert!(refused.is_err(), "no login during the partition");
        assert!(
            started.elapsed() < partition,
            "the login attempt outlived the partition"
        );

        let (r, took, session) = query.await.unwrap();
        assert_eq!(r, Ok(1), "the query completes after the heal");
        assert!(
            took >= partition,
            "answered after {took:?}, during the partition"
        );
        assert!(
            took < partition + Duration::from_secs(4),
            "answered after {took:?}"
        );
        eprintln!("a query sent into a 2 s partition answered after {took:?}");
        let fresh = login(&emu).await;
        assert_eq!(answers(&fresh).await.unwrap(), 1);
        assert_eq!(answers(&session).await.unwrap(), 1);
        assert_eq!(net.counters().partitions, 1);

        // By hand: start, heal.
        net.partition_start(Node::Primary).expect("partition");
        assert!(
            tokio::time::timeout(Duration::from_millis(500), answers(&fresh))
                .await
                .is_err()
        );
        net.heal(Node::Primary).expect("heal");
        let after = login(&emu).await;
        assert_eq!(answers(&after).await.unwrap(), 1);
        emu.shutdown().await;
    });
}

#[test]
fn a_middlebox_forgets_idle_sessions_unless_keepalives_refresh_them() {
    if !netns::isolated("a_middlebox_forgets_idle_sessions_unless_keepalives_refresh_them") {
        return;
    }
    run(async {
        let emu = start().await;
        let net = emu.network().unwrap().clone();
        let host = emu.server_host().unwrap();
        net.idle_drop(Node::Primary, Duration::from_secs(2))
            .expect("idle drop");
        let plain = login_to(&emu, &host, |c| {
            c.keepalives(false);
        })
        .await
        .unwrap();
        let kept = login_to(&emu, &host, |c| {
            c.keepalives_idle(Duration::from_secs(1))
                .keepalives_interval(Duration::from_secs(1));
        })
        .await
        .unwrap();
        // A session in use is remembered.
        for _ in 0..3 {
            assert_eq!(answers(&plain).await.unwrap(), 1);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }

        tokio::time::sleep(Duration::from_secs(4)).await;
        let started = Instant::now();
        assert_eq!(
            answers(&kept).await.unwrap(),
            1,
            "keepalives kept the session remembered"
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(
            tokio::time::timeout(Duration::from_secs(2), answers(&plain))
                .await
                .is_err(),
            "a session idle past the middlebox's timeout hangs"
        );
        // New connections are tracked anew.
        let fresh = login(&emu).await;
        assert_eq!(answers(&fresh).await.unwrap(), 1);

        // Without the middlebox, forgotten connections are taken up again (loose tracking).
        net.clear().expect("clear");
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(5), answers(&plain))
                .await
                .expect("answers once the middlebox is gone")
                .unwrap(),
            1
        );
        emu.shutdown().await;
    });
}

#[test]
fn a_read_only_standby_refuses_read_write_sessions() {
    if !netns::isolated("a_read_only_standby_refuses_read_write_sessions") {
        return;
    }
    run(async {
        let emu = start().await;
        let net = emu.network().unwrap().clone();
        let host = emu.server_host().unwrap();
        net.dns_flip(Node::ReadOnlyStandby).expect("flip");
        let e = login_to(&emu, &host, |c| {
            c.target_session_attrs(TargetSessionAttrs::ReadWrite);
        })
        .await
        .expect_err("no read-write session on the read-only standby");
        eprintln!("read-write login on the read-only standby: {e}");
        let any = login_to(&emu, &host, |c| {
            c.target_session_attrs(TargetSessionAttrs::Any);
        })
        .await
        .expect("any session");
        let ro: String = any
            .query_one("SHOW transaction_read_only", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(ro, "on");
        assert_eq!(net.logins(Node::ReadOnlyStandby), 2);
        assert_eq!(net.logins(Node::Primary), 0);
        emu.shutdown().await;
    });
}
