//! # entra-emulator
//!
//! Microsoft Entra ID and Azure Database for PostgreSQL on loopback, offline, for tests, demos
//! and benchmarks:
//!
//! - a throwaway PostgreSQL cluster made with the machine's `initdb`/`postgres` (run as the
//!   unprivileged `postgres` user when the process is root);
//! - signed RS256 tokens with Azure's claims, from the App Service managed identity protocol
//!   (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`) and from a fake `az` command, so that the real
//!   `azure_identity` credentials work unchanged;
//! - an Azure-like PostgreSQL front on TLS that checks the password as a token (signature,
//!   expiry, audience, principal to role) with Azure's error texts, then passes the session
//!   through to the cluster;
//! - faults on demand, counters, and an admin HTTP API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), entra_emulator::Error> {
//! let emu = entra_emulator::Emulator::builder()
//!     .token_lifetime(std::time::Duration::from_secs(60))
//!     .start()
//!     .await?;
//! for (k, v) in emu.env() {
//!     println!("{k}={v}");
//! }
//! emu.faults().set_identity_latency(std::time::Duration::from_secs(1));
//! println!("{:?}", emu.counters());
//! emu.shutdown().await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod cluster;
mod front;
mod http;
mod issued;
mod pgwire;
mod rate_limit;
mod state;
mod token;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::task::JoinHandle;

pub use cluster::Cluster;
pub use front::{OSSRDBMS_RESOURCE, messages};
pub use issued::{AZURE_REFRESH_WINDOW, default_refresh_window};
pub use state::{Counters, FaultSettings, Faults};
pub use token::decode_claims;

use state::{Principal, PrincipalKind, Shared};

/// The tenant every token is issued in.
pub const TENANT_ID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// The subscription `az` reports and resource ids use.
pub const SUBSCRIPTION_ID: &str = "00000000-0000-4000-8000-00000000e117";
/// The resource group resource ids use.
pub const RESOURCE_GROUP: &str = "entra-emulator";
/// Name of the system-assigned identity when none is chosen.
pub const DEFAULT_IDENTITY: &str = "app-identity";
/// UPN of the user logged in for `az` when none is chosen.
pub const DEFAULT_USER: &str = "dev@contoso.example";
/// Database created when none is chosen.
pub const DEFAULT_DATABASE: &str = "app";
/// The scope to request for Azure Database for PostgreSQL.
pub const OSSRDBMS_SCOPE: &str = "https://ossrdbms-aad.database.windows.net/.default";

/// Text of `GET /` on the admin API and of `entra-emulator --help`.
pub const ADMIN_API_HELP: &str = "\
entra-emulator admin API (loopback, no authentication), base URL in $ENTRA_EMULATOR_ADMIN:
  GET    /counters            counters as JSON (tokens issued, logins accepted/refused by reason, sessions)
  GET    /faults              faults currently set, as JSON
  POST   /faults              set faults; JSON body, every field optional:
                              {\"identity_latency_ms\":1000, \"identity_error_status\":500 (0 clears),
                               \"identity_throttle_retry_after_secs\":5 (0 clears), \"identity_outage\":true,
                               \"cli_logged_out\":true, \"refuse_logins\":true, \"login_latency_ms\":200,
                               \"token_lifetime_secs\":30}
  POST   /faults/clear        clear every fault, restore the starting token lifetime
  POST   /kill-sessions       drop every open session (a failover); answers {\"killed\":N}
  POST   /token-lifetime      {\"seconds\":N}: lifetime of tokens issued from now on
  GET    /principals          registered identities, users and password roles
  POST   /principals          {\"kind\":\"identity\",\"name\":\"worker\",\"user_assigned\":true} |
                              {\"kind\":\"user\",\"name\":\"ann@contoso.example\"} |
                              {\"kind\":\"password_role\",\"name\":\"bench\",\"password\":\"secret\"}
                              (creates the role in the database, like pgaadauth_create_principal)
  DELETE /principals/NAME     unregister a principal: its later token logins are refused
  POST   /tokens              {\"principal\":\"app-identity\", \"resource\":..., \"lifetime_secs\":60, \"expired\":false}
                              mint a token directly (for psql: PGPASSWORD)
  GET    /env                 the environment the emulator prints, as JSON
";

/// Everything that can go wrong starting or driving the emulator. Never contains a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The PostgreSQL server binaries are not installed.
    #[error(
        "PostgreSQL server binaries (initdb, postgres, pg_ctl) not found via $ENTRA_EMULATOR_PG_BINDIR, \
         `pg_config --bindir`, /usr/lib/postgresql/*/bin or PATH: install the Debian package `postgresql` \
         (apt-get install postgresql)"
    )]
    MissingPostgres,
    /// Setting up a part of the emulator failed.
    #[error("entra-emulator setup failed: {0}")]
    Setup(String),
    /// An I/O error, with what was being done.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Making keys or certificates failed.
    #[error("key or certificate generation failed: {0}")]
    Crypto(String),
    /// A statement run in the cluster failed.
    #[error("SQL in the emulator's cluster failed ({code}): {message}")]
    Sql {
        /// SQLSTATE.
        code: String,
        /// Server message.
        message: String,
    },
    /// A principal name was invalid or already taken.
    #[error("invalid principal: {0}")]
    Principal(String),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// What to register as a managed identity.
#[derive(Clone, Debug, Default)]
pub struct IdentitySpec {
    /// Name of the identity, and of its PostgreSQL role.
    pub name: String,
    /// User-assigned (tokens carry `xms_mirid`) or system-assigned.
    pub user_assigned: bool,
    /// Client (application) id; generated when `None`.
    pub client_id: Option<String>,
    /// Object (principal) id; generated when `None`.
    pub object_id: Option<String>,
}

impl IdentitySpec {
    /// A user-assigned identity with generated ids.
    pub fn user_assigned(name: &str) -> Self {
        IdentitySpec {
            name: name.to_string(),
            user_assigned: true,
            client_id: None,
            object_id: None,
        }
    }
    /// A system-assigned identity with generated ids.
    pub fn system_assigned(name: &str) -> Self {
        IdentitySpec {
            name: name.to_string(),
            user_assigned: false,
            client_id: None,
            object_id: None,
        }
    }
}

/// A registered managed identity. Its PostgreSQL role is named after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedIdentity {
    /// Name, and PostgreSQL role.
    pub name: String,
    /// Client id (`appid` claim; `client_id` query parameter).
    pub client_id: String,
    /// Object id (`oid` claim; `object_id`/`principal_id` query parameter).
    pub object_id: String,
    /// Azure resource id (`xms_mirid` claim for user-assigned; `mi_res_id` query parameter).
    pub resource_id: String,
    /// User-assigned or system-assigned.
    pub user_assigned: bool,
}

/// Configures and starts an [`Emulator`].
#[derive(Clone, Debug)]
pub struct EmulatorBuilder {
    token_lifetime: Duration,
    default_identity: String,
    identities: Vec<IdentitySpec>,
    user: String,
    password_roles: Vec<(String, String)>,
    database: String,
    max_connections: u32,
    cluster_tls: bool,
    token_cache: bool,
    token_cache_window: Option<Duration>,
}

impl Default for EmulatorBuilder {
    fn default() -> Self {
        EmulatorBuilder {
            token_lifetime: Duration::from_secs(3600),
            default_identity: DEFAULT_IDENTITY.into(),
            identities: Vec::new(),
            user: DEFAULT_USER.into(),
            password_roles: Vec::new(),
            database: DEFAULT_DATABASE.into(),
            max_connections: 200,
            cluster_tls: true,
            token_cache: true,
            token_cache_window: None,
        }
    }
}

impl EmulatorBuilder {
    /// Lifetime of issued tokens (default 3600 s; seconds work).
    pub fn token_lifetime(mut self, d: Duration) -> Self {
        self.token_lifetime = d.max(Duration::from_secs(1));
        self
    }
    /// Whether the identity endpoints serve their cached token again while it has more than
    /// the refresh window left, as Azure's do (default `true`). `false` mints a token per
    /// call, which is kinder than Azure: a test that needs it should say why.
    pub fn token_cache(mut self, on: bool) -> Self {
        self.token_cache = on;
        self
    }
    /// The token cache's refresh window (default: five minutes, or a twelfth of the token's
    /// lifetime when that is under an hour). A cached token with less than this left is
    /// replaced by a new one.
    pub fn token_cache_window(mut self, window: Duration) -> Self {
        self.token_cache_window = Some(window);
        self
    }
    /// Name of the system-assigned identity that always exists (default `app-identity`).
    pub fn default_identity_name(mut self, name: &str) -> Self {
        self.default_identity = name.into();
        self
    }
    /// An extra managed identity (the system-assigned one always exists).
    pub fn identity(mut self, spec: IdentitySpec) -> Self {
        self.identities.push(spec);
        self
    }
    /// The user logged in for `az` (default `dev@contoso.example`).
    pub fn user(mut self, upn: &str) -> Self {
        self.user = upn.into();
        self
    }
    /// A role that logs in with a static password through the same front.
    pub fn password_role(mut self, role: &str, password: &str) -> Self {
        self.password_roles.push((role.into(), password.into()));
        self
    }
    /// The database to create (default `app`).
    pub fn database(mut self, name: &str) -> Self {
        self.database = name.into();
        self
    }
    /// The cluster's `max_connections` (default 200).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(10);
        self
    }
    /// Whether the cluster's own TCP port offers TLS with the emulator's certificate
    /// (default true; used for direct baselines).
    pub fn cluster_tls(mut self, on: bool) -> Self {
        self.cluster_tls = on;
        self
    }

    /// Start everything: cluster, principals, identity endpoints, front, admin API.
    pub async fn start(self) -> Result<Emulator, Error> {
        Emulator::start_with(self).await
    }
}

/// A cheap handle used by the admin API and the [`Emulator`] methods.
#[derive(Clone)]
pub(crate) struct Admin {
    shared: Arc<Shared>,
    socket_dir: PathBuf,
    port: u16,
    database: String,
    env: Arc<Vec<(String, String)>>,
}

impl Admin {
    async fn sql(&self, database: &str, sql: &str) -> Result<(), Error> {
        pgwire::simple_query(&self.socket_dir, self.port, "postgres", database, sql)
            .await
            .map(|_| ())
            .map_err(|(code, message)| Error::Sql { code, message })
    }

    async fn create_role(&self, role: &str, comment: &str) -> Result<(), Error> {
        check_name(role)?;
        let (r, db) = (pgwire::ident(role), pgwire::ident(&self.database));
        let sql = format!(
            "DO $emu$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = {lit}) THEN CREATE ROLE {r} LOGIN; END IF; END $emu$;
             GRANT ALL ON DATABASE {db} TO {r};
             GRANT ALL ON SCHEMA public TO {r};
             COMMENT ON ROLE {r} IS {c};",
            lit = pgwire::literal(role),
            c = pgwire::literal(comment),
        );
        self.sql(&self.database, &sql).await?;
        // PostgreSQL 14 and later: let every principal see every table, as tests expect.
        let _ = self
            .sql(
                &self.database,
                &format!("GRANT pg_read_all_data, pg_write_all_data TO {r}"),
            )
            .await;
        Ok(())
    }

    fn taken(&self, name: &str) -> bool {
        let reg = self
            .shared
            .registry
            .read()
            .unwrap_or_else(|e| e.into_inner());
        reg.principals.contains_key(name) || reg.passwords.contains_key(name)
    }

    async fn add_identity(&self, spec: IdentitySpec) -> Result<ManagedIdentity, Error> {
        if self.taken(&spec.name) {
            return Err(Error::Principal(format!(
                "{:?} is already registered",
                spec.name
            )));
        }
        let provider = if spec.user_assigned {
            format!(
                "Microsoft.ManagedIdentity/userAssignedIdentities/{}",
                spec.name
            )
        } else {
            format!("Microsoft.Web/sites/{}", spec.name)
        };
        let mi = ManagedIdentity {
            client_id: spec.client_id.unwrap_or_else(guid),
            object_id: spec.object_id.unwrap_or_else(guid),
            resource_id: format!(
                "/subscriptions/{SUBSCRIPTION_ID}/resourcegroups/{RESOURCE_GROUP}/providers/{provider}"
            ),
            user_assigned: spec.user_assigned,
            name: spec.name,
        };
        self.create_role(
            &mi.name,
            &format!("aadauth,oid={},type=service", mi.object_id),
        )
        .await?;
        let mut reg = self
            .shared
            .registry
            .write()
            .unwrap_or_else(|e| e.into_inner());
        reg.principals.insert(
            mi.name.clone(),
            Principal {
                kind: PrincipalKind::Identity(mi.clone()),
            },
        );
        Ok(mi)
    }

    async fn add_user(&self, upn: &str, object_id: Option<String>) -> Result<String, Error> {
        if self.taken(upn) {
            return Err(Error::Principal(format!("{upn:?} is already registered")));
        }
        let oid = object_id.unwrap_or_else(guid);
        self.create_role(upn, &format!("aadauth,oid={oid},type=user"))
            .await?;
        let mut reg = self
            .shared
            .registry
            .write()
            .unwrap_or_else(|e| e.into_inner());
        reg.principals.insert(
            upn.to_string(),
            Principal {
                kind: PrincipalKind::User {
                    upn: upn.to_string(),
                    object_id: oid.clone(),
                },
            },
        );
        Ok(oid)
    }

    async fn add_password_role(&self, role: &str, password: &str) -> Result<(), Error> {
        if self
            .shared
            .registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .principals
            .contains_key(role)
        {
            return Err(Error::Principal(format!(
                "{role:?} is an Entra principal's role"
            )));
        }
        self.create_role(role, "password").await?;
        let mut reg = self
            .shared
            .registry
            .write()
            .unwrap_or_else(|e| e.into_inner());
        reg.passwords.insert(role.to_string(), password.to_string());
        Ok(())
    }

    fn remove_principal(&self, name: &str) -> bool {
        let mut reg = self
            .shared
            .registry
            .write()
            .unwrap_or_else(|e| e.into_inner());
        reg.principals.remove(name).is_some() | reg.passwords.remove(name).is_some()
    }

    fn issue(&self, principal: &str, resource: &str, issued_at: u64, lifetime: Duration) -> String {
        let resource = resource.strip_suffix("/.default").unwrap_or(resource);
        let p = self
            .shared
            .registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .principals
            .get(principal)
            .cloned();
        let unknown_oid;
        let subject = match &p {
            Some(Principal {
                kind: PrincipalKind::Identity(mi),
            }) => token::Subject {
                object_id: &mi.object_id,
                app_id: &mi.client_id,
                upn: None,
                mi_resource_id: Some(mi.resource_id.as_str()),
            },
            Some(Principal {
                kind: PrincipalKind::User { upn, object_id },
            }) => token::Subject {
                object_id,
                app_id: token::AZURE_CLI_APP_ID,
                upn: Some(upn),
                mi_resource_id: None,
            },
            None => {
                // Not registered: a valid token for a principal the server does not know.
                unknown_oid = guid();
                token::Subject {
                    object_id: &unknown_oid,
                    app_id: token::AZURE_CLI_APP_ID,
                    upn: Some(principal),
                    mi_resource_id: None,
                }
            }
        };
        self.shared.signer.sign(&token::claims(
            &self.shared.tenant_id,
            resource,
            &subject,
            issued_at,
            lifetime,
            &self.shared.issued.next_uti(),
        ))
    }

    fn issue_token(&self, principal: &str, resource: &str, lifetime: Duration) -> String {
        self.issue(principal, resource, token::now_secs(), lifetime)
    }

    fn issue_expired_token(&self, principal: &str) -> String {
        // Issued two hours ago, expired an hour ago.
        self.issue(
            principal,
            OSSRDBMS_RESOURCE,
            token::now_secs().saturating_sub(7200),
            Duration::from_secs(3600),
        )
    }
}

fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > 63 || name.contains('\0') {
        return Err(Error::Principal(format!(
            "{name:?} is not a valid PostgreSQL role name (1 to 63 bytes)"
        )));
    }
    Ok(())
}

/// Everything running: cluster, identity endpoints, front and admin API.
///
/// Dropping it stops the cluster (`pg_ctl stop -m immediate`) and removes its temporary
/// directory, synchronously; [`Emulator::shutdown`] does the same without blocking the runtime.
pub struct Emulator {
    admin: Admin,
    faults: Faults,
    tasks: Vec<JoinHandle<()>>,
    runtime: Option<BgRuntime>,
    cluster: Option<Cluster>,
    tmp: Option<tempfile::TempDir>,
    root: PathBuf,
    ca_path: PathBuf,
    az_dir: PathBuf,
    front_port: u16,
    replica_port: u16,
    identity_port: u16,
    admin_port: u16,
    database: String,
    default_identity: ManagedIdentity,
    default_user: String,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator")
            .field("root", &self.root)
            .field("front_port", &self.front_port)
            .field("identity_port", &self.identity_port)
            .field("admin_port", &self.admin_port)
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

impl Emulator {
    /// A builder with the defaults.
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder::default()
    }

    /// Start with the defaults (= `Emulator::builder().start()`).
    pub async fn start() -> Result<Emulator, Error> {
        Self::builder().start().await
    }

    async fn start_with(b: EmulatorBuilder) -> Result<Emulator, Error> {
        check_name(&b.database)?;
        check_name(&b.default_identity)?;
        check_name(&b.user)?;
        let tmp = cluster::temp_dir("entra-emulator-")?;
        let root = tmp.path().to_path_buf();

        let t0 = std::time::Instant::now();
        // Certificates.
        let tls = make_tls(&root)?;

        // Keys and cluster in parallel: RSA generation takes a moment.
        let signer = tokio::task::spawn_blocking(token::Signer::new);
        let cluster = Cluster::start(
            &root,
            b.cluster_tls
                .then_some((tls.server_cert.as_path(), tls.server_key.as_path())),
            b.max_connections,
        )
        .await?;
        let signer = signer
            .await
            .map_err(|e| Error::Setup(format!("key task failed: {e}")))??;

        cluster
            .execute(
                "postgres",
                &format!("CREATE DATABASE {}", pgwire::ident(&b.database)),
            )
            .await?;

        tracing::debug!(elapsed = ?t0.elapsed(), "database created");
        let identity_header = random_hex(32);
        let shared = Arc::new(Shared::new(
            signer,
            identity_header.clone(),
            b.token_lifetime,
            b.default_identity.clone(),
            b.user.clone(),
            b.token_cache,
        ));
        shared.issued.set_window(b.token_cache_window);

        // The servers run on the emulator's own runtime (two threads), like an external server:
        // they do not compete with the caller's runtime (a current-thread test runtime, a load
        // generator) and are not stalled by blocking code there.
        let runtime = BgRuntime(Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("entra-emulator")
                .enable_all()
                .build()
                .map_err(|e| Error::io("cannot start the emulator's runtime", e))?,
        ));
        let bind = |what: &'static str| {
            let l = std::net::TcpListener::bind("127.0.0.1:0")
                .map_err(|e| Error::io(format!("cannot listen for the {what}"), e))?;
            l.set_nonblocking(true)
                .map_err(|e| Error::io(format!("cannot listen for the {what}"), e))?;
            Ok::<_, Error>(l)
        };
        let identity_listener = bind("identity endpoints")?;
        let admin_listener = bind("admin API")?;
        let front_listener = bind("PostgreSQL front")?;
        let replica_listener = bind("PostgreSQL read-replica front")?;
        let replica_port = port_of_early(&replica_listener);
        let port_of = port_of_early;
        let (identity_port, admin_port, front_port) = (
            port_of(&identity_listener),
            port_of(&admin_listener),
            port_of(&front_listener),
        );

        let az_dir = root.join("bin");
        write_az(&az_dir, identity_port)?;

        let mut emu = Emulator {
            admin: Admin {
                shared: shared.clone(),
                socket_dir: cluster.socket_dir().to_path_buf(),
                port: cluster.port(),
                database: b.database.clone(),
                env: Arc::new(Vec::new()),
            },
            faults: Faults {
                shared: shared.clone(),
            },
            tasks: Vec::new(),
            runtime: None,
            cluster: Some(cluster),
            tmp: Some(tmp),
            root,
            ca_path: tls.ca_cert,
            az_dir,
            front_port,
            replica_port,
            identity_port,
            admin_port,
            database: b.database.clone(),
            default_identity: ManagedIdentity {
                name: String::new(),
                client_id: String::new(),
                object_id: String::new(),
                resource_id: String::new(),
                user_assigned: false,
            },
            default_user: b.user.clone(),
        };
        // From here on, `emu`'s Drop cleans up if anything fails.
        emu.default_identity = emu
            .admin
            .add_identity(IdentitySpec::system_assigned(&b.default_identity))
            .await?;
        emu.admin.add_user(&b.user, None).await?;
        for spec in b.identities {
            emu.admin.add_identity(spec).await?;
        }
        for (role, pw) in &b.password_roles {
            emu.admin.add_password_role(role, pw).await?;
        }
        emu.admin.env = Arc::new(emu.env());
        tracing::debug!(elapsed = ?t0.elapsed(), "principals created");

        let tokio_listener = |l: std::net::TcpListener| {
            tokio::net::TcpListener::from_std(l)
                .expect("a non-blocking listener inside the runtime")
        };
        let id_task = runtime.handle().spawn({
            let shared = shared.clone();
            async move {
                let listener = http::OutageListener {
                    inner: tokio_listener(identity_listener),
                    shared: shared.clone(),
                };
                let router = http::identity_router(shared);
                let _ = axum::serve(listener, router).await;
            }
        });
        let admin_task = runtime.handle().spawn({
            let router = http::admin_router(emu.admin.clone());
            async move {
                let _ = axum::serve(tokio_listener(admin_listener), router).await;
            }
        });
        let backend_socket = emu
            .admin
            .socket_dir
            .join(format!(".s.PGSQL.{}", emu.admin.port));
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.server_config);
        let front = Arc::new(front::Front {
            shared: shared.clone(),
            acceptor: acceptor.clone(),
            backend_socket: backend_socket.clone(),
            read_only: false,
        });
        let replica = Arc::new(front::Front {
            shared: shared.clone(),
            acceptor,
            backend_socket,
            read_only: true,
        });
        // `localhost` may resolve to ::1 first: serve the same port there when IPv6 is up, so
        // that nothing else can answer on it and clients need no fallback.
        let front_v6 = std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, front_port))
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .ok();
        let mut tasks = vec![id_task, admin_task];
        if let Some(l) = front_v6 {
            let front = front.clone();
            tasks.push(
                runtime
                    .handle()
                    .spawn(async move { front::serve(tokio_listener(l), front).await }),
            );
        }
        tasks.push(
            runtime
                .handle()
                .spawn(async move { front::serve(tokio_listener(front_listener), front).await }),
        );
        tasks.push(
            runtime.handle().spawn(async move {
                front::serve(tokio_listener(replica_listener), replica).await
            }),
        );
        emu.runtime = Some(runtime);
        emu.tasks = tasks;
        tracing::info!(front_port, identity_port, admin_port, root = %emu.root.display(), "entra-emulator ready");
        Ok(emu)
    }

    /// Host name for the front: `localhost` (the certificate is also valid for 127.0.0.1).
    pub fn pg_host(&self) -> &str {
        "localhost"
    }
    /// Port of the Azure-like TLS front.
    pub fn pg_port(&self) -> u16 {
        self.front_port
    }
    /// Port of a second front on the same server that behaves as a read replica: the same
    /// checks, and every session read-only (`SHOW transaction_read_only` says `on`), so
    /// that `target_session_attrs=read-write` can be tested. IPv4 only (`127.0.0.1`).
    pub fn replica_pg_port(&self) -> u16 {
        self.replica_port
    }
    /// The database created at start (default `app`).
    pub fn database(&self) -> &str {
        &self.database
    }
    /// PEM file of the CA that signed the front's certificate.
    pub fn ca_cert_path(&self) -> &Path {
        &self.ca_path
    }
    /// The App Service managed identity endpoint (`http://127.0.0.1:P/msi/token`).
    pub fn identity_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/msi/token", self.identity_port)
    }
    /// The secret `X-IDENTITY-HEADER` value.
    pub fn identity_header(&self) -> &str {
        &self.admin.shared.identity_header
    }
    /// Directory holding the fake `az` executable.
    pub fn az_bin_dir(&self) -> &Path {
        &self.az_dir
    }
    /// Base URL of the admin API (`http://127.0.0.1:P`).
    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }
    /// The system-assigned managed identity registered at start.
    pub fn default_identity(&self) -> &ManagedIdentity {
        &self.default_identity
    }
    /// The user registered at start and logged in for `az`.
    pub fn default_user(&self) -> &str {
        &self.default_user
    }
    /// The emulator's temporary directory (cluster, certificates, `bin/az`).
    pub fn temp_dir(&self) -> &Path {
        &self.root
    }
    /// The tenant id tokens carry.
    pub fn tenant_id(&self) -> &str {
        TENANT_ID
    }

    /// The environment a program needs to use the emulator: `IDENTITY_ENDPOINT`,
    /// `IDENTITY_HEADER`, `AZURE_POSTGRESQL_{HOST,PORT,NAME,USER}` (user = the default
    /// identity), `PGHOST`, `PGPORT`, `PGDATABASE`, `PGUSER`, `PGSSLMODE=verify-full`,
    /// `PGSSLROOTCERT`, `PATH` (the `az` directory first, then this process's `PATH`),
    /// `ENTRA_EMULATOR_ADMIN`.
    pub fn env(&self) -> Vec<(String, String)> {
        let path = match std::env::var_os("PATH") {
            Some(p) if !p.is_empty() => {
                format!("{}:{}", self.az_dir.display(), p.to_string_lossy())
            }
            _ => format!("{}:/usr/local/bin:/usr/bin:/bin", self.az_dir.display()),
        };
        let port = self.front_port.to_string();
        let user = self.default_identity.name.clone();
        [
            ("IDENTITY_ENDPOINT", self.identity_endpoint()),
            ("IDENTITY_HEADER", self.identity_header().to_string()),
            ("AZURE_POSTGRESQL_HOST", self.pg_host().to_string()),
            ("AZURE_POSTGRESQL_PORT", port.clone()),
            ("AZURE_POSTGRESQL_NAME", self.database.clone()),
            ("AZURE_POSTGRESQL_USER", user.clone()),
            ("PGHOST", self.pg_host().to_string()),
            ("PGPORT", port),
            ("PGDATABASE", self.database.clone()),
            ("PGUSER", user),
            ("PGSSLMODE", "verify-full".to_string()),
            ("PGSSLROOTCERT", self.ca_path.display().to_string()),
            ("PATH", path),
            ("ENTRA_EMULATOR_ADMIN", self.admin_url()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// Faults on demand.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }
    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.admin.shared.snapshot()
    }
    /// The real PostgreSQL cluster behind the front.
    pub fn cluster(&self) -> &Cluster {
        self.cluster
            .as_ref()
            .expect("the cluster lives as long as the emulator")
    }

    /// Register a managed identity and create its role.
    pub async fn add_identity(&self, spec: IdentitySpec) -> Result<ManagedIdentity, Error> {
        self.admin.add_identity(spec).await
    }
    /// Register a user (UPN) and create its role.
    pub async fn add_user(&self, upn: &str) -> Result<(), Error> {
        self.admin.add_user(upn, None).await.map(|_| ())
    }
    /// Create a role that logs in through the front with a static password.
    pub async fn add_password_role(&self, role: &str, password: &str) -> Result<(), Error> {
        self.admin.add_password_role(role, password).await
    }
    /// Unregister a principal or password role: later logins as it are refused (its role stays
    /// in the cluster, open sessions stay open).
    pub async fn remove_principal(&self, name: &str) -> Result<(), Error> {
        if self.admin.remove_principal(name) {
            Ok(())
        } else {
            Err(Error::Principal(format!("{name:?} is not registered")))
        }
    }
    /// Mint a token for a registered principal (identity name or UPN) for `resource` (a scope's
    /// `/.default` is stripped). An unregistered name gets a valid token with a fresh object id.
    pub fn issue_token(&self, principal: &str, resource: &str, lifetime: Duration) -> String {
        self.admin.issue_token(principal, resource, lifetime)
    }
    /// A correctly signed database token for `principal` that expired an hour ago.
    pub fn issue_expired_token(&self, principal: &str) -> String {
        self.admin.issue_expired_token(principal)
    }

    /// Stop everything and clean up without blocking the runtime.
    pub async fn shutdown(mut self) {
        self.stop_servers();
        let cluster = self.cluster.take();
        let tmp = self.tmp.take();
        let _ = tokio::task::spawn_blocking(move || {
            drop(cluster);
            drop(tmp);
        })
        .await;
    }

    fn stop_servers(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        self.admin.shared.kill_all_sessions();
        // Drops every task, so every connection closes.
        self.runtime.take();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.stop_servers();
        if let Some(c) = self.cluster.take() {
            c.stop();
        }
        if let Some(t) = self.tmp.take() {
            let _ = t.close();
        }
    }
}

/// The emulator's own runtime; shut down without blocking, so it may be dropped anywhere
/// (also inside the caller's async code, where dropping a `Runtime` would panic).
struct BgRuntime(Option<tokio::runtime::Runtime>);

impl BgRuntime {
    fn handle(&self) -> &tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("runtime present until drop")
            .handle()
    }
}

impl Drop for BgRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

struct Tls {
    ca_cert: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    server_config: Arc<rustls::ServerConfig>,
}

fn make_tls(root: &Path) -> Result<Tls, Error> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        SanType,
    };
    let c = |e: rcgen::Error| Error::Crypto(e.to_string());
    let ca_key = KeyPair::generate().map_err(c)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(c)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "entra-emulator test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).map_err(c)?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().map_err(c)?;
    let mut sp = CertificateParams::new(Vec::<String>::new()).map_err(c)?;
    sp.distinguished_name.push(DnType::CommonName, "localhost");
    sp.subject_alt_names = vec![
        SanType::DnsName("localhost".try_into().map_err(c)?),
        SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])),
        SanType::IpAddress(std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
    ];
    sp.use_authority_key_identifier_extension = true;
    sp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    sp.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = sp.signed_by(&key, &issuer).map_err(c)?;

    let ca_path = root.join("ca.crt");
    let cert_path = root.join("server.crt");
    let key_path = root.join("server.key");
    let w = |p: &Path, s: String| {
        fs::write(p, s).map_err(|e| Error::io(format!("cannot write {}", p.display()), e))
    };
    w(&ca_path, ca_cert.pem())?;
    w(&cert_path, format!("{}{}", cert.pem(), ca_cert.pem()))?;
    w(&key_path, key.serialize_pem())?;
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("cannot chmod the key", e))?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Crypto(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), ca_cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .map_err(|e| Error::Crypto(e.to_string()))?;
    cfg.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(Tls {
        ca_cert: ca_path,
        server_cert: cert_path,
        server_key: key_path,
        server_config: Arc::new(cfg),
    })
}

/// The fake `az`: bash, talks HTTP/1.0 to the emulator over bash's /dev/tcp.
fn write_az(dir: &Path, port: u16) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|e| Error::io("cannot create the az directory", e))?;
    let script = AZ_SCRIPT.replace("@PORT@", &port.to_string());
    let p = dir.join("az");
    fs::write(&p, script).map_err(|e| Error::io("cannot write az", e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io("cannot chmod the az directory", e))?;
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io("cannot chmod az", e))
}

const AZ_SCRIPT: &str = r#"#!/usr/bin/env bash
# Fake Azure CLI written by entra-emulator: supports `az account get-access-token`
# (--scope/--scopes, --resource, --resource-type oss-rdbms, --tenant, --query accessToken -o tsv),
# `az account show`, and `az login` / `az logout` (which switch the logged-out fault). Talks to the emulator on 127.0.0.1:@PORT@.
set -u
if [ "${1:-}" = "--version" ] || [ "${1:-}" = "version" ]; then
  echo "azure-cli                         2.67.0 (entra-emulator)"; exit 0
fi
case "${1:-}" in
  login) path="/cli/login" ;;
  logout) path="/cli/logout" ;;
  account) path="" ;;
  *) echo "ERROR: entra-emulator's az only implements 'az account get-access-token', 'az account show', 'az login' and 'az logout'" >&2; exit 2 ;;
esac
if [ -n "$path" ]; then
  if ! exec 3<>"/dev/tcp/127.0.0.1/@PORT@"; then
    echo "ERROR: cannot reach entra-emulator on 127.0.0.1:@PORT@ (is it running?)" >&2; exit 1
  fi
  printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$path" >&3
  IFS= read -r status <&3 || exit 1
  while IFS= read -r line <&3; do line="${line%$'\r'}"; [ -z "$line" ] && break; done
  body=$(cat <&3)
  [ -n "$body" ] && printf '%s\n' "$body"
  exit 0
fi
sub="${2:-}"; shift 2 2>/dev/null || shift $#
scope=""; resource=""; tenant=""; query=""; output="json"
while [ $# -gt 0 ]; do
  case "$1" in
    --scope|--scopes) scope="${2:-}"; shift 2 || shift ;;
    --resource) resource="${2:-}"; shift 2 || shift ;;
    --resource-type)
      case "${2:-}" in
        oss-rdbms) resource="https://ossrdbms-aad.database.windows.net" ;;
        arm) resource="https://management.core.windows.net/" ;;
        ms-graph) resource="https://graph.microsoft.com/" ;;
        *) resource="${2:-}" ;;
      esac
      shift 2 || shift ;;
    --tenant|-t) tenant="${2:-}"; shift 2 || shift ;;
    --query) query="${2:-}"; shift 2 || shift ;;
    -o|--output) output="${2:-}"; shift 2 || shift ;;
    *) shift ;;
  esac
done
case "$sub" in
  get-access-token) path="/cli/token" ;;
  show) path="/cli/token"; scope="" ; resource="" ;;
  *) echo "ERROR: 'az account $sub' is not implemented by entra-emulator" >&2; exit 2 ;;
esac
if ! exec 3<>"/dev/tcp/127.0.0.1/@PORT@"; then
  echo "ERROR: cannot reach entra-emulator on 127.0.0.1:@PORT@ (is it running?)" >&2; exit 1
fi
printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nX-Az-Scope: %s\r\nX-Az-Resource: %s\r\nX-Az-Tenant: %s\r\n\r\n' \
  "$path" "$scope" "$resource" "$tenant" >&3
IFS= read -r status <&3 || { echo "ERROR: no answer from entra-emulator" >&2; exit 1; }
code=$(printf '%s' "$status" | cut -d' ' -f2)
while IFS= read -r line <&3; do
  line="${line%$'\r'}"
  [ -z "$line" ] && break
done
body=$(cat <&3)
exec 3<&-
if [ "$code" != "200" ]; then
  if [ -z "$body" ]; then body="ERROR: entra-emulator answered $code"; fi
  printf '%s\n' "$body" >&2
  exit 1
fi
if [ "$sub" = "show" ]; then
  tenant_id=$(printf '%s' "$body" | sed -n 's/.*"tenant":"\([^"]*\)".*/\1/p')
  subscription=$(printf '%s' "$body" | sed -n 's/.*"subscription":"\([^"]*\)".*/\1/p')
  printf '{"id":"%s","tenantId":"%s","name":"entra-emulator","state":"Enabled","isDefault":true}\n' "$subscription" "$tenant_id"
  exit 0
fi
if [ -n "$query" ]; then
  key="${query#[}"; key="${key%]}"
  value=$(printf '%s' "$body" | sed -n "s/.*\"$key\":\"\\{0,1\\}\\([^\",}]*\\).*/\\1/p")
  if [ "$output" = "tsv" ] || [ "$output" = "none" ]; then printf '%s\n' "$value"; else printf '"%s"\n' "$value"; fi
  exit 0
fi
printf '%s\n' "$body"
"#;

/// The port a listener is bound to (0 if it cannot say).
fn port_of_early(l: &std::net::TcpListener) -> u16 {
    l.local_addr().map(|a| a.port()).unwrap_or(0)
}

/// A random lowercase hex string of `n` characters.
pub(crate) fn random_hex(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| char::from_digit(rng.random_range(0..16u32), 16).unwrap_or('0'))
        .collect()
}

/// A random GUID-shaped string (version 4 layout).
pub(crate) fn guid() -> String {
    let h = random_hex(32);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// `expiresOn` as Azure CLI prints it ("YYYY-MM-DD HH:MM:SS.000000", UTC here).
pub(crate) fn local_time_string(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.000000",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}
