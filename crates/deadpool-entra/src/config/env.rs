//! The configuration from environment variables: libpq's `PG*`, Azure Service
//! Connector's `AZURE_POSTGRESQL_*`, and `DATABASE_URL`.

use std::collections::HashMap;

use super::{Config, SslMode, conninfo, values::parse_bool};
use crate::ConfigError;

impl Config {
    /// Reads the process environment (see [`Config::from_env_vars`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_vars(std::env::vars())
    }

    /// Reads configuration from these variables. Precedence: `DATABASE_URL` (an explicit
    /// connection string: each setting it holds wins) over `AZURE_POSTGRESQL_*` (what
    /// Azure Service Connector sets for this app) over libpq's `PG*` (ambient defaults)
    /// over the defaults. libpq itself lets a connection string's settings win over `PG*`,
    /// and so does every tool that takes a URL.
    ///
    /// | setting | variables |
    /// | --- | --- |
    /// | host | `AZURE_POSTGRESQL_HOST`, `PGHOST` |
    /// | address to connect to | `PGHOSTADDR` |
    /// | port | `AZURE_POSTGRESQL_PORT`, `PGPORT` |
    /// | database | `AZURE_POSTGRESQL_NAME`, `PGDATABASE` |
    /// | user | `AZURE_POSTGRESQL_USER`, `PGUSER` |
    /// | password | `AZURE_POSTGRESQL_PASSWORD`, `PGPASSWORD` |
    /// | TLS | `AZURE_POSTGRESQL_SSL` (`true` = require), `PGSSLMODE`, `PGSSLROOTCERT` |
    /// | channel binding | `PGCHANNELBINDING` |
    /// | several hosts | `PGTARGETSESSIONATTRS`, `PGLOADBALANCEHOSTS` |
    /// | other | `PGAPPNAME`, `PGCONNECT_TIMEOUT`, `PGOPTIONS` |
    /// | identity | `AZURE_POSTGRESQL_CLIENTID`, `AZURE_AUTH_METHOD`, `AZURE_POSTGRESQL_SCOPE` |
    ///
    /// A variable set to the empty string counts as unset, as in libpq.
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
        // As in libpq, a variable set to the empty string counts as unset.
        let get = |k: &str| env.get(k).map(String::as_str).filter(|v| !v.is_empty());
        let mut cfg = Config::default();
        // PG*, then AZURE_POSTGRESQL_* (later wins), then DATABASE_URL below.
        for (var, key) in [
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
        if let Some(url) = get("DATABASE_URL").filter(|s| !s.trim().is_empty()) {
            for (k, v) in conninfo::pairs(url).map_err(|e| in_database_url(&e))? {
                cfg.set(&k, &v).map_err(|e| in_database_url(&e))?;
            }
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

fn in_database_url(e: &ConfigError) -> ConfigError {
    ConfigError {
        field: format!("DATABASE_URL: {}", e.field),
        reason: e.reason.clone(),
    }
}
