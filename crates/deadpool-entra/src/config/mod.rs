//! Configuration: a plain struct (serde), filled from the environment (`env.rs`, with
//! Service Connector's connection string in `service_connector.rs`), a connection string
//! (`conninfo.rs`) or the builder, and checked (`validate.rs`).

use std::{fmt, net::IpAddr, path::PathBuf, time::Duration};

use deadpool_postgres::{QueueMode, RecyclingMethod};

mod conninfo;
mod env;
mod error;
mod loopback;
mod modes;
mod pg;
mod service_connector;
mod tcp;
mod validate;
mod values;

#[cfg(feature = "doctor")]
pub(crate) use env::{CONNECTION_STRING, OTHER_VARIABLES, VARIABLES, keys_set_by};
pub use error::ConfigError;
pub use modes::{AuthMethod, ChannelBinding, LoadBalanceHosts, SslMode, TargetSessionAttrs};
pub(crate) use pg::{default_pool_name, endpoint_text, pg_config};
pub(crate) use validate::validate;
use values::{
    non_empty, parse_connect_timeout, parse_hostaddrs, parse_keepalives, parse_millis_opt,
    parse_ports, parse_secs_opt,
};

use entra_pg_token::retire::RetirePolicy;
use entra_pg_token::token::RefreshPolicy;

/// Everything needed to build a [`Pool`](crate::pool::Pool). Deserializable (feature `serde`; durations
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
    /// Server host name, IP address, or unix socket directory; several as a
    /// comma-separated list (`writer.example.com,reader.example.com`), tried in order
    /// (see `target_session_attrs`, `load_balance_hosts`). With TLS, each server's
    /// certificate is verified against its own name.
    pub host: Option<String>,
    /// The addresses to connect to instead of resolving `host` (libpq's `hostaddr`,
    /// `PGHOSTADDR`; one per host): the private-endpoint pattern. Certificates are still
    /// verified against `host`. `None` for a host whose name is resolved as usual
    /// (libpq's empty entry: `hostaddr=10.0.0.1,` for two hosts); empty: every name is.
    pub hostaddr: Vec<Option<IpAddr>>,
    /// Server port (default 5432), for every host.
    pub port: Option<u16>,
    /// One port per host, when a list was given (`port=5432,5433`); overrides `port`.
    pub ports: Vec<u16>,
    /// Which of several hosts to accept (libpq's `target_session_attrs`, default any).
    pub target_session_attrs: TargetSessionAttrs,
    /// The order in which several hosts are tried (libpq's `load_balance_hosts`).
    pub load_balance_hosts: LoadBalanceHosts,
    /// TCP keepalives (libpq's `keepalives`, default on).
    ///
    /// The TCP defaults below are chosen so that a session whose server vanished fails
    /// within seconds and an idle session survives Azure's 4-minute idle timeout; see
    /// docs/configuration.md. `Some(Duration::ZERO)` leaves the system's setting.
    pub keepalives: Option<bool>,
    /// Idle time before the first keepalive probe (`keepalives_idle`; default 30 s).
    #[cfg_attr(
        feature = "serde",
        serde(with = "entra_pg_token::serde_util::duration::option")
    )]
    pub keepalives_idle: Option<Duration>,
    /// Time between keepalive probes (`keepalives_interval`; default 5 s).
    #[cfg_attr(
        feature = "serde",
        serde(with = "entra_pg_token::serde_util::duration::option")
    )]
    pub keepalives_interval: Option<Duration>,
    /// Probes lost before the connection counts as dead (`keepalives_retries`; default
    /// 3, used by Linux only when `tcp_user_timeout` is off).
    pub keepalives_retries: Option<u32>,
    /// How long sent data may stay unacknowledged before the connection is dropped
    /// (`tcp_user_timeout`, in milliseconds in libpq strings as in libpq; Linux; default
    /// 5 s). A live server acknowledges at once however long its query runs, so this
    /// cuts only sessions whose peer is gone.
    #[cfg_attr(
        feature = "serde",
        serde(with = "entra_pg_token::serde_util::duration::option")
    )]
    pub tcp_user_timeout: Option<Duration>,
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
    /// Token scope (default: the scope of the Azure cloud the host name names, else
    /// [`entra_pg_token::cloud::DEFAULT_SCOPE`]).
    pub scope: Option<String>,
    /// TLS mode (default verify-full).
    pub ssl_mode: SslMode,
    /// CA file in PEM (`sslrootcert`), or `system` for the platform store.
    pub ssl_root_cert: Option<PathBuf>,
    /// Channel binding (default prefer).
    pub channel_binding: ChannelBinding,
    /// `application_name` (default `deadpool-entra`; a `sqlx-entra` pool's is `sqlx-entra`).
    pub application_name: Option<String>,
    /// TCP connect timeout (default 2 s; the TCP handshake only, as in tokio-postgres;
    /// `Some(Duration::ZERO)`: no limit).
    #[cfg_attr(
        feature = "serde",
        serde(with = "entra_pg_token::serde_util::duration::option")
    )]
    pub connect_timeout: Option<Duration>,
    /// Server `options` (e.g. `-c search_path=app`).
    pub options: Option<String>,
    /// Allow plaintext on loopback hosts only (test servers). Loudly named on purpose.
    pub dangerous_allow_plaintext_on_loopback: bool,
    /// Maximum number of connections (default: deadpool's, 2 × the logical CPUs, raised
    /// to `min_connections` when that is larger).
    pub max_size: Option<usize>,
    /// Connections the pool keeps open, idle or in use (default 0: none before the
    /// first checkout). `build()` returns with this many logged in, and the background
    /// logs in replacements when connections break or retire, so that a burst after a
    /// quiet period does not wait for logins. sqlx calls it `min_connections`, pgx
    /// `MinConns`, psycopg_pool `min_size`; HikariCP's `minimumIdle` counts idle ones.
    pub min_connections: usize,
    /// The pool's name in metrics (`db.client.connection.pool.name`, feature `metrics`;
    /// default: `host:port/database`, the database being `dbname`, else `user`; several
    /// hosts are joined with commas). Set it when two pools would otherwise share one,
    /// e.g. two roles on one database: pools with one name write the same series.
    pub pool_name: Option<String>,
    /// How long `get()` waits for a free slot (default 30 s).
    #[cfg_attr(
        feature = "serde",
        serde(with = "entra_pg_token::serde_util::duration::option")
    )]
    pub wait_timeout: Option<Duration>,
    /// How long creating a connection may take, token included (default 10 s).
    #[cfg_attr(
        feature = "serde",
        serde(with = "entra_pg_token::serde_util::duration::option")
    )]
    pub create_timeout: Option<Duration>,
    /// How long recycling a connection may take (default 5 s), for the recycling methods
    /// that talk to the server (`Verified`, `Clean`, `Custom`). With `Fast` (the default),
    /// recycling does no I/O and no timer is set.
    #[cfg_attr(
        feature = "serde",
        serde(with = "entra_pg_token::serde_util::duration::option")
    )]
    pub recycle_timeout: Option<Duration>,
    /// How a connection is checked when it is reused (default Fast).
    pub recycling_method: RecyclingMethod,
    /// Which idle connection `get()` takes (default Fifo).
    pub queue_mode: QueueMode,
    /// Retirement policy.
    pub retire: RetirePolicy,
    /// Token refresh policy.
    pub refresh: RefreshPolicy,
    /// Do not fetch the first token when the pool is built.
    pub lazy: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: None,
            hostaddr: Vec::new(),
            port: None,
            ports: Vec::new(),
            target_session_attrs: TargetSessionAttrs::Any,
            load_balance_hosts: LoadBalanceHosts::Disable,
            keepalives: None,
            keepalives_idle: None,
            keepalives_interval: None,
            keepalives_retries: None,
            tcp_user_timeout: None,
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
            min_connections: 0,
            pool_name: None,
            wait_timeout: Some(Duration::from_secs(30)),
            create_timeout: Some(Duration::from_secs(10)),
            recycle_timeout: Some(Duration::from_secs(5)),
            recycling_method: RecyclingMethod::Fast,
            queue_mode: QueueMode::Fifo,
            retire: RetirePolicy::default(),
            refresh: RefreshPolicy::default(),
            lazy: false,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("host", &self.host)
            .field("hostaddr", &self.hostaddr)
            .field("port", &self.port)
            .field("ports", &self.ports)
            .field("target_session_attrs", &self.target_session_attrs)
            .field("load_balance_hosts", &self.load_balance_hosts)
            .field("keepalives", &self.keepalives)
            .field("keepalives_idle", &self.keepalives_idle)
            .field("keepalives_interval", &self.keepalives_interval)
            .field("keepalives_retries", &self.keepalives_retries)
            .field("tcp_user_timeout", &self.tcp_user_timeout)
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
            .field("min_connections", &self.min_connections)
            .field("pool_name", &self.pool_name)
            .field("wait_timeout", &self.wait_timeout)
            .field("create_timeout", &self.create_timeout)
            .field("recycle_timeout", &self.recycle_timeout)
            .field("recycling_method", &self.recycling_method)
            .field("queue_mode", &self.queue_mode)
            .field("retire", &self.retire)
            .field("refresh", &self.refresh)
            .field("lazy", &self.lazy)
            .finish()
    }
}

impl Config {
    /// The pool's name in metrics: `pool_name`, else `host:port/database` (the database
    /// being `dbname`, else `user`).
    pub fn metrics_pool_name(&self) -> String {
        self.pool_name
            .clone()
            .unwrap_or_else(|| default_pool_name(self))
    }

    /// A default configuration (verify-full, auth `auto`, no host yet).
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one libpq-style setting: `host`, `hostaddr`, `port` (each a
    /// comma-separated list for several hosts), `dbname`, `user`, `password`, `sslmode`,
    /// `sslrootcert`, `channel_binding`, `application_name`, `connect_timeout`, `options`,
    /// `target_session_attrs`, `load_balance_hosts`, `keepalives`, `keepalives_idle`,
    /// `keepalives_interval`, `keepalives_retries`, `tcp_user_timeout`, and ours:
    /// `client_id`, `scope`, `auth_method`. Unknown keys are an error naming the key. As
    /// in libpq, an empty value is not set, and an empty entry in a `hostaddr` list
    /// leaves that host to its name.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        match key {
            // As in libpq, an empty value means "not set".
            "host" => self.host = non_empty(value),
            "hostaddr" => self.hostaddr = parse_hostaddrs(value)?,
            "port" => {
                let ports = parse_ports("port", value)?;
                self.port = ports.first().copied();
                self.ports = if ports.len() > 1 { ports } else { Vec::new() };
            }
            "target_session_attrs" => self.target_session_attrs = value.parse()?,
            "load_balance_hosts" => self.load_balance_hosts = value.parse()?,
            "keepalives" => self.keepalives = parse_keepalives(key, value)?,
            "keepalives_idle" => self.keepalives_idle = parse_secs_opt(key, value)?,
            "keepalives_interval" => self.keepalives_interval = parse_secs_opt(key, value)?,
            // libpq's name, and tokio-postgres'.
            "keepalives_count" | "keepalives_retries" => {
                self.keepalives_retries = Some(
                    value
                        .trim()
                        .parse()
                        .map_err(|_| ConfigError::new(key, "expected a whole number of probes"))?,
                )
            }
            "tcp_user_timeout" => self.tcp_user_timeout = parse_millis_opt(key, value)?,
            "dbname" | "database" => self.dbname = non_empty(value),
            "user" => self.user = non_empty(value),
            "password" => self.password = (!value.is_empty()).then(|| value.to_owned()),
            "sslmode" => self.ssl_mode = value.parse()?,
            "sslrootcert" => self.ssl_root_cert = non_empty(value).map(PathBuf::from),
            "channel_binding" => self.channel_binding = value.parse()?,
            "application_name" => self.application_name = non_empty(value),
            "connect_timeout" => {
                self.connect_timeout = parse_connect_timeout("connect_timeout", value)?
            }
            "options" => self.options = non_empty(value),
            "client_id" | "azure_client_id" => self.client_id = non_empty(value),
            "scope" => self.scope = non_empty(value),
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

    /// The hosts, as the comma-separated `host` lists them (trimmed; one empty entry when
    /// no host is set). The one place the list is split.
    pub fn host_list(&self) -> Vec<&str> {
        self.host
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .collect()
    }

    /// The first host (several hosts are one server's replicas: the scope is read from the
    /// first), `""` when none is set.
    pub fn first_host(&self) -> &str {
        self.host_list().first().copied().unwrap_or_default()
    }

    /// The port of the `i`-th host: its own from `ports`, else `port`, else 5432.
    pub fn port_of(&self, i: usize) -> u16 {
        self.ports.get(i).copied().or(self.port).unwrap_or(5432)
    }

    /// Checks the rules that do not depend on the token: a host, a valid port, TLS for
    /// anything that sends a secret (unless the loopback opt-out applies), no
    /// `channel_binding=require` with tokens, a password in password mode.
    pub fn validate(&self) -> Result<(), ConfigError> {
        validate(self, self.uses_password())
    }
}
