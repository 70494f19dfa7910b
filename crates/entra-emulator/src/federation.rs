//! Workload identity: federated credentials and the OIDC issuer's tokens (as AKS projects
//! them into `AZURE_FEDERATED_TOKEN_FILE`).

use std::path::PathBuf;
use std::time::Duration;

use crate::entra::token;
use crate::{
    emulator::Emulator, entra::apps::FEDERATION_AUDIENCE, entra::apps::FederatedCredential,
    entra::ids::random_hex, error::Error,
};

impl Emulator {
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
        self.federated_token_for(subject, FEDERATION_AUDIENCE, lifetime)
    }
    /// The same with another audience (a projected token configured for the wrong
    /// audience, which Entra refuses with `AADSTS700212`).
    pub fn federated_token_for(&self, subject: &str, audience: &str, lifetime: Duration) -> String {
        let now = token::now_secs();
        let shared = &self.admin.shared;
        shared.federation.sign(&serde_json::json!({
            "aud": [audience],
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
}
