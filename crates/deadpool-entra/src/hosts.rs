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

use tokio_postgres::Config as PgConfig;

use crate::{config::Config, config::TargetSessionAttrs};

/// One login attempt: a configuration for one server, and its address when known.
pub(crate) type Candidate = (PgConfig, Option<IpAddr>);

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
    pub(crate) each: Vec<Candidate>,
    pub(crate) role: Option<Role>,
    pub(crate) random: bool,
    pub(crate) wanted: TargetSessionAttrs,
    pub(crate) endpoint: String,
}

impl Hosts {
    /// The plan for `cfg` (`tls`: as [`crate::config::pg_config`] takes it).
    pub(crate) fn new(cfg: &Config, tls: bool) -> Self {
        let role = Role::of(cfg.target_session_attrs);
        let names = cfg.host_list();
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
            random: cfg.load_balance_hosts == crate::config::LoadBalanceHosts::Random,
            wanted: cfg.target_session_attrs,
            endpoint: crate::config::endpoint_text(cfg),
        }
    }
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
}
