//! Logins: the `Connect` that deadpool_postgres's own `Manager` calls. It takes the
//! cached token as the password, never waits on the identity endpoint while a valid
//! token is cached, and retries once with a different token when the server refuses one
//! (never with the refused one again).

mod hosts;

use std::{
    net::IpAddr,
    sync::{Arc, atomic::Ordering},
};

use deadpool_postgres::Connect;
use tokio::{task::JoinHandle, time::Instant};
use tokio_postgres::{Client as PgClient, Config as PgConfig, Error as PgError, NoTls};

use crate::{
    checkout::{GET_CONTEXT, LoginRecord, Origin, is_wrong_role, stand_in_error, stash},
    config::ConfigError,
    error::Error,
    error::TokenRefusedError,
    error::is_auth_refusal,
    metrics::{LoginOrigin, Stopwatch},
    network::{NetWatch, network_cause},
    retire::health::{LoginAttempt, LoginOutcome},
    shared::Shared,
    tls::Tls,
};
use entra_pg_token::token::{
    BoxFuture,
    cache::{CachedToken, Forced},
    claims::{exp_of, user_from_token},
};

pub(crate) struct EntraConnect {
    pub(crate) shared: Arc<Shared>,
}

impl Connect for EntraConnect {
    fn connect(
        &self,
        pg_config: &PgConfig,
    ) -> BoxFuture<'_, Result<(PgClient, JoinHandle<()>), PgError>> {
        let pg_config = pg_config.clone();
        // OpenTelemetry's database attributes, so that a trace reads "a checkout waited for
        // a login, which waited for a token".
        let span = tracing::debug_span!(
            target: "deadpool_entra",
            "login",
            endpoint = %self.shared.endpoint,
            "db.system.name" = "postgresql",
            "server.address" = pg_config.get_hosts().first().map(host_text).unwrap_or_default(),
            "server.port" = pg_config.get_ports().first().copied().unwrap_or(5432),
            "db.namespace" = pg_config.get_dbname().unwrap_or_default(),
        );
        Box::pin(tracing::Instrument::instrument(
            async move {
                if let Some(spare) = take_spare(&self.shared) {
                    return Ok(spare);
                }
                if should_decline(&self.shared) {
                    let _ = GET_CONTEXT.try_with(|c| c.declined.set(true));
                    return Err(stand_in_error());
                }
                // Every login's outcome reaches the pool's login health, a cut-off one too.
                let attempt = LoginAttempt::start(&self.shared.logins, self.shared.create_timeout);
                let result = connect_with_token(&self.shared, &pg_config).await;
                attempt.record(outcome_of(&result));
                result
            },
            span,
        ))
    }
}

/// A checkout that needs a new connection takes a spare when one is ready: no login.
fn take_spare(shared: &Shared) -> Option<(PgClient, JoinHandle<()>)> {
    let checkout = GET_CONTEXT
        .try_with(|c| c.origin.get() == Origin::Checkout)
        .unwrap_or(false);
    if !checkout || shared.spares.ready() == 0 {
        return None;
    }
    let now = Instant::now();
    let spare = shared.spares.take(&shared.gate(now), now)?;
    let _ = GET_CONTEXT.try_with(|c| c.record_login(spare.record));
    shared.counters.spare_used();
    tracing::debug!(target: "deadpool_entra", "spare connection handed to a checkout");
    Some((spare.client, spare.conn))
}

/// A host as OpenTelemetry's `server.address` names it.
fn host_text(h: &tokio_postgres::config::Host) -> String {
    match h {
        tokio_postgres::config::Host::Tcp(name) => name.clone(),
        tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
    }
}

/// How a login ended, for the pool's login health.
pub(crate) fn outcome_of<T>(result: &Result<T, PgError>) -> LoginOutcome {
    match result {
        Ok(_) => LoginOutcome::Ok,
        Err(e) => failure_outcome(
            network_cause(e).is_some() || is_wrong_role(e),
            e.as_db_error().map(|d| d.code().code()),
        ),
    }
}

/// A failed login that could not reach a usable server (`network`: unreachable, or a
/// server of the wrong role), or whose server answered that it is starting up, shutting
/// down or recovering (57P03, as a server does in the seconds of a failover), is
/// `Unreachable`: the pool waits it out with spaced trial logins, as a partition. Any
/// other refusal is `Refused`.
fn failure_outcome(network: bool, sqlstate: Option<&str>) -> LoginOutcome {
    if network || sqlstate == Some("57P03") {
        LoginOutcome::Unreachable
    } else {
        LoginOutcome::Refused
    }
}

/// A checkout (not a probe, not a caller that has waited its wait timeout) declines to
/// log in while logins are refused or no token is valid and the pool still has sessions:
/// a working session will come back to the pool, a login now would most likely fail the
/// request (and ask the identity endpoint or the server again). While logins only fail
/// to reach the server (a failover), one checkout login per short gap goes ahead: the
/// name may point to a server that answers now.
///
/// With no session at all, a checkout declines only during an outage (logins fail to
/// reach a server that has answered this pool before): it then waits, up to its wait
/// timeout, for one of the spaced trial logins to get through, as a request to a naive
/// pool waits on its TCP retransmissions, instead of failing every request of a
/// partition.
fn should_decline(shared: &Shared) -> bool {
    let may_decline = GET_CONTEXT
        .try_with(|c| !c.login_now.get())
        .unwrap_or(false);
    if !may_decline {
        return false;
    }
    let now = Instant::now();
    if shared.conns.live() > 0 {
        return shared.cache.valid_now().is_none() || shared.logins.should_wait(now);
    }
    shared.logins.outage() && shared.logins.should_wait(now)
}

/// A login with the cached token (fetching one only when none is valid), retried once
/// with a fresh token when the server refuses it.
pub(crate) async fn connect_with_token(
    shared: &Shared,
    pg_config: &PgConfig,
) -> Result<(PgClient, JoinHandle<()>), PgError> {
    let token = match shared.cache.valid_now() {
        Some(t) => t,
        None => {
            shared
                .counters
                .logins_waited_for_token
                .fetch_add(1, Ordering::Relaxed);
            match shared.cache.get().await {
                Ok(t) => t,
                Err(e) => {
                    shared
                        .counters
                        .logins_failed
                        .fetch_add(1, Ordering::Relaxed);
                    // A fetch ended by `close()` is the pool's closing, not a token error.
                    stash(if *shared.closed.borrow() {
                        Error::Closed
                    } else {
                        Error::Token(e)
                    });
                    return Err(stand_in_error());
                }
            }
        }
    };
    match login(shared, pg_config, &token).await {
        Err(e) if is_auth_refusal(&e) && shared.cache.can_refresh() && refresh_may_help(&e) => {
            // Retry only with a different secret: the same one would be refused again.
            match shared.cache.force_refresh(&token).await {
                Forced::New(fresh) => {
                    shared
                        .counters
                        .forced_refresh_retries
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        target: "deadpool_entra",
                        sqlstate = e.as_db_error().map(|d| d.code().code()),
                        "login refused; retrying once with a new token"
                    );
                    login(shared, pg_config, &fresh).await
                }
                Forced::Same(same) => {
                    shared
                        .counters
                        .same_token_after_refusal
                        .fetch_add(1, Ordering::Relaxed);
                    let refused = same_token_error(shared, pg_config, &same, &e);
                    tracing::warn!(
                        target: "deadpool_entra",
                        source = %refused.source_name,
                        expires_in_secs = refused.expires_in_secs,
                        "login refused and the token source returns the same token; not retrying"
                    );
                    stash(Error::TokenRefused(refused));
                    Err(e)
                }
                Forced::Failed(te) => {
                    tracing::warn!(
                        target: "deadpool_entra",
                        source = %te.source_name,
                        cause = %te.cause,
                        "login refused and no new token could be fetched"
                    );
                    Err(e)
                }
            }
        }
        other => other,
    }
}

/// The error for a refused token that the source keeps returning.
fn same_token_error(
    shared: &Shared,
    pg_config: &PgConfig,
    token: &CachedToken,
    e: &PgError,
) -> TokenRefusedError {
    let user = pg_config
        .get_user()
        .map(str::to_owned)
        .or_else(|| user_from_token(token.secret.expose()))
        .unwrap_or_default();
    let login = match e.as_db_error() {
        Some(db) => crate::error::classify_login(db, &user),
        None => crate::error::LoginError {
            kind: crate::error::ErrorKind::LoginRefused,
            server_message: e.to_string(),
            sqlstate: String::new(),
            user,
        },
    };
    // By this machine's wall clock, which is what the server's clock is compared with.
    let expires_in_secs = token
        .expires_wall
        .map(|w| secs_until(w, std::time::SystemTime::now()));
    TokenRefusedError {
        login,
        source_name: shared.cache.source_name(),
        expires_in_secs,
        exp: exp_of(token.secret.expose()),
    }
}

async fn login(
    shared: &Shared,
    pg_config: &PgConfig,
    token: &CachedToken,
) -> Result<(PgClient, JoinHandle<()>), PgError> {
    let mut cfg = pg_config.clone();
    cfg.password(token.secret.expose().as_bytes());
    if cfg.get_user().is_none() {
        match user_from_token(token.secret.expose()) {
            Some(u) => {
                cfg.user(u);
            }
            None => {
                stash(Error::Config(no_user_error()));
                return Err(stand_in_error());
            }
        }
    }
    let user = cfg.get_user().unwrap_or_default().to_owned();
    let epoch = shared.net.epoch();
    let took = Stopwatch::start();
    let (result, addr) = connect_pinned(shared, &cfg).await;
    match &result {
        Ok(_) => {
            shared.net.login_ok(Instant::now());
            let c = &shared.counters;
            c.login_ended(&took, true, login_origin());
            if shared.cache.is_outgoing(token, Instant::now()) {
                c.logins_on_outgoing_token.fetch_add(1, Ordering::Relaxed);
            }
            let _ = GET_CONTEXT.try_with(|c| {
                c.record_login(LoginRecord {
                    token_deadline: token.deadline,
                    created: Instant::now(),
                    addr,
                    epoch,
                })
            });
            tracing::debug!(target: "deadpool_entra", user = %user, token_generation = token.generation, "login ok");
        }
        Err(e) => {
            shared.counters.login_ended(&took, false, login_origin());
            let kind = failure_kind(crate::error::classify_pg_ref(e, &shared.endpoint, &user));
            let error = crate::error::pg_text(e);
            tracing::warn!(
                target: "deadpool_entra",
                user = %user,
                kind = %kind,
                error = %error,
                "login failed"
            );
        }
    }
    result
}

/// The `kind` field of the "login failed" log line: the [`ErrorKind`](crate::error::ErrorKind)
/// label the error gets (`role-missing`, `tls`, ...), the same as in metrics; `database`
/// when it is none of login, TLS or network, as [`Error::Postgres`] is.
fn failure_kind(classified: Option<Error>) -> &'static str {
    classified
        .map_or(crate::error::ErrorKind::Database, |e| e.kind())
        .as_str()
}

/// Whole seconds from `now` to `at`: negative when `at` has passed.
fn secs_until(at: std::time::SystemTime, now: std::time::SystemTime) -> i64 {
    match at.duration_since(now) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Who made the login running in this task, for the metrics.
fn login_origin() -> LoginOrigin {
    match GET_CONTEXT.try_with(|c| c.origin.get()) {
        Ok(Origin::Checkout) => LoginOrigin::Checkout,
        Ok(Origin::Background) => LoginOrigin::Background,
        Err(_) => LoginOrigin::Probe,
    }
}

fn refresh_may_help(e: &PgError) -> bool {
    e.as_db_error()
        .is_some_and(|db| refresh_may_fix(crate::error::classify_login(db, "").kind))
}

/// Whether a new token can fix a login refused for `kind`: an expired, revoked or
/// otherwise rejected token, yes. The role, its binding to an object id and its type, the
/// scope and the privileges are configuration: the next token is refused the same way.
/// Too many clients and a server starting up or shutting down are the server's state: a
/// later login may succeed, with the token the pool has. Every kind is decided here (no
/// wildcard), so a new kind has to be.
fn refresh_may_fix(kind: crate::error::ErrorKind) -> bool {
    use crate::error::ErrorKind::*;
    match kind {
        TokenExpired | TokenRevoked | TokenInvalid | BadPassword | LoginRefused => true,
        RoleMissing | RoleOidMismatch | RoleTypeMismatch | TokenWrongAudience
        | PermissionDenied => false,
        TooManyConnections | ServerNotReady => false,
        // Not a server's refusal of a login: never the kind of a `LoginError`.
        Configuration | TokenUnavailable | Tls | Network | ReadOnly | WrongServerRole
        | Timeout(_) | Closed | Hook | Database => false,
    }
}

/// Logs in to the addresses the server name resolves to now, one at a time (the login
/// is pinned to each with `hostaddr`; TLS still verifies the name), so that the pool
/// knows where the session went; or, when the pool does not resolve the name itself, to
/// the hosts as `crate::hosts` tries them. Logins that cannot reach an address are
/// reported to the network watch.
async fn connect_pinned(shared: &Shared, cfg: &PgConfig) -> hosts::Landed {
    let Some(addrs) = shared.net.login_addrs().await else {
        return hosts::connect_hosts(shared, cfg).await;
    };
    let candidates = addrs
        .into_iter()
        .map(|addr| {
            let mut pinned = cfg.clone();
            pinned.hostaddr(addr);
            (pinned, Some(addr))
        })
        .collect();
    hosts::in_turn(shared, candidates, true).await
}

pub(crate) async fn connect_tls(
    shared: &Shared,
    cfg: &PgConfig,
    addr: Option<IpAddr>,
) -> Result<(PgClient, JoinHandle<()>), PgError> {
    let net = shared.net.clone();
    match &shared.tls {
        Tls::Rustls(tls) => {
            let (client, conn) = cfg.connect(tls.clone()).await?;
            Ok((client, spawn_connection(conn, net, addr)))
        }
        Tls::Plain => {
            let (client, conn) = cfg.connect(NoTls).await?;
            Ok((client, spawn_connection(conn, net, addr)))
        }
    }
}

/// Drives a connection; one that ends with a network error (its peer vanished, a
/// middlebox dropped it) is reported, so that its siblings are checked before use.
fn spawn_connection<F>(conn: F, net: Arc<NetWatch>, addr: Option<IpAddr>) -> JoinHandle<()>
where
    F: std::future::Future<Output = Result<(), PgError>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(target: "deadpool_entra", error = %e, "connection ended with an error");
            if let Some(cause) = network_cause(&e) {
                net.found_dead(addr, cause, Instant::now());
            }
        }
    })
}

pub(crate) fn no_user_error() -> ConfigError {
    ConfigError::no_user()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::{failure_kind, refresh_may_fix, secs_until};
    use crate::{error::Error, error::ErrorKind, error::LoginError};

    #[test]
    fn the_login_failed_line_names_the_kind_of_failure() {
        let login = Error::Login(LoginError {
            kind: ErrorKind::RoleMissing,
            server_message: "role \"x\" does not exist".into(),
            sqlstate: "28000".into(),
            user: "x".into(),
        });
        assert_eq!(failure_kind(Some(login)), "role-missing");
        let tls = Error::Tls {
            endpoint: "h:5432".into(),
            cause: "bad cert".into(),
        };
        assert_eq!(failure_kind(Some(tls)), "tls");
        let net = Error::Network {
            endpoint: "h:5432".into(),
            cause: "refused".into(),
        };
        assert_eq!(failure_kind(Some(net)), "network");
        assert_eq!(failure_kind(Some(Error::Closed)), "closed");
        assert_eq!(failure_kind(None), "database");
    }

    #[test]
    fn a_new_token_is_asked_for_only_when_it_can_fix_the_refusal() {
        use ErrorKind::*;
        for kind in [
            TokenExpired,
            TokenRevoked,
            TokenInvalid,
            BadPassword,
            LoginRefused,
        ] {
            assert!(refresh_may_fix(kind), "{kind:?}");
        }
        // The role, the scope and the privileges are configuration; too many clients and a
        // server starting up are the server's state: the same token logs in once they pass.
        for kind in [
            RoleMissing,
            TokenWrongAudience,
            PermissionDenied,
            RoleOidMismatch,
            RoleTypeMismatch,
            TooManyConnections,
            ServerNotReady,
        ] {
            assert!(!refresh_may_fix(kind), "{kind:?}");
        }
    }

    #[test]
    fn a_server_that_is_not_ready_is_waited_out_like_an_unreachable_one() {
        use super::failure_outcome;
        use crate::retire::health::LoginOutcome;
        assert_eq!(failure_outcome(true, None), LoginOutcome::Unreachable);
        assert_eq!(
            failure_outcome(false, Some("57P03")),
            LoginOutcome::Unreachable
        );
        assert_eq!(failure_outcome(false, Some("28000")), LoginOutcome::Refused);
        assert_eq!(failure_outcome(false, Some("53300")), LoginOutcome::Refused);
        assert_eq!(failure_outcome(false, None), LoginOutcome::Refused);
    }

    #[test]
    fn seconds_until_a_wall_clock_time_are_negative_once_it_passed() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(secs_until(now + Duration::from_secs(90), now), 90);
        assert_eq!(secs_until(now - Duration::from_secs(90), now), -90);
        assert_eq!(secs_until(now, now), 0);
        assert_eq!(
            secs_until(now + Duration::from_millis(1500), now),
            1,
            "whole seconds"
        );
    }
}
