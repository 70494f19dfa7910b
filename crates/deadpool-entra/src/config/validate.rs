//! The rules a configuration must follow before a pool is built from it: where a token
//! may be sent, which settings contradict each other, which values are absurd.

use std::time::Duration;

use super::error::ConfigError;
use super::loopback::is_loopback;
use super::{AuthMethod, ChannelBinding, Config, SslMode};
use entra_pg_token::token::backoff::MIN_RETRY_DELAY;

/// The checks of [`Config::validate`]; `password_mode` is decided by the builder (an
/// explicit token source overrides the configured method).
pub(crate) fn validate(cfg: &Config, password_mode: bool) -> Result<(), ConfigError> {
    let hosts = hosts(cfg)?;
    pool_size(cfg)?;
    transport(cfg, &hosts, password_mode)?;
    credentials(cfg, password_mode)?;
    timings(cfg)
}

/// A host list without empty entries, with as many ports and addresses as hosts (or one
/// port for all, or no addresses).
fn hosts(cfg: &Config) -> Result<Vec<&str>, ConfigError> {
    if cfg.host.as_deref().unwrap_or("").trim().is_empty() {
        return Err(ConfigError::new(
            "host",
            "no host configured: set PGHOST or AZURE_POSTGRESQL_HOST, AZURE_POSTGRESQL_CONNECTIONSTRING or DATABASE_URL, or the builder's host()",
        ));
    }
    let hosts = cfg.host_list();
    if hosts.iter().any(|h| h.is_empty()) {
        return Err(ConfigError::new(
            "host",
            "an empty entry in the host list (two commas in a row, or one at an end)",
        ));
    }
    if cfg.port == Some(0) || cfg.ports.contains(&0) {
        return Err(ConfigError::new("port", "port 0 is not a valid port"));
    }
    if !cfg.ports.is_empty() && cfg.ports.len() != hosts.len() {
        return Err(ConfigError::new(
            "port",
            format!(
                "{} ports for {} hosts: give one port for all hosts, or one per host",
                cfg.ports.len(),
                hosts.len()
            ),
        ));
    }
    if !cfg.hostaddr.is_empty() && cfg.hostaddr.len() != hosts.len() {
        return Err(ConfigError::new(
            "hostaddr",
            format!(
                "{} addresses for {} hosts: give one hostaddr per host, an empty entry for a host whose name is to be resolved (`hostaddr=10.0.0.1,`); the host names are still what TLS verifies",
                cfg.hostaddr.len(),
                hosts.len()
            ),
        ));
    }
    Ok(hosts)
}

/// PostgreSQL's ceiling on `max_connections` (`MAX_BACKENDS`, 2^18 - 1): no server holds a
/// larger pool, and a pool that allocates per slot (sqlx) would abort on a size near
/// `usize::MAX`.
pub(crate) const MAX_POOL_SIZE: usize = 262_143;

/// A size that lets a checkout succeed, and holds the floor.
fn pool_size(cfg: &Config) -> Result<(), ConfigError> {
    if let Some(max) = cfg.max_size
        && cfg.min_connections > max
    {
        return Err(ConfigError::new(
            "min_connections",
            format!(
                "min_connections ({}) is larger than max_size ({max})",
                cfg.min_connections
            ),
        ));
    }
    if cfg.max_size == Some(0) {
        return Err(ConfigError::new(
            "max_size",
            "max_size 0 would make every checkout wait for ever",
        ));
    }
    for (field, n) in [
        ("max_size", cfg.max_size.unwrap_or(0)),
        ("min_connections", cfg.min_connections),
    ] {
        if n > MAX_POOL_SIZE {
            return Err(ConfigError::new(
                field,
                format!(
                    "{field} {n} is more sessions than any PostgreSQL server accepts (its max_connections is at most {MAX_POOL_SIZE}; Azure's is a few thousand); size the pool for the server"
                ),
            ));
        }
    }
    Ok(())
}

/// No secret in clear text (unless to loopback with the opt-out), and no certificate check
/// that anyone with a public certificate passes.
fn transport(cfg: &Config, hosts: &[&str], password_mode: bool) -> Result<(), ConfigError> {
    if !cfg.ssl_mode.uses_tls() {
        let what = if password_mode {
            "the password"
        } else {
            "the access token"
        };
        if !cfg.dangerous_allow_plaintext_on_loopback {
            return Err(ConfigError::new(
                "sslmode",
                format!(
                    "sslmode={:?} would send {what} in clear text; use verify-full (default), verify-ca or require",
                    cfg.ssl_mode
                ),
            ));
        }
        let off_loopback = hosts
            .iter()
            .find(|h| !is_loopback(h))
            .map(|h| (*h).to_owned())
            .or_else(|| {
                cfg.hostaddr
                    .iter()
                    .flatten()
                    .find(|a| !a.is_loopback())
                    .map(ToString::to_string)
            });
        if let Some(host) = off_loopback {
            return Err(ConfigError::new(
                "sslmode",
                format!(
                    "sslmode={:?} would send {what} in clear text to {host}; dangerous_allow_plaintext_on_loopback only applies to loopback hosts (127.0.0.0/8, ::1, localhost, unix sockets)",
                    cfg.ssl_mode
                ),
            ));
        }
    }
    let public_roots = cfg
        .ssl_root_cert
        .as_deref()
        .is_none_or(|p| p.as_os_str() == "system");
    if cfg.ssl_mode == SslMode::VerifyCa && public_roots {
        let what = if password_mode {
            "the password"
        } else {
            "the access token (valid on every Azure Database for PostgreSQL server where the identity has a role)"
        };
        return Err(ConfigError::new(
            "sslmode",
            format!(
                "sslmode=verify-ca checks the certificate chain but not the host name; with the public roots (no sslrootcert, or sslrootcert=system) anyone who can redirect the connection and holds any publicly trusted certificate, for any domain, would receive {what}. Use verify-full (the default), or set sslrootcert to a CA file that signs only your database servers"
            ),
        ));
    }
    Ok(())
}

/// What a login sends fits the mode: no channel binding with tokens, a password and a
/// user in password mode.
fn credentials(cfg: &Config, password_mode: bool) -> Result<(), ConfigError> {
    if cfg.channel_binding == ChannelBinding::Require && !password_mode {
        return Err(ConfigError::new(
            "channel_binding",
            "channel_binding=require cannot work with Entra token logins: the server asks for the token as a cleartext password (over TLS), and channel binding only exists for SCRAM; use prefer or disable",
        ));
    }
    if password_mode && cfg.password.is_none() && cfg.auth_method == AuthMethod::Password {
        return Err(ConfigError::new(
            "password",
            "AZURE_AUTH_METHOD=password needs a password (PGPASSWORD or AZURE_POSTGRESQL_PASSWORD)",
        ));
    }
    if password_mode && cfg.user.is_none() {
        return Err(ConfigError::new(
            "user",
            "password logins need a user (PGUSER or AZURE_POSTGRESQL_USER)",
        ));
    }
    Ok(())
}

/// Durations and fractions that make sense: a jitter in `[0, 1]`, backoff bounds that do
/// not call a failing endpoint in a tight loop, a positive fetch timeout.
fn timings(cfg: &Config) -> Result<(), ConfigError> {
    let jitter = cfg.retire.max_lifetime_jitter;
    if !(0.0..=1.0).contains(&jitter) {
        return Err(ConfigError::new(
            "retire.max_lifetime_jitter",
            format!("{jitter} is not a fraction: use a number from 0 to 1 (default 0.2)"),
        ));
    }
    let (min, max) = (cfg.refresh.min_backoff, cfg.refresh.max_backoff);
    if min < MIN_RETRY_DELAY {
        return Err(ConfigError::new(
            "refresh.min_backoff",
            format!(
                "{} ms would call a failing identity endpoint in a tight loop; use at least {} ms (default 1 s)",
                min.as_millis(),
                MIN_RETRY_DELAY.as_millis()
            ),
        ));
    }
    if max < min {
        return Err(ConfigError::new(
            "refresh.max_backoff",
            format!(
                "{} s is below refresh.min_backoff ({} s); the cap on the retry delay must be at least its floor (default 30 s)",
                max.as_secs_f64(),
                min.as_secs_f64()
            ),
        ));
    }
    if cfg.refresh.fetch_timeout == Some(Duration::ZERO) {
        return Err(ConfigError::new(
            "refresh.fetch_timeout",
            "0 s would fail every token fetch; set a positive duration (default 30 s), or null for no limit",
        ));
    }
    Ok(())
}
