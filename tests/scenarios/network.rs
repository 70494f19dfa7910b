//! Azure's network faults, dropped in the kernel: a vanished primary with a DNS flip to
//! the standby, a partition, a middlebox that forgets idle connections, a flip to a
//! read-only server. Each test runs in a network namespace of its own (as root: CI is),
//! with the library's default settings and tokens rotating during the fault. A
//! userspace proxy that stops forwarding still acknowledges bytes, so TCP timeouts
//! never fire behind one: these faults drop packets with the kernel's packet filter.

use std::time::{Duration, Instant};

use deadpool_entra::{Config, ErrorKind, Pool, PoolBuilder, TargetSessionAttrs};
use deadpool_entra_tests::timeline::{Timeline, record_load};
use deadpool_entra_tests::{
    Explain, Sampler, cli_credential, emulator_builder, init_tracing, short_token_policies,
};
use entra_emulator::{Emulator, Node, netns};

/// Token lifetime: a refresh and retirements fall inside every fault window.
const LIFETIME: Duration = Duration::from_secs(12);
/// The load of the table: 16 tasks on a pool of 8.
const TASKS: usize = 16;
const POOL: usize = 8;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
}

async fn start() -> Emulator {
    start_with(LIFETIME).await
}

async fn start_with(lifetime: Duration) -> Emulator {
    init_tracing();
    emulator_builder()
        .token_lifetime(lifetime)
        .token_cache_window(lifetime * 6 / 10)
        .azure_network("failover-test")
        .start()
        .await
        .expect("the emulator starts in its network namespace")
}

/// A pool as a user builds one for the Azure name: the library's network defaults.
fn builder(emu: &Emulator, cfg: Config) -> PoolBuilder {
    builder_with(emu, cfg, LIFETIME)
}

fn builder_with(emu: &Emulator, cfg: Config, lifetime: Duration) -> PoolBuilder {
    let b = cfg
        .builder()
        .host(emu.server_host().expect("an Azure-shaped name"))
        .port(emu.pg_port())
        .dbname(emu.database())
        .user(emu.default_user())
        .ssl_root_cert(emu.ca_cert_path())
        .credential(cli_credential(emu))
        .max_size(POOL);
    short_token_policies(b, lifetime)
}

/// A pool with the library's defaults, built.
async fn default_pool(emu: &Emulator) -> Pool {
    builder(emu, Config::default())
        .build()
        .await
        .expect("pool builds")
}

/// The load (16 tasks) on `pool` for `run_for`, in the background.
fn spawn_load(pool: &Pool, run_for: Duration) -> tokio::task::JoinHandle<Timeline> {
    let pool = pool.clone();
    tokio::spawn(async move { record_load(&pool, TASKS, run_for, Duration::from_secs(40)).await })
}

/// Successful requests per second over the `secs` before `at`.
fn rate_before(t: &Timeline, at: Duration, secs: u64) -> f64 {
    t.rate(at - Duration::from_secs(secs), at)
}

/// When the pool first counted a session found dead (from the stats sampler).
fn first_detection(samples: &[(Duration, deadpool_entra::Stats)]) -> Option<Duration> {
    samples
        .iter()
        .find(|(_, s)| {
            let n = &s.network;
            n.dead_timeout + n.dead_reset + n.dead_liveness_check + n.dead_other > 0
        })
        .map(|(t, _)| *t)
}

/// The old primary vanishes (every open session's packets dropped both ways, no RST, no
/// FIN) and its name flips to the standby: throughput is back to half within 10 s, no
/// request is in flight for 30 s, and no request that started after the pool found the
/// first dead session fails. Before the TCP defaults, the pool served nothing for the
/// rest of the run (Linux retransmits for about 15 minutes).
#[test]
fn vanished_primary_and_dns_flip_cost_seconds_not_minutes() {
    if !netns::isolated("network::vanished_primary_and_dns_flip_cost_seconds_not_minutes") {
        return;
    }
    runtime().block_on(async {
        let emu = start().await;
        let explain = Explain::new("vanish_dns_flip", &emu);
        let pool = default_pool(&emu).await;
        explain.pool(&pool);
        let fault_at = Duration::from_secs(6);
        let run_for = fault_at + Duration::from_secs(20);
        let sampler = Sampler::start(&pool, Duration::from_millis(100), run_for);
        let load = spawn_load(&pool, run_for);
        tokio::time::sleep(fault_at).await;
        let net = emu.network().expect("an Azure network");
        let cut = net.vanish(Node::Primary).expect("vanish");
        net.dns_flip(Node::Standby).expect("dns flip");
        let t = load.await.expect("load");
        let samples = sampler.finish().await;
        let stats = pool.stats();
        let before = rate_before(&t, fault_at, 4);
        let back = t.back_to(fault_at, before / 2.0, Duration::from_millis(500));
        let detected = first_detection(&samples);
        explain.note(format!(
            "sessions cut: {cut}; before: {before:.0}/s; back to half {back:?} after the fault; first dead session seen at {detected:?}; longest request {:?}; {} ok, {} failed; per second: {}; network: {:?}; retired for address: {}",
            t.longest_request(),
            t.ok(),
            t.failed(),
            t.per_second(fault_at - Duration::from_secs(2), run_for),
            stats.network,
            stats.retired_address_changed,
        ));
        assert!(cut >= 1, "the fault cut open sessions");
        assert!(before > 50.0, "a warm pool serves ({before:.0}/s)");
        let back = back.expect("throughput came back");
        assert!(back <= Duration::from_secs(10), "back to half throughput in {back:?}");
        assert!(
            t.longest() <= Duration::from_secs(30),
            "a request was in flight for {:?}",
            t.longest()
        );
        let detected = detected.expect("the pool found the dead sessions");
        let late = t.failed_started_after(detected);
        assert!(
            late.is_empty(),
            "requests that started after the first dead session was found failed: {late:?}"
        );
        assert!(stats.network.dns_changes >= 1, "the DNS flip was seen");
        assert_eq!(emu.counters().expired_token_logins, 0);
        pool.close();
        drop(explain);
        emu.shutdown().await;
    });
}

/// The name flips to the standby while the old primary keeps serving (a planned
/// failover, before the old primary's sessions are ended): the pool notices within its
/// re-resolution interval, retires the sessions to the old address as replacements log
/// in at the new one, and no request fails.
#[test]
fn a_dns_flip_moves_sessions_to_the_new_address_without_failing_a_request() {
    if !netns::isolated(
        "network::a_dns_flip_moves_sessions_to_the_new_address_without_failing_a_request",
    ) {
        return;
    }
    runtime().block_on(async {
        let emu = start().await;
        let explain = Explain::new("planned_flip", &emu);
        let pool = default_pool(&emu).await;
        explain.pool(&pool);
        let flip_at = Duration::from_secs(3);
        let run_for = flip_at + Duration::from_secs(14);
        let sampler = Sampler::start(&pool, Duration::from_millis(100), run_for);
        let load = spawn_load(&pool, run_for);
        tokio::time::sleep(flip_at).await;
        let net = emu.network().expect("an Azure network");
        net.dns_flip(Node::Standby).expect("flip");
        let t = load.await.expect("load");
        let samples = sampler.finish().await;
        let stats = pool.stats();
        let on_old = samples
            .iter()
            .filter(|(_, s)| s.degraded.sessions_on_old_address > 0)
            .count();
        explain.note(format!(
            "{} ok, {} failed; retired for the address change: {}; samples with sessions on the old address: {on_old}; logins on the standby: {}; network: {:?}",
            t.ok(),
            t.failed(),
            stats.retired_address_changed,
            net.logins(Node::Standby),
            stats.network,
        ));
        assert_eq!(t.failed(), 0, "{:?}", t.failed_started_after(Duration::ZERO));
        assert_eq!(stats.network.dns_changes, 1);
        assert!(stats.retired_address_changed >= 1, "sessions to the old address retired");
        assert_eq!(
            stats.degraded.sessions_on_old_address, 0,
            "every session is on the new address by the end"
        );
        assert!(net.logins(Node::Standby) >= 1);
        assert_eq!(emu.counters().expired_token_logins, 0);
        pool.close();
        drop(explain);
        emu.shutdown().await;
    });
}

/// Idle sessions whose server vanished (no DNS flip: the address still answers new
/// connections): the first request on one hangs until `tcp_user_timeout`; the next
/// checkout finds a sibling that fails its liveness check and drops every unchecked idle
/// sibling to that address with it, so it waits one check (1 s), not one per dead session.
#[test]
fn one_failed_liveness_check_drops_the_dead_idle_siblings_together() {
    if !netns::isolated("network::one_failed_liveness_check_drops_the_dead_idle_siblings_together")
    {
        return;
    }
    runtime().block_on(async {
        let emu = start().await;
        let explain = Explain::new("idle_siblings", &emu);
        let pool = builder(&emu, Config::default())
            .min_connections(POOL)
            .build()
            .await
            .expect("pool builds");
        explain.pool(&pool);
        let net = emu.network().expect("an Azure network");
        let cut = net.vanish(Node::Primary).expect("vanish");
        let t = record_load(&pool, 1, Duration::from_secs(10), Duration::from_secs(40)).await;
        let stats = pool.stats();
        let second = t.requests.get(1).cloned();
        explain.note(format!(
            "cut {cut}; first: {:?}; second: {second:?}; {} ok, {} failed; network: {:?}",
            t.requests.first(),
            t.ok(),
            t.failed(),
            stats.network
        ));
        assert!(cut >= POOL, "every idle session was cut ({cut})");
        assert_eq!(t.failed(), 1, "only the request that met the first dead session fails");
        let second = second.expect("a second request");
        assert!(second.error.is_none(), "{second:?}");
        assert!(
            second.end - second.start < Duration::from_secs(3),
            "the next checkout waited one liveness check and a login, not one check per dead session: {second:?}"
        );
        // The failed check plus at least one sibling dropped with it (how many siblings
        // are still idle then depends on retirements by token age: 6 at most; 5 and 6
        // measured).
        assert!(
            stats.network.dead_liveness_check >= 2,
            "the dead idle siblings were dropped as such ({})",
            stats.network.dead_liveness_check
        );
        pool.close();
        drop(explain);
        emu.shutdown().await;
    });
}

/// A partition of every packet to the server for 8 s, then healed: throughput is back
/// to half within 2 s of the heal, no request waits longer than the partition plus 5 s,
/// and only the requests in flight on the cut sessions fail (the others wait for a trial
/// login to get through, as they would wait on TCP with a naive pool).
#[test]
fn a_partition_heals_within_two_seconds() {
    if !netns::isolated("network::a_partition_heals_within_two_seconds") {
        return;
    }
    runtime().block_on(async {
        let emu = start().await;
        let explain = Explain::new("partition", &emu);
        let pool = default_pool(&emu).await;
        explain.pool(&pool);
        let fault_at = Duration::from_secs(5);
        let partition = Duration::from_secs(8);
        let heal_at = fault_at + partition;
        let run_for = heal_at + Duration::from_secs(7);
        let sampler = Sampler::start(&pool, Duration::from_millis(100), run_for);
        let load = spawn_load(&pool, run_for);
        tokio::time::sleep(fault_at).await;
        let net = emu.network().expect("an Azure network");
        net.partition_start(Node::Primary).expect("partition");
        tokio::time::sleep(partition).await;
        net.heal(Node::Primary).expect("heal");
        let t = load.await.expect("load");
        let samples = sampler.finish().await;
        let degraded = samples
            .iter()
            .filter(|(_, s)| s.degraded.network_failing_for_secs.is_some())
            .count();
        let before = rate_before(&t, fault_at, 4);
        let back = t.back_to(heal_at, before / 2.0, Duration::from_millis(500));
        explain.note(format!(
            "before: {before:.0}/s; back to half {back:?} after the heal; longest request {:?}; {} ok, {} failed; per second: {}; network: {:?}; samples degraded by the network: {degraded}",
            t.longest_request(),
            t.ok(),
            t.failed(),
            t.per_second(fault_at - Duration::from_secs(2), run_for),
            pool.stats().network,
        ));
        let back = back.expect("throughput came back");
        assert!(back <= Duration::from_secs(2), "back to half throughput {back:?} after the heal");
        assert!(degraded > 0, "the stats said degraded while sessions were dead");
        assert!(
            t.failed() <= POOL,
            "only the requests in flight on the cut sessions fail ({}); the others wait for a login that gets through",
            t.failed()
        );
        assert!(
            !samples.last().expect("samples").1.degraded.is_degraded()
                || samples.last().expect("samples").1.degraded.overdue > 0,
            "no network degradation is left after the heal"
        );
        assert!(
            t.longest() <= partition + Duration::from_secs(5),
            "a request waited {:?}",
            t.longest()
        );
        assert_eq!(emu.counters().expired_token_logins, 0);
        pool.close();
        drop(explain);
        emu.shutdown().await;
    });
}

/// A middlebox forgets connections idle for 8 s and silently drops their later packets
/// (Azure's load balancers: 4 minutes). With keepalives scaled alike (the default 30 s
/// against 4 minutes is 1 s against 8 s), idle sessions survive: no request fails. The
/// same pool without keepalives meets the dead sessions, which proves the fault bites.
#[test]
fn idle_sessions_survive_a_middlebox_that_forgets_idle_connections() {
    if !netns::isolated("network::idle_sessions_survive_a_middlebox_that_forgets_idle_connections")
    {
        return;
    }
    // Tokens of 24 s: the sessions logged in at the start are still there after the
    // idle stretch (they retire in the token's second half), and the token is renewed
    // (12 s) while the load runs.
    const IDLE_LIFETIME: Duration = Duration::from_secs(24);
    runtime().block_on(async {
        let emu = start_with(IDLE_LIFETIME).await;
        let explain = Explain::new("idle_drop", &emu);
        let idle = Duration::from_secs(8);
        emu.network()
            .expect("an Azure network")
            .idle_drop(Node::Primary, idle)
            .expect("idle drop");
        let scaled = Config {
            keepalives_idle: Some(Duration::from_secs(1)),
            keepalives_interval: Some(Duration::from_secs(1)),
            ..Config::default()
        };
        let kept = builder_with(&emu, scaled, IDLE_LIFETIME)
            .min_connections(4)
            .build()
            .await
            .expect("pool builds");
        let no_keepalives = Config {
            keepalives: Some(false),
            ..Config::default()
        };
        let control = builder_with(&emu, no_keepalives, IDLE_LIFETIME)
            .min_connections(4)
            .build()
            .await
            .expect("control pool builds");
        explain.pool(&kept);
        // Idle past the middlebox's timeout; tokens rotate meanwhile (no load: the
        // sessions stay idle, the refresher and the sweeper run).
        tokio::time::sleep(idle + Duration::from_secs(3)).await;
        let started = Instant::now();
        let t = record_load(&kept, 4, Duration::from_secs(3), Duration::from_secs(20)).await;
        let kept_took = started.elapsed();
        let c = record_load(&control, 4, Duration::from_secs(3), Duration::from_secs(20)).await;
        explain.note(format!(
            "with keepalives: {} ok, {} failed, longest {:?} (load took {kept_took:?}); without: {} ok, {} failed, longest {:?}; network (kept): {:?}",
            t.ok(),
            t.failed(),
            t.longest(),
            c.ok(),
            c.failed(),
            c.longest(),
            kept.stats().network
        ));
        assert_eq!(t.failed(), 0, "{:?}", t.failed_started_after(Duration::ZERO));
        assert!(t.ok() > 50);
        assert!(
            t.longest() < Duration::from_secs(2),
            "no request met a forgotten session ({:?})",
            t.longest()
        );
        assert!(
            c.failed() > 0 || c.longest() >= Duration::from_secs(4),
            "without keepalives the middlebox bites: {} failed, longest {:?}",
            c.failed(),
            c.longest()
        );
        kept.close();
        control.close();
        drop(explain);
        emu.shutdown().await;
    });
}

/// The name flips to a read-only server (a demoted primary, a replica behind a stale DNS
/// answer) and every session is killed, `target_session_attrs=read-write`: no login there
/// is kept as a writer session; a checkout waits (up to its wait timeout) for the name to
/// point to a writer and then fails with `ErrorKind::ReadOnly`; a checkout waiting when
/// the name moves to the new primary gets a writer session there without an error.
#[test]
fn a_read_only_server_is_not_kept_as_a_writer() {
    if !netns::isolated("network::a_read_only_server_is_not_kept_as_a_writer") {
        return;
    }
    runtime().block_on(async {
        let emu = start().await;
        let explain = Explain::new("read_only_flip", &emu);
        let cfg = Config {
            target_session_attrs: TargetSessionAttrs::ReadWrite,
            ..Config::default()
        };
        let wait = Duration::from_secs(2);
        let pool = builder(&emu, cfg)
            .wait_timeout(Some(wait))
            .build()
            .await
            .expect("pool builds");
        explain.pool(&pool);
        assert_eq!(writable(&pool).await, Some(true), "a writer before the flip");
        let net = emu.network().expect("an Azure network");
        net.dns_flip(Node::ReadOnlyStandby).expect("flip");
        emu.faults().kill_all_sessions();
        // The sweeper drops the killed sessions once their clients see them closed.
        let emptied = deadpool_entra_tests::wait_until(Duration::from_secs(3), || {
            pool.status().size == 0
        })
        .await;
        assert!(emptied.is_some(), "the killed sessions left the pool");
        let started = Instant::now();
        let refused = tokio::time::timeout(Duration::from_secs(10), pool.get())
            .await
            .expect("a checkout never hangs past its wait timeout")
            .map(drop)
            .expect_err("only a read-only server answers");
        let refused_after = started.elapsed();
        let during = pool.stats();
        // A checkout waiting when the name moves to the new primary.
        let waiting = {
            let pool = pool.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                (writable(&pool).await, t.elapsed())
            })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        net.dns_flip(Node::Standby).expect("flip to the new primary");
        let (writer, took) = waiting.await.expect("checkout task");
        explain.note(format!(
            "refused after {refused_after:?}: {refused}; network: {:?}; the waiting checkout: {writer:?} after {took:?}",
            during.network
        ));
        assert_eq!(refused.kind(), ErrorKind::ReadOnly, "{refused}");
        assert!(
            refused_after >= wait - Duration::from_millis(100)
                && refused_after < wait + Duration::from_secs(3),
            "it waited its wait timeout for a writer ({refused_after:?})"
        );
        assert!(during.network.logins_read_only >= 1);
        assert_eq!(during.pool.size, 0, "no read-only session kept in the pool");
        assert_eq!(writer, Some(true), "the waiting checkout got a writer");
        assert!(took < Duration::from_secs(2), "{took:?}");
        pool.close();
        drop(explain);
        emu.shutdown().await;
    });
}

/// The pool reads the cloud from the server's name: by the Azure China and Azure US
/// Government names it asks for that cloud's token, which the server of that cloud (the
/// emulator, by the name the client asked TLS for) accepts; a token for the public cloud
/// is refused there as Azure refuses it.
#[test]
fn the_cloud_is_read_from_the_host_name_end_to_end() {
    if !netns::isolated("network::the_cloud_is_read_from_the_host_name_end_to_end") {
        return;
    }
    runtime().block_on(async {
        let emu = start().await;
        let explain = Explain::new("sovereign_clouds", &emu);
        let hosts = emu.server_hosts();
        let mut seen = Vec::new();
        for suffix in [".chinacloudapi.cn", ".usgovcloudapi.net", ".azure.com"] {
            let host = hosts
                .iter()
                .find(|h| h.ends_with(suffix))
                .expect("a name in each cloud")
                .clone();
            let pool = builder(&emu, Config::default())
                .host(host.clone())
                .build()
                .await
                .expect("pool builds");
            let user: String = pool
                .get()
                .await
                .unwrap_or_else(|e| panic!("a login by {host}: {e}"))
                .query_one("SELECT current_user::text", &[])
                .await
                .expect("query")
                .get(0);
            seen.push((host.clone(), user));
            pool.close();
        }
        let china = hosts
            .iter()
            .find(|h| h.ends_with(".chinacloudapi.cn"))
            .expect("China name")
            .clone();
        let public_token = builder(&emu, Config::default())
            .host(china)
            .scope(deadpool_entra::cloud::DEFAULT_SCOPE)
            .build()
            .await
            .expect("pool builds");
        let refused = public_token
            .get()
            .await
            .expect_err("the public cloud's token is refused");
        explain.note(format!(
            "logins: {seen:?}; public token by the China name: {refused}"
        ));
        assert_eq!(seen.len(), 3);
        assert_eq!(refused.kind(), ErrorKind::TokenWrongAudience, "{refused}");
        assert!(
            refused
                .to_string()
                .contains("request tokens for the scope https://ossrdbms-aad.database.chinacloudapi.cn/.default"),
            "the hint names the scope of the server's cloud: {refused}"
        );
        public_token.close();
        drop(explain);
        emu.shutdown().await;
    });
}

/// Whether a checkout's session accepts writes (`None`: no session).
async fn writable(pool: &Pool) -> Option<bool> {
    let c = pool.get().await.ok()?;
    let ro: String = c
        .query_one("SHOW transaction_read_only", &[])
        .await
        .ok()?
        .get(0);
    Some(ro == "off")
}
