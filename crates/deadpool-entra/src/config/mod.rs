//! Configuration: a plain struct (serde), the environment, `postgresql://` URLs and
//! libpq key=value strings.
//!
//! Environment precedence: `AZURE_POSTGRESQL_*` over `PG*` over `DATABASE_URL`.

use std::{collections::HashMap, fmt, path::PathBuf, str::FromStr, time::Duration};

use deadpool_postgres::{QueueMode, RecyclingMethod};

use crate::{ConfigError, Error, Pool, PoolBuilder, RecyclePolicy, RefreshPolicy};

mod validate;
pub(crate) use validate::validate;

/// libpq's `sslmode`.
///
/// `Require` and `VerifyFull` both verify the certificate chain and the host name here
/// (stricter than libpq's `require`): a token is never offered to an unauthenticated
/// server. `VerifyCa` verifies the chain only. `Disable`, `Allow` and `Prefer` would send
/// the token in clear text and are refused, except on loopback with
/// [`PoolBuilder::dangerous_allow_plaintext_on_loopback`], where they mean no TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// No TLS (libpq: TLS only if the server insists).
    Allow,
    /// No TLS here (libpq: TLS if the server offers it, which can silently fall back).
    Prefer,
    /// TLS, chain and host name verified.
    Require,
    /// TLS, chain verified, host name not checked.
    VerifyCa,
    /// TLS, chain and host name verified (default).
    #[default]
    VerifyFull,
}

impl SslMode {
    /// Does this mode use TLS?
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Require | Self::VerifyCa | Self::VerifyFull)
    }
}

impl FromStr for SslMode {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" | "verify_ca" => Self::VerifyCa,
            "verify-full" | "verify_full" => Self::VerifyFull,
            other => {
                return Err(ConfigError::new(
                    "sslmode",
                    format!(
                        "unknown sslmode {other:?}; use verify-full (default), verify-ca or require"
                    ),
                ));
            }
        })
    }
}

/// libpq's `channel_binding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum ChannelBinding {
    /// Never use channel binding.
    Disable,
    /// Use it when the server offers SCRAM with channel binding (default).
    #[default]
    Prefer,
    /// Require it (incompatible with token logins, which are cleartext-password logins).
    Require,
}

impl FromStr for ChannelBinding {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            other => {
                return Err(ConfigError::new(
                    "channel_binding",
                    format!("unknown channel_binding {other:?}; use disable, prefer or require"),
                ));
            }
        })
    }
}

/// `AZURE_AUTH_METHOD`: how the pool authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum AuthMethod {
    /// A managed identity (system-assigned, or user-assigned with `client_id`).
    ManagedIdentity,
    /// A static password (`PGPASSWORD` / `AZURE_POSTGRESQL_PASSWORD`).
    Password,
    /// A password if one is configured, otherwise the credential chain (environment,
    /// workload identity, managed identity, Azure CLI, Azure Developer CLI). Default.
    #[default]
    Auto,
}

impl FromStr for AuthMethod {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        Ok(
            match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
                "managed_identity" | "managedidentity" => Self::ManagedIdentity,
                "password" => Self::Password,
                "auto" | "" => Self::Auto,
                other => {
                    return Err(ConfigError::new(
                        "AZURE_AUTH_METHOD",
                        format!(
                            "unknown auth method {other:?}; use managed_identity, password or auto"
                        ),
                    ));
                }
            },
        )
    }
}

/// Everything needed to build a [`Pool`]. Deserializable (feature `serde`; durations
/// as `"30s"`-style strings or seconds), from the environment, or parsed from a URL or
/// key=value string.
///
/// ```
/// let cfg: deadpool_entra::Config =
///     "postgresql://app%40contoso.com@db.example.com:5432/app?sslmode=verify-full"
///         .parse()
///         .unwrap();
/// assert_eq!(cfg.user.as_deref(), Some("app@contoso.com"));
/// ```
#[derive(Clone)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct Config {
    /// Server host name, IP address, or unix socket directory.
    pub host: Option<String>,
    /// Server port (default 5432).
    pub port: Option<u16>,
    /// Database name.
    pub dbname: Option<String>,
    /// PostgreSQL user; when `None`, derived from the token's claims.
    pub user: Option<String>,
    /// Static password (password mode). Never printed by `Debug`.
    pub password: Option<String>,
    /// How to authenticate.
    pub auth_method: AuthMethod,
    /// Client id of a user-assigned managed identity (`AZURE_POSTGRESQL_CLIENTID`).
    pub client_id: Option<String>,
    /// Token scope (default [`crate::DEFAULT_SCOPE`]; other clouds differ).
    pub scope: Option<String>,
    /// TLS mode (default verify-full).
    pub ssl_mode: SslMode,
    /// CA file in PEM (`sslrootcert`), or `system` for the platform store.
    pub ssl_root_cert: Option<PathBuf>,
    /// Channel binding (default prefer).
    pub channel_binding: ChannelBinding,
    /// `application_name` (default `deadpool-entra`).
    pub application_name: Option<String>,
    /// TCP connect timeout.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::duration::option"))]
    pub connect_timeout: Option<Duration>,
    /// Server `options` (e.g. `-c search_path=app`).
    pub options: Option<String>,
    /// Allow plaintext on loopback hosts only (test servers). Loudly named on purpose.
    pub dangerous_allow_plaintext_on_loopback: bool,
    /// Maximum number of connections (default: deadpool's, `cpus * 4`).
    pub max_size: Option<usize>,
    /// How long `get()` waits for a free slot (default 30 s).
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::duration::option"))]
    pub wait_timeout: Option<Duration>,
    /// How long creating a connection may take, token included (default 10 s).
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::duration::option"))]
    pub create_timeout: Option<Duration>,
    /// How long recycling a connection may take (default 5 s).
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::duration::option"))]
    pub recycle_timeout: Option<Duration>,
    /// How a connection is checked when it is reused (default Fast).
    pub recycling_method: RecyclingMethod,
    /// Which idle connection `get()` takes (default Fifo).
    pub queue_mode: QueueMode,
    /// Retirement policy.
    pub recycle: RecyclePolicy,
    /// Token refresh policy.
    pub refresh: RefreshPolicy,
    /// Do not fetch the first token when the pool is built.
    pub lazy: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: None,
            port: None,
            dbname: None,
            user: None,
            password: None,
            auth_method: AuthMethod::Auto,
            client_id: None,
            scope: None,
            ssl_mode: SslMode::VerifyFull,
            ssl_root_cert: None,
            channel_binding: ChannelBinding::Prefer,
            application_name: None,
            connect_timeout: None,
            options: None,
            dangerous_allow_plaintext_on_loopback: false,
            max_size: None,
            wait_timeout: Some(Duration::from_secs(30)),
            create_timeout: Some(Duration::from_secs(10)),
            recycle_timeout: Some(Duration::from_secs(5)),
            recycling_method: RecyclingMethod::Fast,
            queue_mode: QueueMode::Fifo,
            recycle: RecyclePolicy::default(),
            refresh: RefreshPolicy::default(),
            lazy: false,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("dbname", &self.dbname)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("auth_method", &self.auth_method)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_root_cert", &self.ssl_root_cert)
            .field("channel_binding", &self.channel_binding)
            .field("application_name", &self.application_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("options", &self.options)
            .field(
                "dangerous_allow_plaintext_on_loopback",
                &self.dangerous_allow_plaintext_on_loopback,
            )
            .field("max_size", &self.max_size)
            .field("wait_timeout", &self.wait_timeout)
            .field("create_timeout", &self.create_timeout)
            .field("recycle_timeout", &self.recycle_timeout)
            .field("recycling_method", &self.recycling_method)
            .field("queue_mode", &self.queue_mode)
            .field("recycle", &self.recycle)
            .field("refresh", &self.refresh)
            .field("lazy", &self.lazy)
            .finish()
    }
}

fn parse_port(field: &str, v: &str) -> Result<u16, ConfigError> {
    match v.trim().parse::<u16>() {
        Ok(0) | Err(_) => Err(ConfigError::new(
            field,
            format!("bad port {v:?}: expected a number from 1 to 65535"),
        )),
        Ok(p) => Ok(p),
    }
}

fn parse_secs(field: &str, v: &str) -> Result<Duration, ConfigError> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Ok(Duration::from_secs(s));
    }
    humantime::parse_duration(v)
        .map_err(|e| ConfigError::new(field, format!("bad duration {v:?}: {e}")))
}

fn non_empty(field: &str, v: &str) -> Result<String, ConfigError> {
    if v.trim().is_empty() {
        Err(ConfigError::new(field, "must not be empty"))
    } else {
        Ok(v.to_owned())
    }
}

fn parse_bool(field: &str, v: &str) -> Result<bool, ConfigError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::new(
            field,
            format!("expected true or false, got {v:?}"),
        )),
    }
}

impl Config {
    /// A default configuration (verify-full, auth `auto`, no host yet).
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the process environment (see [`Config::from_env_vars`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_vars(std::env::vars())
    }

    /// Reads configuration from these variables, with precedence
    /// `AZURE_POSTGRESQL_*` over `PG*` over `DATABASE_URL`:
    ///
    /// | setting | variables |
    /// | --- | --- |
    /// | host | `AZURE_POSTGRESQL_HOST`, `PGHOST` |
    /// | port | `AZURE_POSTGRESQL_PORT`, `PGPORT` |
    /// | database | `AZURE_POSTGRESQL_NAME`, `PGDATABASE` |
    /// | user | `AZURE_POSTGRESQL_USER`, `PGUSER` |
    /// | password | `AZURE_POSTGRESQL_PASSWORD`, `PGPASSWORD` |
    /// | TLS | `AZURE_POSTGRESQL_SSL` (`true` = require), `PGSSLMODE`, `PGSSLROOTCERT` |
    /// | channel binding | `PGCHANNELBINDING` |
    /// | other | `PGAPPNAME`, `PGCONNECT_TIMEOUT`, `PGOPTIONS` |
    /// | identity | `AZURE_POSTGRESQL_CLIENTID`, `AZURE_AUTH_METHOD`, `AZURE_POSTGRESQL_SCOPE` |
    ///
    /// The result is validated (see [`Config::validate`]).
    pub fn from_env_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self, ConfigError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let env: HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let get = |k: &str| env.get(k).map(String::as_str);
        let mut cfg = match get("DATABASE_URL").filter(|s| !s.trim().is_empty()) {
            Some(url) => url.parse::<Config>().map_err(|e| ConfigError {
                field: format!("DATABASE_URL: {}", e.field),
                reason: e.reason,
            })?,
            None => Config::default(),
        };
        // PG*, then AZURE_POSTGRESQL_* (later wins).
        for (var, key) in [
            ("PGHOST", "host"),
            ("PGPORT", "port"),
            ("PGDATABASE", "dbname"),
            ("PGUSER", "user"),
            ("PGPASSWORD", "password"),
            ("PGSSLMODE", "sslmode"),
            ("PGSSLROOTCERT", "sslrootcert"),
            ("PGCHANNELBINDING", "channel_binding"),
            ("PGAPPNAME", "application_name"),
            ("PGCONNECT_TIMEOUT", "connect_timeout"),
            ("PGOPTIONS", "options"),
            ("AZURE_POSTGRESQL_HOST", "host"),
            ("AZURE_POSTGRESQL_PORT", "port"),
            ("AZURE_POSTGRESQL_NAME", "dbname"),
            ("AZURE_POSTGRESQL_DATABASE", "dbname"),
            ("AZURE_POSTGRESQL_USER", "user"),
            ("AZURE_POSTGRESQL_USERNAME", "user"),
            ("AZURE_POSTGRESQL_PASSWORD", "password"),
        ] {
            if let Some(v) = get(var) {
                cfg.set(key, v).map_err(|e| ConfigError {
                    field: var.to_owned(),
                    reason: e.reason,
                })?;
            }
        }
        if let Some(v) = get("AZURE_POSTGRESQL_SSL") {
            let on = parse_bool("AZURE_POSTGRESQL_SSL", v)?;
            // `true` asks for TLS; keep a stricter mode if PGSSLMODE gave one.
            cfg.ssl_mode = match (on, cfg.ssl_mode.uses_tls()) {
                (true, true) => cfg.ssl_mode,
                (true, false) => SslMode::Require,
                (false, _) => SslMode::Disable,
            };
        }
        if let Some(v) = get("AZURE_POSTGRESQL_CLIENTID").filter(|v| !v.trim().is_empty()) {
            cfg.client_id = Some(v.to_owned());
        }
        if let Some(v) = get("AZURE_POSTGRESQL_SCOPE").filter(|v| !v.trim().is_empty()) {
            cfg.scope = Some(v.to_owned());
        }
        if let Some(v) = get("AZURE_AUTH_METHOD") {
            cfg.auth_method = v.parse()?;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Applies one libpq-style setting (`host`, `port`, `dbname`, `user`, `password`,
    /// `sslmode`, `sslrootcert`, `channel_binding`, `application_name`,
    /// `connect_timeout`, `options`, `client_id`, `scope`, `auth_method`).
    /// Unknown keys are an error naming the key.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match key {
            "host" | "hostaddr" => self.host = Some(non_empty("host", value)?),
            "port" => self.port = Some(parse_port("port", value)?),
            "dbname" | "database" => self.dbname = Some(non_empty("dbname", value)?),
            "user" => self.user = Some(non_empty("user", value)?),
            "password" => self.password = Some(value.to_owned()),
            "sslmode" => self.ssl_mode = value.parse()?,
            "sslrootcert" => {
                self.ssl_root_cert = Some(PathBuf::from(non_empty("sslrootcert", value)?))
            }
            "channel_binding" => self.channel_binding = value.parse()?,
            "application_name" => self.application_name = Some(value.to_owned()),
            "connect_timeout" => self.connect_timeout = Some(parse_secs("connect_timeout", value)?),
            "options" => self.options = Some(value.to_owned()),
            "client_id" | "azure_client_id" => {
                self.client_id = Some(non_empty("client_id", value)?)
            }
            "scope" => self.scope = Some(non_empty("scope", value)?),
            "auth_method" => self.auth_method = value.parse()?,
            other => {
                return Err(ConfigError::new(other, "unknown setting"));
            }
        }
        Ok(())
    }

    /// Will this configuration log in with a static password (rather than tokens)?
    pub fn uses_password(&self) -> bool {
        match self.auth_method {
            AuthMethod::Password => true,
            AuthMethod::ManagedIdentity => false,
            AuthMethod::Auto => self.password.is_some(),
        }
    }

    /// Checks the rules that do not depend on the token: a host, a valid port, TLS for
    /// anything that sends a secret (unless the loopback opt-out applies), no
    /// `channel_binding=require` with tokens, a password in password mode.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate(self, self.uses_password())
    }

    /// A [`PoolBuilder`] preloaded with this configuration.
    pub fn builder(&self) -> PoolBuilder {
        PoolBuilder::from_config(self.clone())
    }

    /// Builds the pool (fetches the first token unless `lazy`).
    pub async fn build_pool(&self) -> Result<Pool, Error> {
        self.builder().build().await
    }
}

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

fn parse_url(s: &str) -> Result<Config, ConfigError> {
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
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let mut cfg = Config::default();
    if let Some(ui) = userinfo {
        let (u, p) = match ui.split_once(':') {
            Some((u, p)) => (u, Some(p)),
            None => (ui, None),
        };
        if !u.is_empty() {
            cfg.user = Some(percent_decode("user", u)?);
        }
        if let Some(p) = p {
            cfg.password = Some(percent_decode("password", p)?);
        }
    }
    if hostport.contains(',') {
        return Err(ConfigError::new("host", "multiple hosts are not supported"));
    }
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        let (h, after) = h
            .split_once(']')
            .ok_or_else(|| ConfigError::new("host", "unclosed [ in IPv6 address"))?;
        (h.to_owned(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (hostport.to_owned(), None),
        }
    };
    let host = percent_decode("host", &host)?;
    if !host.is_empty() {
        cfg.host = Some(host);
    }
    if let Some(p) = port {
        cfg.port = Some(parse_port("port", p)?);
    }
    if let Some(db) = path.filter(|p| !p.is_empty()) {
        cfg.dbname = Some(percent_decode("dbname", db)?);
    }
    if let Some(q) = query {
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = percent_decode(k, k)?;
            let v = percent_decode(&k, &v.replace('+', " "))?;
            cfg.set(&k, &v)?;
        }
    }
    if cfg.host.is_none() {
        return Err(ConfigError::new("host", "the URL has an empty host"));
    }
    Ok(cfg)
}

fn parse_key_values(s: &str) -> Result<Config, ConfigError> {
    let mut cfg = Config::default();
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
            return Err(ConfigError::new(key, "expected `key=value`"));
        }
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
        cfg.set(&key, &value)?;
    }
    Ok(cfg)
}

impl FromStr for Config {
    type Err = ConfigError;

    /// Parses a `postgresql://` (or `postgres://`) URL or a libpq key=value string.
    /// Only syntax is checked here; [`Config::validate`] (run when the pool is built)
    /// checks the rules.
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let s = s.trim();
        if s.starts_with("postgresql://") || s.starts_with("postgres://") {
            parse_url(s)
        } else if s.contains('=') {
            parse_key_values(s)
        } else {
            Err(ConfigError::new(
                "connection string",
                "expected a postgresql:// URL or key=value pairs",
            ))
        }
    }
}
