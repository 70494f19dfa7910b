//! The running emulator's handle: its addresses, paths, principals, faults and counters,
//! and its shutdown.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::{
    admin::Admin,
    entra::{
        app_certs::ClientCertificate,
        apps::ServicePrincipal,
        identity::{IdentitySpec, ManagedIdentity},
    },
    error::Error,
    names::TENANT_ID,
    network::Network,
    postgres::cluster::Cluster,
    runtime::BgRuntime,
    state::{Counters, Faults},
};

/// Everything running: cluster, identity endpoints, front and admin API.
///
/// Dropping it stops the cluster (`pg_ctl stop -m immediate`) and removes its temporary
/// directory, synchronously; [`Emulator::shutdown`] does the same without blocking the runtime.
pub struct Emulator {
    pub(crate) admin: Admin,
    pub(crate) faults: Faults,
    pub(crate) tasks: Vec<JoinHandle<()>>,
    pub(crate) runtime: Option<BgRuntime>,
    pub(crate) cluster: Option<Cluster>,
    pub(crate) tmp: Option<tempfile::TempDir>,
    pub(crate) root: PathBuf,
    pub(crate) ca_path: PathBuf,
    pub(crate) az_dir: PathBuf,
    pub(crate) front_port: u16,
    pub(crate) replica_port: u16,
    pub(crate) network: Option<Network>,
    pub(crate) identity_port: u16,
    pub(crate) authority_port: u16,
    pub(crate) admin_port: u16,
    pub(crate) database: String,
    pub(crate) default_identity: ManagedIdentity,
    pub(crate) default_user: String,
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
    /// The emulated Azure network (its names, nodes and faults), when built with
    /// [`EmulatorBuilder::azure_network`].
    pub fn network(&self) -> Option<&Network> {
        self.network.as_ref()
    }
    /// The server's Azure name in the public cloud (`NAME.postgres.database.azure.com`),
    /// when built with [`EmulatorBuilder::azure_network`]. It resolves (through the
    /// namespace's private `/etc/hosts`) to the node [`Network::current`] says, on
    /// [`Emulator::pg_port`]; the front's certificate is valid for it.
    pub fn server_host(&self) -> Option<String> {
        self.network.as_ref().map(|n| n.server_host().to_string())
    }
    /// The server's Azure names in the public cloud, Azure China and Azure US Government
    /// (see [`AZURE_DOMAINS`]); empty without [`EmulatorBuilder::azure_network`].
    pub fn server_hosts(&self) -> Vec<String> {
        self.network
            .as_ref()
            .map(|n| n.server_hosts().to_vec())
            .unwrap_or_default()
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
    /// Directory holding the `az` and `azd` shims (see [`standin`]): put it first on
    /// `PATH` for `AzureCliCredential` and `AzureDeveloperCliCredential`.
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
    /// Make a certificate for the service principal `sp` and register it on its app, as
    /// uploading one under "Certificates & secrets" does: `sp` can then get tokens with
    /// client assertions signed by its key (`ClientCertificateCredential`,
    /// `AZURE_CLIENT_CERTIFICATE_PATH`). The key and certificate are written to one PEM
    /// file in the emulator's directory.
    pub fn add_client_certificate(
        &self,
        sp: &ServicePrincipal,
    ) -> Result<ClientCertificate, Error> {
        let (cert, registered) =
            crate::entra::app_certs::generate(&sp.name, &sp.client_id, &self.root)?;
        if let Err(e) = self.admin.register_certificate(registered) {
            let _ = std::fs::remove_file(&cert.path);
            return Err(e);
        }
        Ok(cert)
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
