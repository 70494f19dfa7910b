use std::{net::IpAddr, sync::atomic::Ordering, time::Duration};

use tokio::time::Instant;

use super::*;

fn watch() -> NetWatch {
    NetWatch::new(
        &"host=db.postgres.database.azure.com"
            .parse()
            .expect("config"),
    )
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

#[tokio::test(start_paused = true)]
async fn a_changed_answer_bumps_the_generation_and_counts_once() {
    let w = watch();
    let now = Instant::now();
    assert_eq!(w.addresses(), None, "nothing known before the first answer");
    w.observe(&[ip("10.0.0.1")], now);
    assert_eq!(w.addresses(), Some((0, vec![ip("10.0.0.1")])));
    assert_eq!(w.counters.dns_changes.load(Ordering::Relaxed), 0);
    w.observe(&[ip("10.0.0.1")], now);
    assert_eq!(
        w.addresses().map(|a| a.0),
        Some(0),
        "the same answer changes nothing"
    );
    w.observe(&[ip("10.0.0.2")], now);
    assert_eq!(
        w.addresses().map(|a| a.0),
        Some(0),
        "one answer is not a move yet"
    );
    assert!(
        w.resolve_wanted.load(Ordering::Acquire),
        "a confirming lookup is asked for"
    );
    w.observe(&[ip("10.0.0.2")], now);
    assert_eq!(w.addresses(), Some((1, vec![ip("10.0.0.2")])));
    assert_eq!(w.counters.dns_changes.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn a_round_robin_name_that_alternates_is_not_a_move() {
    let w = watch();
    let now = Instant::now();
    w.observe(&[ip("10.0.0.1")], now);
    for _ in 0..5 {
        w.observe(&[ip("10.0.0.2")], now);
        w.observe(&[ip("10.0.0.1")], now);
    }
    assert_eq!(w.addresses(), Some((0, vec![ip("10.0.0.1")])));
    w.observe(&[ip("10.0.0.2")], now);
    w.observe(&[ip("10.0.0.3")], now);
    assert_eq!(
        w.addresses().map(|a| a.0),
        Some(0),
        "two different answers confirm nothing"
    );
    assert_eq!(w.counters.dns_changes.load(Ordering::Relaxed), 0);
}

#[tokio::test(start_paused = true)]
async fn a_dead_session_makes_older_sessions_suspect_until_verified() {
    let w = watch();
    let now = Instant::now();
    assert!(!w.checks_pending(), "no checks before anything died");
    w.found_dead(Some(ip("10.0.0.1")), DeadCause::Timeout, now);
    assert!(w.checks_pending());
    assert_eq!(w.epoch(), 1);
    assert_eq!(w.counters.dead_timeout.load(Ordering::Relaxed), 1);
    w.verified(0);
    assert!(w.checks_pending(), "verifying an older epoch is not enough");
    w.verified(1);
    assert!(!w.checks_pending());
    w.login_unreachable(None, DeadCause::ReadOnly, now);
    assert!(
        w.checks_pending(),
        "an unreachable login makes sessions suspect too"
    );
    assert_eq!(w.counters.logins_read_only.load(Ordering::Relaxed), 1);
    assert_eq!(w.counters.logins_unreachable.load(Ordering::Relaxed), 1);
}

#[tokio::test(start_paused = true)]
async fn an_incident_runs_from_the_first_death_to_the_first_healthy_login() {
    let w = watch();
    let t0 = Instant::now();
    w.login_ok(t0);
    assert_eq!(
        w.last_recovery(),
        None,
        "no incident, nothing to recover from"
    );
    w.found_dead(None, DeadCause::Reset, t0);
    w.found_dead(None, DeadCause::Timeout, t0 + Duration::from_secs(1));
    assert_eq!(w.incident_since(), Some(t0), "the first death opens it");
    w.login_ok(t0 + Duration::from_secs(3));
    assert_eq!(w.incident_since(), None);
    assert_eq!(w.last_recovery(), Some(Duration::from_secs(3)));
}

#[tokio::test(start_paused = true)]
async fn the_name_is_resolved_when_asked_or_every_interval() {
    let now = Instant::now();
    assert!(resolve_due(None, false, now), "never resolved");
    assert!(!resolve_due(Some(now), false, now));
    assert!(resolve_due(Some(now), true, now), "a death asks at once");
    assert!(!resolve_due(
        Some(now),
        false,
        now + RESOLVE_EVERY - Duration::from_millis(1)
    ));
    assert!(resolve_due(Some(now), false, now + RESOLVE_EVERY));
}

#[tokio::test]
async fn a_literal_host_is_its_own_address_and_is_never_looked_up() {
    let w = NetWatch::new(&"host=127.0.0.1".parse().expect("config"));
    assert_eq!(w.login_addrs().await, Some(vec![ip("127.0.0.1")]));
    assert_eq!(w.addresses(), None, "no name to follow");
    let none = NetWatch::new(&"host=/tmp".parse().expect("config"));
    assert_eq!(none.login_addrs().await, None);
}

#[tokio::test(start_paused = true)]
async fn suspicion_ends_when_all_checked_or_after_keepalives_had_their_time() {
    let mut pg: tokio_postgres::Config = "host=db".parse().expect("config");
    pg.keepalives_idle(Duration::from_secs(30));
    pg.tcp_user_timeout(Duration::from_secs(5));
    let w = NetWatch::new(&pg);
    assert_eq!(w.lapse, Duration::from_secs(40));
    let t0 = Instant::now();
    w.found_dead(None, DeadCause::Timeout, t0);
    let e = w.epoch();
    w.settle_suspicion(e, false, t0 + Duration::from_secs(39));
    assert!(w.checks_pending(), "unchecked sessions stay suspect");
    w.settle_suspicion(e, true, t0 + Duration::from_secs(1));
    assert!(!w.checks_pending(), "all checked");
    w.found_dead(None, DeadCause::Timeout, t0 + Duration::from_secs(2));
    w.settle_suspicion(w.epoch(), false, t0 + Duration::from_secs(42));
    assert!(
        !w.checks_pending(),
        "keepalives found the dead idle ones by now"
    );
    pg.keepalives(false);
    assert_eq!(NetWatch::new(&pg).lapse, Duration::from_secs(120));
}

#[tokio::test(start_paused = true)]
async fn without_a_user_timeout_suspicion_lasts_the_keepalive_probes() {
    let mut pg: tokio_postgres::Config = "host=db".parse().expect("config");
    pg.keepalives_idle(Duration::from_secs(30));
    pg.keepalives_interval(Duration::from_secs(5));
    pg.keepalives_retries(3);
    pg.tcp_user_timeout(Duration::ZERO);
    assert_eq!(
        NetWatch::new(&pg).lapse,
        Duration::from_secs(30 + 5 * 3 + 5),
        "idle, then 3 probes 5 s apart, then 5 s"
    );
}

#[tokio::test]
async fn a_due_lookup_runs_in_the_background_and_a_literal_is_never_looked_up() {
    let w = std::sync::Arc::new(NetWatch::new(&"host=localhost".parse().expect("config")));
    w.maybe_resolve(Instant::now());
    let mut found = None;
    for _ in 0..300 {
        found = w.addresses();
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (generation, addrs) = found.expect("localhost resolved in the background");
    assert_eq!(generation, 0);
    assert!(addrs.iter().all(IpAddr::is_loopback), "{addrs:?}");
    assert!(
        !w.resolve_in_flight.load(Ordering::Acquire),
        "the lookup says it is done"
    );
    let lit = std::sync::Arc::new(NetWatch::new(&"host=127.0.0.1".parse().expect("config")));
    lit.maybe_resolve(Instant::now());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(lit.addresses(), None, "nothing to follow for an address");
}

#[test]
fn absurd_keepalive_settings_give_a_capped_lapse_not_a_panic() {
    let mut pg: tokio_postgres::Config = "host=db".parse().expect("config");
    pg.keepalives_idle(Duration::MAX);
    pg.tcp_user_timeout(Duration::MAX);
    assert_eq!(NetWatch::new(&pg).lapse, Duration::from_secs(600));
    pg.tcp_user_timeout(Duration::ZERO);
    pg.keepalives_interval(Duration::MAX);
    pg.keepalives_retries(u32::MAX);
    assert_eq!(NetWatch::new(&pg).lapse, Duration::from_secs(600));
}
