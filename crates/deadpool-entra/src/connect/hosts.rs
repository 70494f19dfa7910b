//! Logins to the hosts one at a time, when tokio-postgres cannot choose alone (see
//! [`crate::hosts`] for when): each host with a configuration of its own, asking each
//! server that accepts the login for its role.

use std::net::IpAddr;

use tokio::{task::JoinHandle, time::Instant};
use tokio_postgres::{
    Client as PgClient, Config as PgConfig, Error as PgError, SimpleQueryMessage,
};

use super::connect_tls;
use crate::{
    checkout::{stand_in_error, stash, wrong_role_stand_in},
    config::ConfigError,
    error::Error,
    hosts::{Candidate, Fit, Role, fit},
    network::{DeadCause, network_cause},
    shared::Shared,
};

/// A login's result and the address it went to.
pub(crate) type Landed = (Result<(PgClient, JoinHandle<()>), PgError>, Option<IpAddr>);

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
