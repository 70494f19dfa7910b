//! The environment variables a program needs to use the emulator, per way of signing in.

use crate::{
    emulator::Emulator, entra::app_certs::ClientCertificate, entra::apps::ServicePrincipal,
};
use std::path::Path;

impl Emulator {
    /// The environment a program needs to use the emulator: `IDENTITY_ENDPOINT`,
    /// `IDENTITY_HEADER`, `AZURE_POSTGRESQL_{HOST,PORT,NAME,USER}` (user = the default
    /// identity), `PGHOST`, `PGPORT`, `PGDATABASE`, `PGUSER`, `PGSSLMODE=verify-full`,
    /// `PGSSLROOTCERT`, `PATH` (the `az` directory first, then this process's `PATH`),
    /// `ENTRA_EMULATOR_ADMIN`. The hosts are `localhost`, or the server's Azure name when
    /// built with [`crate::builder::EmulatorBuilder::azure_network`].
    pub fn env(&self) -> Vec<(String, String)> {
        let path = match std::env::var_os("PATH") {
            Some(p) if !p.is_empty() => {
                format!("{}:{}", self.az_dir.display(), p.to_string_lossy())
            }
            _ => format!("{}:/usr/local/bin:/usr/bin:/bin", self.az_dir.display()),
        };
        let port = self.front_port.to_string();
        let user = self.default_identity.name.clone();
        // With an Azure network, clients use the server's name, as on Azure.
        let host = self
            .server_host()
            .unwrap_or_else(|| self.pg_host().to_string());
        [
            ("IDENTITY_ENDPOINT", self.identity_endpoint()),
            ("IDENTITY_HEADER", self.identity_header().to_string()),
            ("AZURE_POSTGRESQL_HOST", host.clone()),
            ("AZURE_POSTGRESQL_PORT", port.clone()),
            ("AZURE_POSTGRESQL_NAME", self.database.clone()),
            ("AZURE_POSTGRESQL_USER", user.clone()),
            ("PGHOST", host),
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
    /// The environment an application authenticating as `sp` with the certificate `cert`
    /// gets: as [`Emulator::service_principal_env`], with `AZURE_CLIENT_CERTIFICATE_PATH`
    /// (a PEM file with the key and the certificate) instead of a secret.
    pub fn service_principal_certificate_env(
        &self,
        sp: &ServicePrincipal,
        cert: &ClientCertificate,
    ) -> Vec<(String, String)> {
        let mut env = self.entra_app_env(&sp.name, &sp.client_id);
        env.push((
            "AZURE_CLIENT_CERTIFICATE_PATH".into(),
            cert.path.display().to_string(),
        ));
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
}
