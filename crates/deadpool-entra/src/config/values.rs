//! One value of a connection string or variable, parsed the way libpq reads it, with
//! errors that never repeat a value that could be part of a secret.

use std::{net::IpAddr, time::Duration};

use super::error::ConfigError;

/// The text of a rejected value, only when it cannot be part of a secret: a number.
/// Anything else may be a fragment of a password or token that a space, `&` or `/` cut
/// loose, and is not repeated in an error.
pub(super) fn shown(v: &str) -> String {
    let v = v.trim();
    if !v.is_empty() && v.len() <= 20 && v.chars().all(|c| c.is_ascii_digit() || c == '-') {
        format!(" {v:?}")
    } else {
        " (not repeated here: it could be part of a secret)".to_owned()
    }
}

pub(super) fn parse_port(field: &str, v: &str) -> Result<u16, ConfigError> {
    match v.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(ConfigError::new(
            field,
            format!("bad port{}: expected a number from 1 to 65535", shown(v)),
        )),
        Ok(p) => Ok(p),
    }
}

/// `connect_timeout` as libpq reads it: whole seconds, 0 or less meaning no limit
/// (`Some(Duration::ZERO)`; a humantime duration such as `10s` is accepted too).
pub(super) fn parse_connect_timeout(field: &str, v: &str) -> Result<Option<Duration>, ConfigError> {
    let v = v.trim();
    if let Ok(s) = v.parse::<i64>() {
        return Ok(Some(Duration::from_secs(u64::try_from(s).unwrap_or(0))));
    }
    humantime::parse_duration(v).map(Some).map_err(|_| {
        ConfigError::new(
            field,
            format!(
                "bad duration{}: use whole seconds (0 for no limit) or a duration like 10s",
                shown(v)
            ),
        )
    })
}

/// `hostaddr` as libpq reads it: empty is not set; in a list, an empty entry leaves its
/// host to its name (`hostaddr=10.0.0.1,` for two hosts).
pub(super) fn parse_hostaddrs(v: &str) -> Result<Vec<Option<IpAddr>>, ConfigError> {
    if v.trim().is_empty() {
        return Ok(Vec::new());
    }
    v.split(',')
        .map(str::trim)
        .map(|a| {
            if a.is_empty() {
                return Ok(None);
            }
            a.parse().map(Some).map_err(|_| {
                ConfigError::new(
                    "hostaddr",
                    "not an IP address (hostaddr is the numeric address to connect to, one per host, or an empty entry for a host whose name is to be resolved; the host name goes in host)",
                )
            })
        })
        .collect()
}

/// A text value; empty (or blank) means not set, as in libpq.
pub(super) fn non_empty(v: &str) -> Option<String> {
    (!v.trim().is_empty()).then(|| v.to_owned())
}

pub(super) fn parse_bool(field: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::new(
            field,
            format!("expected true or false, got {v:?}"),
        )),
    }
}

/// A list of ports (`5432,5433`; an empty entry is 5432, as in libpq).
pub(super) fn parse_ports(field: &str, v: &str) -> Result<Vec<u16>, ConfigError> {
    v.split(',')
        .map(|p| {
            if p.trim().is_empty() {
                Ok(5432)
            } else {
                parse_port(field, p)
            }
        })
        .collect()
}

/// An integer as libpq reads its numeric settings; `expected` says what in the error.
fn parse_int(field: &str, v: &str, expected: &str) -> Result<i64, ConfigError> {
    v.trim()
        .parse()
        .map_err(|_| ConfigError::new(field, format!("expected {expected}, got{}", shown(v))))
}

/// Whole seconds as libpq reads keepalive settings: 0 or less is the system's default
/// (`Some(Duration::ZERO)`; unset, `None`, is the pool's default).
pub(super) fn parse_secs_opt(field: &str, v: &str) -> Result<Option<Duration>, ConfigError> {
    let n = parse_int(field, v, "whole seconds")?;
    Ok(Some(Duration::from_secs(u64::try_from(n).unwrap_or(0))))
}

/// Milliseconds as libpq reads `tcp_user_timeout`: 0 or less is the system's default
/// (`Some(Duration::ZERO)`).
pub(super) fn parse_millis_opt(field: &str, v: &str) -> Result<Option<Duration>, ConfigError> {
    let n = parse_int(field, v, "whole milliseconds")?;
    Ok(Some(Duration::from_millis(u64::try_from(n).unwrap_or(0))))
}

/// libpq's `keepalives`: an integer, 0 for off, anything else for on.
pub(super) fn parse_keepalives(field: &str, v: &str) -> Result<Option<bool>, ConfigError> {
    Ok(Some(parse_int(field, v, "0 (off) or 1 (on)")? != 0))
}
