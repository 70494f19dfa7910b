//! The configuration from environment variables: libpq's `PG*`, Azure Service
//! Connector's `AZURE_POSTGRESQL_*` (its connection string read in `service_connector.rs`),
//! and `DATABASE_URL`.

use std::collections::HashMap;

use super::error::ConfigError;
use super::{Config, SslMode, conninfo, service_connector, values::parse_bool};

/// The single variables and the setting each fills, weakest first: libpq's `PG*`, then
/// Service Connector's `AZURE_POSTGRESQL_*` (a later one wins for the same setting). The
/// connection strings (`AZURE_POSTGRESQL_CONNECTIONSTRING`, then `DATABASE_URL`) are
/// read after them and win over them.
pub(crate) const VARIABLES: [(&str, &str); 21] = [
    ("PGHOST", "host"),
    ("PGHOSTADDR", "hostaddr"),
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
    ("PGTARGETSESSIONATTRS", "target_session_attrs"),
    ("PGLOADBALANCEHOSTS", "load_balance_hosts"),
    ("AZURE_POSTGRESQL_HOST", "host"),
    ("AZURE_POSTGRESQL_PORT", "port"),
    ("AZURE_POSTGRESQL_NAME", "dbname"),
    ("AZURE_POSTGRESQL_DATABASE", "dbname"),
    ("AZURE_POSTGRESQL_USER", "user"),
    ("AZURE_POSTGRESQL_USERNAME", "user"),
    ("AZURE_POSTGRESQL_PASSWORD", "password"),
];

/// The other variables [`Config::from_env_vars`] and the credential chain read, with what
/// each sets (the doctor says which were read): keep in step with the code below and
/// `token::chain`.
#[cfg(feature = "doctor")]
pub(crate) const OTHER_VARIABLES: [(&str, &str); 6] = [
    ("AZURE_POSTGRESQL_SSL", "TLS (true: require)"),
    ("AZURE_POSTGRESQL_SCOPE", "the token scope"),
    ("AZURE_AUTH_METHOD", "the authentication method"),
    (
        "AZURE_POSTGRESQL_TENANTID",
        "Service Connector's service principal (the credential chain)",
    ),
    (
        "AZURE_POSTGRESQL_CLIENTSECRET",
        "Service Connector's service principal (the credential chain)",
    ),
    (
        "AZURE_POSTGRESQL_CLIENTID",
        "a user-assigned managed identity, or with a secret the service principal",
    ),
];

/// The variable in which Service Connector puts a whole connection string.
pub(crate) const CONNECTION_STRING: &str = "AZURE_POSTGRESQL_CONNECTIONSTRING";

impl Config {
    /// Reads the process environment (see [`Config::from_env_vars`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_vars(std::env::vars())
    }

    /// Reads configuration from these variables. Precedence, each setting on its own:
    ///
    /// 1. `DATABASE_URL`: the app's own explicit choice.
    /// 2. `AZURE_POSTGRESQL_CONNECTIONSTRING`: a whole endpoint that Azure Service
    ///    Connector wrote for this app in one go.
    /// 3. the other `AZURE_POSTGRESQL_*`: Service Connector's one-setting variables.
    /// 4. libpq's `PG*`: ambient defaults, often left over in a shell.
    /// 5. the defaults.
    ///
    /// A connection string wins over single variables, as in libpq (`psql "host=x"`
    /// ignores `PGHOST`) and every tool that takes a URL; what it does not hold, the
    /// weaker sources fill. Service Connector writes either the connection string or the
    /// single variables for one connection (by client type), so 2 over 3 only decides
    /// between two connections, or a variable set by hand: the string, being complete,
    /// is the more deliberate. `DATABASE_URL` stays first because the app's operator
    /// sets it, over what a platform binding wrote.
    ///
    /// `AZURE_POSTGRESQL_CONNECTIONSTRING` is read in each form Service Connector writes:
    /// Npgsql's `Server=...;Database=...;Port=5432;Ssl Mode=Require;User Id=...;` (.NET),
    /// libpq's `host=... dbname=... sslmode=require user=...` (Python, Go, PHP, Ruby),
    /// `jdbc:postgresql://host:5432/db?sslmode=require&user=...` (Java), and a
    /// `postgresql://` URL. Its `require` (`Ssl Mode=Require`, `sslmode=require`) is
    /// Service Connector asking for TLS, read as `AZURE_POSTGRESQL_SSL=true` is: a
    /// stricter mode already set (the default verify-full, or `PGSSLMODE`) is kept.
    /// Npgsql's `Trust Server Certificate=true` is refused; its pool settings are an error
    /// pointing at this pool's.
    ///
    /// | setting | variables |
    /// | --- | --- |
    /// | all of the below | `DATABASE_URL`, `AZURE_POSTGRESQL_CONNECTIONSTRING` |
    /// | host | `AZURE_POSTGRESQL_HOST`, `PGHOST` |
    /// | address to connect to | `PGHOSTADDR` |
    /// | port | `AZURE_POSTGRESQL_PORT`, `PGPORT` |
    /// | database | `AZURE_POSTGRESQL_NAME`, `AZURE_POSTGRESQL_DATABASE`, `PGDATABASE` |
    /// | user | `AZURE_POSTGRESQL_USER`, `AZURE_POSTGRESQL_USERNAME`, `PGUSER` |
    /// | password | `AZURE_POSTGRESQL_PASSWORD`, `PGPASSWORD` |
    /// | TLS | `AZURE_POSTGRESQL_SSL` (`true` = require), `PGSSLMODE`, `PGSSLROOTCERT` |
    /// | channel binding | `PGCHANNELBINDING` |
    /// | several hosts | `PGTARGETSESSIONATTRS`, `PGLOADBALANCEHOSTS` |
    /// | other | `PGAPPNAME`, `PGCONNECT_TIMEOUT`, `PGOPTIONS` |
    /// | identity | `AZURE_POSTGRESQL_CLIENTID` (a user-assigned managed identity, unless `AZURE_POSTGRESQL_CLIENTSECRET` is set: then, with `AZURE_POSTGRESQL_TENANTID`, Service Connector's service principal, which the credential chain reads), `AZURE_AUTH_METHOD`, `AZURE_POSTGRESQL_SCOPE` |
    ///
    /// A variable set to the empty string counts as unset, as in libpq. An error in a
    /// connection string names its variable and never repeats a password.
    /// The result is validated (see [`Config::validate`]).
    ///
    /// ```
    /// let cfg = deadpool_entra::Config::from_env_vars([(
    ///     "AZURE_POSTGRESQL_CONNECTIONSTRING",
    ///     "Server=my-server.postgres.database.azure.com;Database=app;Port=5432;Ssl Mode=Require;User Id=aad_app;",
    /// )])
    /// .unwrap();
    /// assert_eq!(cfg.user.as_deref(), Some("aad_app"));
    /// ```
    pub fn from_env_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self, ConfigError>
    where
        K: Into<String>,
        V: Into<String>,
    {
        let env: HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        // As in libpq, a variable set to the empty string counts as unset.
        let get = |k: &str| env.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let mut cfg = Config::default();
        // PG*, then AZURE_POSTGRESQL_* (later wins), then the two connection strings below.
        for (var, key) in VARIABLES {
            if let Some(v) = get(var) {
                cfg.set(key, v).map_err(|e| ConfigError {
                    field: var.to_owned(),
                    reason: e.reason,
                })?;
            }
        }
        if let Some(v) = get("AZURE_POSTGRESQL_SSL") {
            let on = parse_bool("AZURE_POSTGRESQL_SSL", v)?;
            cfg.ssl_mode = if on {
                tls_asked(cfg.ssl_mode)
            } else {
                SslMode::Disable
            };
        }
        // With a secret beside it (Service Connector's service-principal variables), the
        // client id is the service principal's, which the credential chain reads; it does
        // not name a managed identity.
        if let Some(v) = get("AZURE_POSTGRESQL_CLIENTID").filter(|v| !v.trim().is_empty())
            && get("AZURE_POSTGRESQL_CLIENTSECRET").is_none()
        {
            cfg.client_id = Some(v.to_owned());
        }
        if let Some(v) = get("AZURE_POSTGRESQL_SCOPE").filter(|v| !v.trim().is_empty()) {
            cfg.scope = Some(v.to_owned());
        }
        if let Some(v) = get("AZURE_AUTH_METHOD") {
            cfg.auth_method = v.parse()?;
        }
        if let Some(s) = get(CONNECTION_STRING).filter(|s| !s.trim().is_empty()) {
            let wrap = |e: ConfigError| within(CONNECTION_STRING, &e);
            for (k, v) in service_connector::pairs(s).map_err(wrap)? {
                if k == "sslmode" && v.trim().eq_ignore_ascii_case("require") {
                    cfg.ssl_mode = tls_asked(cfg.ssl_mode);
                } else {
                    cfg.set(&k, &v).map_err(wrap)?;
                }
            }
        }
        if let Some(url) = get("DATABASE_URL").filter(|s| !s.trim().is_empty()) {
            let wrap = |e: ConfigError| within("DATABASE_URL", &e);
            for (k, v) in conninfo::pairs(url).map_err(wrap)? {
                cfg.set(&k, &v).map_err(wrap)?;
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Service Connector asking for TLS (`AZURE_POSTGRESQL_SSL=true`, `require` in its
/// connection string): require, unless the mode set so far already uses TLS, which is then
/// kept. Require and the default verify-full both check the host name here, so this only
/// keeps a mode the user chose (verify-ca with a private CA file) and turns a plaintext
/// one into TLS.
fn tls_asked(so_far: SslMode) -> SslMode {
    if so_far.uses_tls() {
        so_far
    } else {
        SslMode::Require
    }
}

/// The settings that the connection string `value` in `var` (`DATABASE_URL` or
/// `AZURE_POSTGRESQL_CONNECTIONSTRING`) fills, in the names of [`VARIABLES`] (none when it
/// does not parse: reading it fails with the error).
#[cfg(feature = "doctor")]
pub(crate) fn keys_set_by(var: &str, value: &str) -> Vec<String> {
    let pairs = if var == CONNECTION_STRING {
        service_connector::pairs(value)
    } else {
        conninfo::pairs(value)
    };
    pairs
        .map(|p| p.into_iter().map(|(k, _)| k).collect())
        .unwrap_or_default()
}

fn within(var: &str, e: &ConfigError) -> ConfigError {
    ConfigError {
        field: format!("{var}: {}", e.field),
        reason: e.reason.clone(),
    }
}
