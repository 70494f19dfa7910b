//! Connection strings: `postgresql://` URLs and libpq key=value strings, read into
//! (key, value) pairs with libpq's rules, then applied to a [`Config`].
//!
//! Errors never repeat text that could be part of a secret: a space, `&`, `/` or `@` in
//! an unquoted or unencoded password cuts it into pieces that look like keys, hosts or
//! ports, so such pieces are reported by their position only.
//!
//! Why not `tokio_postgres::Config::from_str`, which parses both forms with several
//! hosts: it refuses what libpq accepts and Azure's strings hold. It knows `sslmode`
//! only as `disable`/`prefer`/`require` (not `verify-ca`/`verify-full`, our default),
//! `target_session_attrs` only as `any`/`read-write`/`read-only` (not libpq 14's
//! `primary`/`standby`/`prefer-standby`), no empty `hostaddr` entry (libpq: resolve that
//! host's name), no `sslrootcert`, and no key of ours (`client_id`, `scope`,
//! `auth_method`): any of these fails the whole string. Its lexer is private, so the
//! pairs cannot be had without it. The pool does use tokio-postgres' `Config` for what
//! it means there: the login configuration (`pg.rs`) is built as one.

use std::str::FromStr;

use super::Config;
use super::error::ConfigError;

/// The keys a connection string may hold: libpq's that the pool supports, and ours.
pub(super) const KEYS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "database",
    "user",
    "password",
    "sslmode",
    "sslrootcert",
    "channel_binding",
    "application_name",
    "connect_timeout",
    "options",
    "target_session_attrs",
    "load_balance_hosts",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_retries",
    "keepalives_count",
    "tcp_user_timeout",
    "client_id",
    "azure_client_id",
    "scope",
    "auth_method",
];

fn percent_decode(field: &str, s: &str) -> Result<String, ConfigError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| ConfigError::new(field, "bad percent-encoding"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map_err(|_| ConfigError::new(field, "not valid UTF-8 after percent-decoding"))
}

/// Where `piece` starts in `whole` (1-based characters), for errors that do not repeat it.
fn position(whole: &str, piece: &str) -> usize {
    whole
        .find(piece)
        .map_or(0, |i| whole[..i].chars().count() + 1)
}

/// A key from a connection string must be one we know; an unknown one is reported by its
/// position only.
fn check_key(key: &str, whole: &str, piece: &str) -> Result<(), ConfigError> {
    if KEYS.contains(&key) {
        return Ok(());
    }
    Err(ConfigError::new(
        "connection string",
        format!(
            "unknown setting at character {} (not repeated here: it could be part of a secret whose space or `&` was not quoted or percent-encoded); known settings: {}",
            position(whole, piece),
            KEYS.join(", ")
        ),
    ))
}

/// One host of a URL's host list: `name`, `name:port`, `[v6]`, `[v6]:port`.
fn url_host(whole: &str, spec: &str) -> Result<(String, String), ConfigError> {
    let (host, port) = if let Some(h) = spec.strip_prefix('[') {
        let (h, after) = h
            .split_once(']')
            .ok_or_else(|| ConfigError::new("host", "unclosed [ in an IPv6 address"))?;
        let port = match after {
            "" => "",
            p => p.strip_prefix(':').ok_or_else(|| {
                ConfigError::new(
                    "host",
                    format!(
                        "unexpected text after an IPv6 address at character {}",
                        position(whole, spec)
                    ),
                )
            })?,
        };
        (h.to_owned(), port)
    } else {
        match spec.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p),
            None => (spec.to_owned(), ""),
        }
    };
    Ok((percent_decode("host", &host)?, port.to_owned()))
}

/// The pairs of a `postgresql://` URL, in libpq's order (authority, path, query).
fn url_pairs(s: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let rest = s
        .strip_prefix("postgresql://")
        .or_else(|| s.strip_prefix("postgres://"))
        .ok_or_else(|| ConfigError::new("url", "expected postgresql:// or postgres://"))?;
    let (main, query) = match rest.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match main.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (main, None),
    };
    let (userinfo, hostlist) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let mut pairs = Vec::new();
    if let Some(ui) = userinfo {
        let (u, p) = match ui.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (ui, None),
        };
        if !u.is_empty() {
            pairs.push(("user".to_owned(), percent_decode("user", u)?));
        }
        if let Some(p) = p {
            pairs.push(("password".to_owned(), percent_decode("password", p)?));
        }
    }
    // Several hosts, each with an optional port: `h1:5433,h2,[::1]:5434`.
    let mut hosts = Vec::new();
    let mut ports = Vec::new();
    for spec in hostlist.split(',') {
        let (h, p) = url_host(s, spec)?;
        hosts.push(h);
        ports.push(p);
    }
    if hosts.iter().any(|h| !h.is_empty()) {
        pairs.push(("host".to_owned(), hosts.join(",")));
    }
    if ports.iter().any(|p| !p.is_empty()) {
        pairs.push(("port".to_owned(), ports.join(",")));
    }
    if let Some(db) = path.filter(|p| !p.is_empty()) {
        pairs.push(("dbname".to_owned(), percent_decode("dbname", db)?));
    }
    if let Some(q) = query {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_decode("connection string", k)?;
            check_key(&k, s, pair)?;
            // libpq keeps `+` as `+` (base64 passwords contain it); only %20 is a space.
            let v = percent_decode(&k, v)?;
            pairs.push((k, v));
        }
    }
    Ok(pairs)
}

/// The pairs of a libpq key=value string (single quotes, backslash escapes).
fn key_value_pairs(s: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let mut pairs = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(ConfigError::new(
                "connection string",
                format!(
                    "expected `key=value` at character {} (the text is not repeated here: it could be part of a secret; quote values that contain spaces with single quotes)",
                    position(s, &key)
                ),
            ));
        }
        check_key(&key, s, &key)?;
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '\'' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(ConfigError::new(key, "unterminated quoted value"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                if c == '\\' {
                    chars.next();
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                    continue;
                }
                value.push(c);
                chars.next();
            }
        }
        pairs.push((key, value));
    }
    Ok(pairs)
}

/// The (key, value) pairs of a connection string, in order.
pub(super) fn pairs(s: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let s = s.trim();
    if s.starts_with("postgresql://") || s.starts_with("postgres://") {
        let pairs = url_pairs(s)?;
        if !pairs.iter().any(|(k, _)| k == "host") {
            return Err(ConfigError::new("host", "the URL has an empty host"));
        }
        Ok(pairs)
    } else if s.contains('=') {
        key_value_pairs(s)
    } else {
        Err(ConfigError::new(
            "connection string",
            "expected a postgresql:// URL or key=value pairs",
        ))
    }
}

impl Config {
    /// Applies the settings of a connection string over this configuration (each key it
    /// holds replaces the current value; the others are kept).
    pub fn apply_connection_string(&mut self, s: &str) -> Result<(), ConfigError> {
        for (k, v) in pairs(s)? {
            self.set(&k, &v)?;
        }
        Ok(())
    }
}

impl FromStr for Config {
    type Err = ConfigError;

    /// Parses a `postgresql://` (or `postgres://`) URL or a libpq key=value string.
    /// Only syntax is checked here; [`Config::validate`] (run when the pool is built)
    /// checks the rules.
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let mut cfg = Config::default();
        cfg.apply_connection_string(s)?;
        Ok(cfg)
    }
}
