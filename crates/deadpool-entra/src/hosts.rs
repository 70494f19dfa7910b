//! Where a login goes when tokio-postgres cannot choose alone, as libpq would choose:
//!
//! - hosts of which only some have an address (`host=a,b hostaddr=10.0.0.1,`: `b`'s name
//!   is resolved). tokio-postgres takes addresses by position, one for every host or none;
//! - libpq 14's `target_session_attrs` `primary`, `standby` and `prefer-standby`, which
//!   tokio-postgres does not know: they ask the server whether it is in recovery
//!   (`pg_is_in_recovery()`), where `read-write` asks whether it accepts writes.
//!
//! The login then tries the hosts one at a time itself, each with a configuration of its
//! own, and asks each server that accepts it for its role. A session on a server that
//! does not fit is closed at once.

use std::net::IpAddr;

use tokio::{task::JoinHandle, time::Instant};
use tokio_postgres::{
    Client as PgClient, Config as PgConfig, Error as PgError, SimpleQueryMessage,
};

use crate::{
    Config, ConfigError, Error, TargetSessionAttrs,
    connect::{connect_tls, stand_in_error, stash},
    network::{DeadCause, network_cause},
    pool::Shared,
};

/// One login attempt: a configuration for one server, and its address when known.
type Candidate = (PgConfig, Option<IpAddr>);
/// A login's result and the address it went to.
pub(crate) type Landed = (Result<(PgClient, JoinHandle<()>), PgError>, Option<IpAddr>);

/// The server role a login asks for, when the pool checks it itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Primary,
    Standby,
    PreferStandby,
}

impl Role {
    fn of(t: TargetSessionAttrs) -> Option<Self> {
        match t {
            TargetSessionAttrs::Primary => Some(Self::Primary),
            TargetSessionAttrs::Standby => Some(Self::Standby),
            TargetSessionAttrs::PreferStandby => Some(Self::PreferStandby),
            // tokio-postgres checks these itself.
            TargetSessionAttrs::Any
            | TargetSessionAttrs::ReadWrite
            | TargetSessionAttrs::ReadOnly => None,
        }
    }
}

/// What to do with a session, given whether its server is in recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fit {
    /// Keep it.
    Yes,
    /// Keep it only if no later host fits (`prefer-standby` on a primary).
    Fallback,
    /// Close it and try the next host.
    No,
}

/// The one decision: does a server in (or out of) recovery fit what is asked for?
pub(crate) fn fit(role: Role, in_recovery: bool) -> Fit {
    match (role, in_recovery) {
        (Role::Primary, false) | (Role::Standby | Role::PreferStandby, true) => Fit::Yes,
        (Role::PreferStandby, false) => Fit::Fallback,
        (Role::Primary, true) | (Role::Standby, false) => Fit::No,
    }
}

/// The hosts of a pool, as the login tries them.
pub(crate) struct Hosts {
    /// One configuration per host (its name, port and address, if any), when the login
    /// tries the hosts itself; empty when tokio-postgres does (or there is one host).
    each: Vec<Candidate>,
    role: Option<Role>,
    random: bool,
    wanted: TargetSessionAttrs,
    endpoint: String,
}

impl Hosts {
    /// The plan for `cfg` (`tls`: as [`crate::config::pg_config`] takes it).
    pub(crate) fn new(cfg: &Config, tls: bool) -> Self {
        let role = Role::of(cfg.target_session_attrs);
        let names: Vec<&str> = cfg
            .host
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .collect();
        let partial =
            cfg.hostaddr.iter().any(Option::is_some) && cfg.hostaddr.iter().any(Option::is_none);
        let mut each = Vec::new();
        if names.len() > 1 && (partial || role.is_some()) {
            for (i, name) in names.iter().enumerate() {
                let one = Config {
                    host: Some((*name).to_owned()),
                    port: cfg.ports.get(i).copied().or(cfg.port),
                    ports: Vec::new(),
                    hostaddr: cfg.hostaddr.get(i).copied().into_iter().collect(),
                    ..cfg.clone()
                };
                let addr = one.hostaddr.first().copied().flatten();
                each.push((crate::config::pg_config(&one, tls), addr));
            }
        }
        Self {
            each,
            role,
            random: cfg.load_balance_hosts == crate::LoadBalanceHosts::Random,
            wanted: cfg.target_session_attrs,
            endpoint: crate::config::endpoint_text(cfg),
        }
    }
}

/// A login when the pool does not resolve the server name itself: to the hosts one at a
/// time when tokio-postgres cannot choose alone, otherwise as tokio-postgres chooses.
/// `login` holds the user and the secret.
pub(crate) async fn connect_hosts(shared: &Shared, login: &PgConfig) -> Landed {
    let hosts = &shared.hosts;
    if hosts.each.is_empty() {
        if hosts.role.is_none() {
            return (connect_tls(shared, login, None).await, None);
        }
        return in_turn(shared, vec![(login.clone(), None)], false).await;
    }
    let mut order: Vec<Candidate> = hosts
        .each
        .iter()
        .map(|(one, addr)| (with_secret(one, login), *addr))
        .collect();
    if hosts.random {
        use rand::seq::SliceRandom;
        order.shuffle(&mut rand::rng());
    }
    in_turn(shared, order, false).await
}

/// `one`'s server with `login`'s user and secret.
fn with_secret(one: &PgConfig, login: &PgConfig) -> PgConfig {
    let mut c = one.clone();
    if let Some(u) = login.get_user() {
        c.user(u);
    }
    if let Some(p) = login.get_password() {
        c.password(p);
    }
    c
}

/// Tries `candidates` in order until one's server fits the role asked for.
/// `same_server`: they are the addresses of one server name, so a refusal (not a network
/// failure) ends the attempt, as another address would be refused the same way, and
/// failures are reported to the network watch.
pub(crate) async fn in_turn(
    shared: &Shared,
    candidates: Vec<Candidate>,
    same_server: bool,
) -> Landed {
    let role = shared.hosts.role;
    let mut fallback = None;
    let mut failed: Option<(PgError, Option<IpAddr>)> = None;
    let mut mismatched: Option<Option<IpAddr>> = None;
    for (cfg, addr) in candidates {
        let (client, conn) = match connect_tls(shared, &cfg, addr).await {
            Ok(x) => x,
            Err(e) => {
                let cause = network_cause(&e);
                if same_server && let Some(cause) = cause {
                    shared.net.login_unreachable(addr, cause, Instant::now());
                }
                // Another address of the same server may work when this one could not be
                // reached, or is not ready (57P03: starting up or shutting down, as in a
                // failover); any other refusal would be the same there.
                let not_ready = e.as_db_error().is_some_and(|d| d.code().code() == "57P03");
                failed = Some((e, addr));
                if same_server && cause.is_none() && !not_ready {
                    break;
                }
                continue;
            }
        };
        let Some(role) = role else {
            return (Ok((client, conn)), addr);
        };
        let in_recovery = match in_recovery(&client).await {
            Ok(r) => r,
            Err(e) => {
                failed = Some((e, addr));
                continue;
            }
        };
        match fit(role, in_recovery) {
            Fit::Yes => return (Ok((client, conn)), addr),
            Fit::Fallback => {
                if fallback.is_none() {
                    fallback = Some(((client, conn), addr));
                }
            }
            Fit::No => {
                tracing::debug!(
                    target: "deadpool_entra",
                    addr = ?addr,
                    in_recovery,
                    "the server is not in the role target_session_attrs asks for; trying the next host"
                );
                // A primary that turned standby: where a writer was, a failover is under
                // way, as with read-write landing on a read-only server.
                if same_server && role == Role::Primary {
                    shared
                        .net
                        .login_unreachable(addr, DeadCause::ReadOnly, Instant::now());
                }
                mismatched = Some(addr);
            }
        }
    }
    if let Some((session, addr)) = fallback {
        return (Ok(session), addr);
    }
    // A failure says more than a server in the wrong role (the one in the right role may
    // be the one that failed).
    match (failed, mismatched) {
        (Some((e, addr)), _) => (Err(e), addr),
        (None, Some(addr)) => {
            stash(Error::WrongServerRole {
                endpoint: shared.hosts.endpoint.clone(),
                target_session_attrs: shared.hosts.wanted,
            });
            (Err(wrong_role_stand_in()), addr)
        }
        (None, None) => {
            stash(Error::Config(ConfigError::new(
                "host",
                "no host to log in to",
            )));
            (Err(stand_in_error()), None)
        }
    }
}

/// Whether the session's server is in recovery (a standby); asked as libpq asks servers
/// before PostgreSQL 14.
async fn in_recovery(client: &PgClient) -> Result<bool, PgError> {
    let rows = client
        .simple_query("SELECT pg_catalog.pg_is_in_recovery()")
        .await?;
    Ok(rows.iter().any(|m| match m {
        SimpleQueryMessage::Row(r) => r.get(0) == Some("t"),
        _ => false,
    }))
}

const WRONG_ROLE_KEY: &str = "deadpool_entra_wrong_server_role";

/// The `tokio_postgres::Error` that stands in for [`Error::WrongServerRole`] (stashed);
/// [`is_wrong_role`] knows it.
fn wrong_role_stand_in() -> PgError {
    format!("{WRONG_ROLE_KEY}=see-the-deadpool-entra-error")
        .parse::<PgConfig>()
        .err()
        .unwrap_or_else(stand_in_error)
}

/// Whether `e` stands for servers in the wrong role: as with a read-only server for
/// read-write, another login later (after a failover) may well find one that fits.
pub(crate) fn is_wrong_role(e: &PgError) -> bool {
    std::error::Error::source(e).is_some_and(|s| s.to_string().contains(WRONG_ROLE_KEY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_fits_the_role_libpq_would_accept_it_for() {
        assert_eq!(fit(Role::Primary, false), Fit::Yes);
        assert_eq!(fit(Role::Primary, true), Fit::No);
        assert_eq!(fit(Role::Standby, true), Fit::Yes);
        assert_eq!(fit(Role::Standby, false), Fit::No);
        assert_eq!(fit(Role::PreferStandby, true), Fit::Yes);
        assert_eq!(fit(Role::PreferStandby, false), Fit::Fallback);
        assert_eq!(Role::of(TargetSessionAttrs::ReadWrite), None);
        assert_eq!(Role::of(TargetSessionAttrs::Any), None);
    }

    #[test]
    fn hosts_with_and_without_an_address_are_tried_one_by_one() {
        let cfg: Config = "host=a.example.com,b.example.com port=5432,6432 hostaddr=10.0.0.1,"
            .parse()
            .unwrap();
        let hosts = Hosts::new(&cfg, true);
        assert_eq!(hosts.each.len(), 2);
        let (a, a_addr) = &hosts.each[0];
        assert_eq!(*a_addr, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(a.get_hostaddrs(), [a_addr.unwrap()]);
        assert_eq!(a.get_ports(), [5432]);
        let (b, b_addr) = &hosts.each[1];
        assert_eq!(*b_addr, None);
        assert!(b.get_hostaddrs().is_empty(), "b's name is resolved");
        assert_eq!(b.get_ports(), [6432]);
        assert_eq!(
            b.get_hosts(),
            [tokio_postgres::config::Host::Tcp("b.example.com".into())]
        );
        // The whole list goes to tokio-postgres without addresses (it cannot take a partial list).
        assert!(
            crate::config::pg_config(&cfg, true)
                .get_hostaddrs()
                .is_empty()
        );
    }

    #[test]
    fn tokio_postgres_keeps_choosing_when_it_can() {
        for s in [
            "host=a,b",
            "host=a,b hostaddr=10.0.0.1,10.0.0.2 target_session_attrs=read-write",
            "host=a hostaddr=10.0.0.1 target_session_attrs=primary",
            "host=a,b hostaddr=,",
        ] {
            let cfg: Config = s.parse().unwrap();
            assert!(Hosts::new(&cfg, true).each.is_empty(), "{s}");
        }
        let cfg: Config = "host=a,b target_session_attrs=standby".parse().unwrap();
        assert_eq!(Hosts::new(&cfg, true).each.len(), 2);
    }

    #[test]
    fn the_wrong_role_stand_in_is_known_and_no_other_error_is() {
        assert!(is_wrong_role(&wrong_role_stand_in()));
        assert!(!is_wrong_role(&stand_in_error()));
    }
}
