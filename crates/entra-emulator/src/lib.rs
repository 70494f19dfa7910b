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

mod admin;
mod apps;
mod authority;
mod builder;
mod certs;
mod cluster;
mod error;
mod front;
mod http;
mod https;
mod identity;
mod ids;
mod issued;
mod pgwire;
mod rate_limit;
pub mod standin;
mod state;
mod token;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use admin::{Admin, check_name};
pub use apps::{FEDERATION_AUDIENCE, FederatedCredential, ServicePrincipal};
pub use builder::EmulatorBuilder;
use certs::make_tls;
pub use cluster::Cluster;
pub use error::Error;
pub use front::{OSSRDBMS_RESOURCE, messages};
pub use identity::{IdentitySpec, ManagedIdentity};
pub(crate) use ids::{guid, local_time_string, random_hex};
pub use issued::{AZURE_REFRESH_WINDOW, default_refresh_window};
pub use state::{Counters, FaultSettings, Faults};
pub use token::decode_claims;

use state::Shared;

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
                               \"token_lifetime_secs\":30, \"token_cache\":false, \"token_cache_window_ms\":500 (0: default),
                               \"mint_next\":true, \"refuse_issued_tokens\":true, \"identity_rate_limit_per_sec\":5 (0 clears)}
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
    authority_port: u16,
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

        // Keys and cluster in parallel: RSA generation takes a moment. Entra's key signs
        // access tokens; the OIDC issuer's key signs federated tokens (workload identity).
        let signer = tokio::task::spawn_blocking(|| {
            Ok::<_, Error>((token::Signer::new()?, token::Signer::new()?))
        });
        let cluster = Cluster::start(
            &root,
            b.cluster_tls
                .then_some((tls.server_cert.as_path(), tls.server_key.as_path())),
            b.max_connections,
        )
        .await?;
        let (signer, federation) = signer
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
            federation,
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
        let authority_listener = bind("Entra authority")?;
        let authority_port = port_of_early(&authority_listener);
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
        let cli_program = standin::resolve_program(b.cli_program.clone());
        standin::write_shims(&az_dir, cli_program.as_deref(), identity_port)?;

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
            authority_port,
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
        // The authority is `https://localhost:P`: served on ::1 too when IPv6 is up (as the
        // front is), so that nothing else answers there.
        let authority_v6 =
            std::net::TcpListener::bind((std::net::Ipv6Addr::LOCALHOST, authority_port))
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .ok();
        let https_acceptor = tokio_rustls::TlsAcceptor::from(tls.https_config.clone());
        let mut authority_tasks = Vec::new();
        for l in std::iter::once(authority_listener).chain(authority_v6) {
            let (shared, acceptor) = (shared.clone(), https_acceptor.clone());
            authority_tasks.push(runtime.handle().spawn(async move {
                let router = authority::router(shared.clone());
                https::serve(tokio_listener(l), acceptor, router, shared).await;
            }));
        }
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
        tasks.extend(authority_tasks);
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
    /// The Entra authority (`https://localhost:P`): `AZURE_AUTHORITY_HOST` for
    /// `ClientSecretCredential` and `WorkloadIdentityCredential`. Its certificate is
    /// signed by [`Emulator::ca_cert_path`]'s CA, which the credentials trust through
    /// `SSL_CERT_FILE` (see [`Emulator::service_principal_env`]).
    pub fn authority_host(&self) -> String {
        format!("https://localhost:{}", self.authority_port)
    }
    /// The OIDC issuer whose tokens federated credentials trust (as an AKS cluster's).
    pub fn oidc_issuer(&self) -> &str {
        &self.admin.shared.oidc_issuer
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
            // The read-replica front (same server; a second endpoint, as a replica is).
            (
                "ENTRA_EMULATOR_REPLICA_PORT",
                self.replica_pg_port().to_string(),
            ),
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
    /// Register an Entra group `name` with the principals named in `members` (users,
    /// identities, apps) and create its role, as `pgaadauth_create_principal` does for a
    /// group: each member logs in to the role `name` with its own token (Azure checks the
    /// membership at login). Returns the group's object id.
    pub async fn add_group(&self, name: &str, members: &[&str]) -> Result<String, Error> {
        self.admin.add_group(name, members).await
    }
    /// Register a service principal (an app registration with a generated client
    /// secret) and create its role, named `name`.
    pub async fn add_service_principal(&self, name: &str) -> Result<ServicePrincipal, Error> {
        self.admin.add_service_principal(name).await
    }
    /// Trust tokens from [`Emulator::oidc_issuer`] for `subject` as the app or
    /// user-assigned managed identity with this client id (a federated identity
    /// credential, as AKS workload identity sets up).
    pub fn add_federated_credential(
        &self,
        client_id: &str,
        subject: &str,
    ) -> Result<FederatedCredential, Error> {
        self.admin.add_federated_credential(client_id, subject)
    }
    /// A token of [`Emulator::oidc_issuer`] for `subject` (audience
    /// [`FEDERATION_AUDIENCE`]), as the Kubernetes service account token that AKS
    /// projects into `AZURE_FEDERATED_TOKEN_FILE`.
    pub fn federated_token(&self, subject: &str, lifetime: Duration) -> String {
        let now = token::now_secs();
        let shared = &self.admin.shared;
        shared.federation.sign(&serde_json::json!({
            "aud": [FEDERATION_AUDIENCE],
            "iss": shared.oidc_issuer,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now.saturating_add(lifetime.as_secs().max(1)),
            "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": subject.rsplit(':').next().unwrap_or(subject)}},
        }))
    }
    /// Writes [`Emulator::federated_token`] (valid for a day) to a file under the
    /// emulator's directory, for `AZURE_FEDERATED_TOKEN_FILE`; returns its path.
    pub fn write_federated_token_file(&self, subject: &str) -> Result<PathBuf, Error> {
        let path = self.root.join(format!("federated-token-{}", random_hex(8)));
        std::fs::write(
            &path,
            self.federated_token(subject, Duration::from_secs(86_400)),
        )
        .map_err(|e| Error::io("cannot write the federated token file", e))?;
        Ok(path)
    }
    /// The environment an application authenticating as `sp` gets: the database
    /// variables of [`Emulator::env`] without the managed identity's, the user set to
    /// `sp`'s role, and `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`,
    /// `AZURE_AUTHORITY_HOST` and `SSL_CERT_FILE` (the emulator's CA: the credentials'
    /// HTTP client trusts the roots that file holds, and only them).
    pub fn service_principal_env(&self, sp: &ServicePrincipal) -> Vec<(String, String)> {
        let mut env = self.entra_app_env(&sp.name, &sp.client_id);
        env.push(("AZURE_CLIENT_SECRET".into(), sp.secret.clone()));
        env
    }
    /// The environment of a workload that authenticates with workload identity as the
    /// app or user-assigned managed identity `name` (client id `client_id`): as
    /// [`Emulator::service_principal_env`], with `AZURE_FEDERATED_TOKEN_FILE` instead of
    /// a secret.
    pub fn workload_identity_env(
        &self,
        name: &str,
        client_id: &str,
        token_file: &Path,
    ) -> Vec<(String, String)> {
        let mut env = self.entra_app_env(name, client_id);
        env.push((
            "AZURE_FEDERATED_TOKEN_FILE".into(),
            token_file.display().to_string(),
        ));
        env
    }
    fn entra_app_env(&self, role: &str, client_id: &str) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .env()
            .into_iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "IDENTITY_ENDPOINT" | "IDENTITY_HEADER" | "PGUSER" | "AZURE_POSTGRESQL_USER"
                )
            })
            .collect();
        env.extend([
            ("PGUSER".into(), role.to_owned()),
            ("AZURE_POSTGRESQL_USER".into(), role.to_owned()),
            ("AZURE_TENANT_ID".into(), self.tenant_id().to_owned()),
            ("AZURE_CLIENT_ID".into(), client_id.to_owned()),
            ("AZURE_AUTHORITY_HOST".into(), self.authority_host()),
            ("SSL_CERT_FILE".into(), self.ca_path.display().to_string()),
        ]);
        env
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

/// The port a listener is bound to (0 if it cannot say).
fn port_of_early(l: &std::net::TcpListener) -> u16 {
    l.local_addr().map(|a| a.port()).unwrap_or(0)
}
