//! The TCP settings every login uses unless configured: chosen so that a session whose
//! server vanished (an Azure failover leaves the old primary's sessions half-open, no
//! RST) fails within seconds, not after Linux's 15 minutes of retransmissions; so that an
//! idle session is never forgotten by a middlebox (Azure's load balancers and NAT gateways
//! drop connections idle for 4 minutes, silently); and so that a long query is never cut.
//!
//! | setting | default | why |
//! | --- | --- | --- |
//! | `tcp_user_timeout` | 5 s | Sent data that stays unacknowledged this long means the peer or the path is gone. A live server's kernel acknowledges within a round trip, however long the query runs, so a long query is not cut; only a dead peer is. |
//! | `keepalives_idle` | 30 s | Far below the 4-minute idle timeout of Azure's middleboxes: an idle session's probes keep its middlebox state alive, and a dead idle session is found within about 35 s (first probe, then the user timeout). |
//! | `keepalives_interval` | 5 s | Time between probes; with the user timeout set, Linux gives up once probes stay unanswered for `tcp_user_timeout`. |
//! | `keepalives_retries` | 3 | Used only where `tcp_user_timeout` is off. |
//! | `connect_timeout` | 2 s | A TCP handshake to a reachable server takes one round trip; a dropped SYN is sent again after 1 s. Failing the attempt at 2 s means a new attempt starts soon after a partition heals (the kernel's SYN backoff would wait 3, 7, 15 s...). Covers the TCP connect only (tokio-postgres' meaning), not TLS or authentication. |
//!
//! A value of 0 (libpq's "the system's default" or "no limit") leaves the kernel's
//! setting in place.

use std::time::Duration;

use super::Config;

/// Default `tcp_user_timeout`.
pub(crate) const TCP_USER_TIMEOUT: Duration = Duration::from_secs(5);
/// Default `keepalives_idle`.
pub(crate) const KEEPALIVES_IDLE: Duration = Duration::from_secs(30);
/// Default `keepalives_interval`.
pub(crate) const KEEPALIVES_INTERVAL: Duration = Duration::from_secs(5);
/// Default `keepalives_retries`.
pub(crate) const KEEPALIVES_RETRIES: u32 = 3;
/// Default `connect_timeout`.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A configured duration, or the default; `Some(0)` is the system's (`None`).
fn or_default(v: Option<Duration>, default: Duration) -> Option<Duration> {
    match v {
        None => Some(default),
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
    }
}

/// Sets the TCP settings of `cfg` (or the defaults above) on a login configuration.
pub(crate) fn apply(c: &mut tokio_postgres::Config, cfg: &Config) {
    let keepalives = cfg.keepalives.unwrap_or(true);
    c.keepalives(keepalives);
    if keepalives {
        if let Some(d) = or_default(cfg.keepalives_idle, KEEPALIVES_IDLE) {
            c.keepalives_idle(d);
        }
        if let Some(d) = or_default(cfg.keepalives_interval, KEEPALIVES_INTERVAL) {
            c.keepalives_interval(d);
        }
        match cfg.keepalives_retries {
            Some(0) => {}
            Some(n) => {
                c.keepalives_retries(n);
            }
            None => {
                c.keepalives_retries(KEEPALIVES_RETRIES);
            }
        }
    }
    if let Some(d) = or_default(cfg.tcp_user_timeout, TCP_USER_TIMEOUT) {
        c.tcp_user_timeout(d);
    }
    if let Some(d) = or_default(cfg.connect_timeout, CONNECT_TIMEOUT) {
        c.connect_timeout(d);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn applied(cfg: &Config) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        apply(&mut c, cfg);
        c
    }

    #[test]
    fn unset_settings_get_the_defaults() {
        let c = applied(&Config::default());
        assert!(c.get_keepalives());
        assert_eq!(c.get_keepalives_idle(), KEEPALIVES_IDLE);
        assert_eq!(c.get_keepalives_interval(), Some(KEEPALIVES_INTERVAL));
        assert_eq!(c.get_keepalives_retries(), Some(KEEPALIVES_RETRIES));
        assert_eq!(c.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
        assert_eq!(c.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
    }

    #[test]
    fn configured_values_win_and_zero_means_the_system_s() {
        let cfg = Config {
            keepalives_idle: Some(Duration::from_secs(90)),
            keepalives_interval: Some(Duration::ZERO),
            keepalives_retries: Some(7),
            tcp_user_timeout: Some(Duration::ZERO),
            connect_timeout: Some(Duration::from_secs(9)),
            ..Config::default()
        };
        let c = applied(&cfg);
        assert_eq!(c.get_keepalives_idle(), Duration::from_secs(90));
        assert_eq!(c.get_keepalives_interval(), None);
        assert_eq!(c.get_keepalives_retries(), Some(7));
        assert_eq!(c.get_tcp_user_timeout(), None);
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(9)));
        let zero = Config {
            connect_timeout: Some(Duration::ZERO),
            ..Config::default()
        };
        assert_eq!(applied(&zero).get_connect_timeout(), None, "0: no limit");
    }

    #[test]
    fn keepalives_off_sets_no_timings() {
        let cfg = Config {
            keepalives: Some(false),
            ..Config::default()
        };
        let c = applied(&cfg);
        assert!(!c.get_keepalives());
        assert_eq!(c.get_keepalives_interval(), None);
        assert_eq!(c.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
    }
}
