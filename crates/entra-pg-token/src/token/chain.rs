//! The credential chain: the documented order of Azure credentials (environment service
//! principal, workload identity, managed identity, `az`, `azd`), which links exist, where
//! it stops, and the error that names every link's failure.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
};

use azure_core::credentials::TokenCredential;
use azure_identity::UserAssignedId;

use super::{
    source::{BoxFuture, Token, TokenSource, TokenSourceError},
    sources::{CredentialFactory, fetch_from, fetch_from_new_instance},
};

struct Link {
    name: &'static str,
    /// The instance in use (or why the link is unavailable).
    credential: Result<Mutex<Arc<dyn TokenCredential>>, String>,
    /// Makes a new instance, for a token that bypasses the instance's cache.
    make: Box<CredentialFactory>,
    /// The environment names this identity (a service principal, a workload identity):
    /// when it fails, the chain stops instead of using another identity.
    configured: bool,
}

impl Link {
    fn new(
        name: &'static str,
        make: impl Fn() -> Result<Arc<dyn TokenCredential>, String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name,
            credential: make().map(Mutex::new),
            make: Box::new(make),
            configured: false,
        }
    }

    /// A link for the identity the environment configures (see [`Link::configured`]).
    fn configured(
        name: &'static str,
        make: impl Fn() -> Result<Arc<dyn TokenCredential>, String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            configured: true,
            ..Self::new(name, make)
        }
    }

    fn current(&self) -> Result<Arc<dyn TokenCredential>, &str> {
        match &self.credential {
            Ok(m) => Ok(crate::sync::lock(m).clone()),
            Err(reason) => Err(reason),
        }
    }
}

fn unavailable(reason: &'static str) -> impl Fn() -> Result<Arc<dyn TokenCredential>, String> {
    move || Err(reason.to_owned())
}

/// The credential chain of the Azure guides, assembled from `azure_identity` 1.x:
///
/// 1. environment service principal (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and
///    `AZURE_CLIENT_SECRET`, or `AZURE_CLIENT_CERTIFICATE_PATH` with the
///    `client-certificate` feature),
/// 2. workload identity (`AZURE_FEDERATED_TOKEN_FILE`),
/// 3. managed identity (system-assigned, or user-assigned by client id, object id or
///    resource id) where the environment shows one (`IDENTITY_ENDPOINT`, `MSI_ENDPOINT`,
///    `IMDS_ENDPOINT`) or an identity is named,
/// 4. Azure CLI,
/// 5. Azure Developer CLI.
///
/// The first link that yields a token is remembered and used from then on. A link that
/// is not configured, or cannot answer (no identity endpoint, `az` not signed in), passes
/// to the next; when the service principal or workload identity that the environment
/// configures fails (Entra refuses it, its certificate cannot be read, the authority does
/// not answer), the chain stops there, as `DefaultAzureCredential` does in Azure's other
/// SDKs, rather than log in as another identity. When no link works, the error lists
/// every failure.
pub struct ChainSource {
    links: Vec<Link>,
    chosen: OnceLock<usize>,
    /// 1 + the index of the link being asked while none is chosen yet (0: none), so that a
    /// fetch cut off by `fetch_timeout` names the link that did not answer.
    trying: AtomicUsize,
}

impl fmt::Debug for ChainSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let links: Vec<_> = self
            .links
            .iter()
            .map(|l| (l.name, l.credential.is_ok()))
            .collect();
        f.debug_struct("ChainSource")
            .field("links_available", &links)
            .field("chosen", &self.chosen.get().map(|i| self.links[*i].name))
            .finish()
    }
}

impl ChainSource {
    /// The chain, configured from the process environment. A user-assigned managed
    /// identity is taken from `AZURE_POSTGRESQL_CLIENTID`, else `AZURE_CLIENT_ID`.
    pub fn from_env() -> Self {
        Self::from_env_vars(std::env::vars(), None)
    }

    /// The chain for an explicit user-assigned managed identity (`None`:
    /// system-assigned unless the environment names a client id).
    pub fn with_managed_identity(id: Option<UserAssignedId>) -> Self {
        Self::from_env_vars(std::env::vars(), id)
    }

    /// The chain, deciding which links exist from `vars` (the credentials themselves may
    /// still read the process environment, as `azure_identity` does).
    pub fn from_env_vars(
        vars: impl IntoIterator<Item = (String, String)>,
        managed_identity: Option<UserAssignedId>,
    ) -> Self {
        let env: HashMap<String, String> =
            vars.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        let get = |k: &str| env.get(k).cloned();
        let mut links = Vec::new();

        // 1. Environment service principal: Azure Service Connector's variables for its
        // service-principal auth type, else the Azure SDKs' own.
        let service_connector = (
            get("AZURE_POSTGRESQL_TENANTID"),
            get("AZURE_POSTGRESQL_CLIENTID"),
            get("AZURE_POSTGRESQL_CLIENTSECRET"),
        );
        let service_connector_sp = service_connector.2.is_some();
        match (
            get("AZURE_TENANT_ID"),
            get("AZURE_CLIENT_ID"),
            get("AZURE_CLIENT_SECRET"),
            get("AZURE_CLIENT_CERTIFICATE_PATH"),
        ) {
            _ if service_connector_sp => {
                let (tenant, client, secret) = service_connector;
                let secret = secret.map(super::secret::Secret::new);
                links.push(Link::configured("EnvironmentCredential", move || {
                    match (&tenant, &client, &secret) {
                        (Some(tenant), Some(client), Some(secret)) => {
                            azure_identity::ClientSecretCredential::new(
                                tenant,
                                client.clone(),
                                secret.expose().to_owned().into(),
                                None,
                            )
                            .map(|c| c as Arc<dyn TokenCredential>)
                            .map_err(|e| e.to_string())
                        }
                        _ => Err("AZURE_POSTGRESQL_CLIENTSECRET is set, but AZURE_POSTGRESQL_TENANTID or AZURE_POSTGRESQL_CLIENTID is not (Service Connector sets all three for a service principal)".to_owned()),
                    }
                }));
            }
            (Some(tenant), Some(client), Some(secret), _) => {
                let secret = super::secret::Secret::new(secret);
                links.push(Link::configured("EnvironmentCredential", move || {
                    azure_identity::ClientSecretCredential::new(
                        &tenant,
                        client.clone(),
                        secret.expose().to_owned().into(),
                        None,
                    )
                    .map(|c| c as Arc<dyn TokenCredential>)
                    .map_err(|e| e.to_string())
                }));
            }
            (Some(tenant), Some(client), None, Some(path)) => {
                let password = get("AZURE_CLIENT_CERTIFICATE_PASSWORD").map(super::secret::Secret::new);
                links.push(Link::configured("EnvironmentCredential", move || {
                    super::certificate::certificate_credential(
                        tenant.clone(),
                        client.clone(),
                        path.clone(),
                        password.as_ref().map(|p| p.expose().to_owned()),
                    )
                }));
            }
            _ => links.push(Link::new(
                "EnvironmentCredential",
                unavailable("AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH) are not all set"),
            )),
        }

        // 2. Workload identity.
        if get("AZURE_FEDERATED_TOKEN_FILE").is_some() {
            links.push(Link::configured("WorkloadIdentityCredential", || {
                azure_identity::WorkloadIdentityCredential::new(None)
                    .map(|c| c as Arc<dyn TokenCredential>)
                    .map_err(|e| e.to_string())
            }));
        } else {
            links.push(Link::new(
                "WorkloadIdentityCredential",
                unavailable("AZURE_FEDERATED_TOKEN_FILE is not set"),
            ));
        }

        // 3. Managed identity.
        let id = managed_identity.or_else(|| {
            get("AZURE_POSTGRESQL_CLIENTID")
                // The service principal's client id (see link 1), not a managed identity's.
                .filter(|_| !service_connector_sp)
                .or_else(|| {
                    // AZURE_CLIENT_ID names a managed identity only when it is not part of
                    // a service principal or workload identity configuration.
                    if get("AZURE_TENANT_ID").is_none() {
                        get("AZURE_CLIENT_ID")
                    } else {
                        None
                    }
                })
                .map(UserAssignedId::ClientId)
        });
        // Only where the environment shows a managed identity (App Service, Functions,
        // Container Apps, Arc) or one is named explicitly: probing the VM metadata
        // endpoint on a developer machine only adds a timeout before the CLI is tried.
        // On a VM, `AZURE_AUTH_METHOD=managed_identity` selects IMDS.
        let mi_shown = ["IDENTITY_ENDPOINT", "MSI_ENDPOINT", "IMDS_ENDPOINT"]
            .iter()
            .any(|k| get(k).is_some());
        if id.is_some() && mi_shown {
            // A named identity where the environment shows a managed identity (App
            // Service, Functions, Container Apps): the chain stops at any failure of it,
            // so that a developer tool's principal never stands in for it. Where none is
            // shown (a developer machine with a client id left in its environment, or a
            // VM, where `AZURE_AUTH_METHOD=managed_identity` selects IMDS alone), the link
            // is an ordinary one, as in Azure's other SDKs, where an identity endpoint
            // that cannot be reached makes the credential unavailable.
            links.push(Link::configured("ManagedIdentityCredential", move || {
                managed_identity_credential(id.clone())
            }));
        } else if mi_shown || id.is_some() {
            links.push(Link::new("ManagedIdentityCredential", move || {
                managed_identity_credential(id.clone())
            }));
        } else {
            links.push(Link::new(
                "ManagedIdentityCredential",
                unavailable("no managed identity in this environment (IDENTITY_ENDPOINT, MSI_ENDPOINT and AZURE_POSTGRESQL_CLIENTID unset); on an Azure VM set AZURE_AUTH_METHOD=managed_identity"),
            ));
        }

        // 4. and 5. Developer tools.
        links.push(Link::new("AzureCliCredential", || {
            azure_identity::AzureCliCredential::new(None)
                .map(|c| c as Arc<dyn TokenCredential>)
                .map_err(|e| e.to_string())
        }));
        links.push(Link::new("AzureDeveloperCliCredential", || {
            azure_identity::AzureDeveloperCliCredential::new(None)
                .map(|c| c as Arc<dyn TokenCredential>)
                .map_err(|e| e.to_string())
        }));
        Self {
            links,
            chosen: OnceLock::new(),
            trying: AtomicUsize::new(0),
        }
    }

    /// A chain of only the managed identity link (`AZURE_AUTH_METHOD=managed_identity`).
    pub fn managed_identity_only(id: Option<UserAssignedId>) -> Self {
        Self {
            links: vec![Link::new("ManagedIdentityCredential", move || {
                managed_identity_credential(id.clone())
            })],
            chosen: OnceLock::new(),
            trying: AtomicUsize::new(0),
        }
    }

    /// The names of the links, in order.
    pub fn link_names(&self) -> Vec<&'static str> {
        self.links.iter().map(|l| l.name).collect()
    }
}

fn managed_identity_credential(
    id: Option<UserAssignedId>,
) -> Result<Arc<dyn TokenCredential>, String> {
    azure_identity::ManagedIdentityCredential::new(Some(
        azure_identity::ManagedIdentityCredentialOptions {
            user_assigned_id: id,
            ..Default::default()
        },
    ))
    .map(|c| c as Arc<dyn TokenCredential>)
    .map_err(|e| e.to_string())
}

/// Entra's codes for a failure of its own, not of the identity: the service is
/// unavailable (90033), a request budget or the tenant's throttling (90024, 90055), a
/// loop detected (50196), a token issuance problem (50000).
const ENTRA_TRANSIENT: [&str; 5] = [
    "AADSTS90033:",
    "AADSTS90024:",
    "AADSTS90055:",
    "AADSTS50196:",
    "AADSTS50000:",
];

/// The hint when the managed identity that the configuration names fails.
const MANAGED_IDENTITY_REFUSED: &str = "check that the user-assigned managed identity that AZURE_POSTGRESQL_CLIENTID, AZURE_CLIENT_ID or the client_id setting names is assigned to this resource (the identity endpoint does not know it otherwise); the fetch is retried with this identity, and no other identity is used in its place (unset the client id to use the rest of the chain)";

/// Entra refused the identity (an `AADSTS` error that is not one of its transient ones).
/// When the environment configures that identity, the chain stops at any failure of it,
/// as `DefaultAzureCredential` does in Azure's other SDKs (they go on only past
/// credentials that are unavailable), so that no other identity, a managed identity or a
/// developer's `az login`, is used in its place with another principal's rights; this
/// only decides what the error says.
fn refused_by_entra(message: &str) -> bool {
    message.contains("AADSTS") && !ENTRA_TRANSIENT.iter().any(|code| message.contains(code))
}

/// What one link of the chain did in a walk down it (the doctor's evidence).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkTrace {
    /// The credential's name (`ManagedIdentityCredential`, ...).
    pub name: &'static str,
    /// How it ended.
    pub outcome: LinkOutcome,
}

/// How one link of the chain ended in a walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkOutcome {
    /// Not configured here, or cannot answer; the chain went on (or, for the identity the
    /// environment configures, stopped).
    Unavailable(String),
    /// Asked, and failed with this error.
    Failed(String),
    /// Asked, and gave the token.
    Answered,
    /// Not asked: an earlier link answered or stopped the chain.
    NotTried,
}

impl ChainSource {
    /// Asks the links in order, as a first fetch does, and says what each one did. The
    /// link that answers is remembered, as by `fetch`.
    pub async fn walk(&self, scope: &str) -> (Result<Token, TokenSourceError>, Vec<LinkTrace>) {
        let mut trace = Vec::with_capacity(self.links.len());
        let result = self.walk_traced(scope, &mut trace).await;
        for link in &self.links[trace.len()..] {
            trace.push(LinkTrace {
                name: link.name,
                outcome: LinkOutcome::NotTried,
            });
        }
        (result, trace)
    }

    async fn walk_traced(
        &self,
        scope: &str,
        trace: &mut Vec<LinkTrace>,
    ) -> Result<Token, TokenSourceError> {
        let mut note = |name: &'static str, outcome: LinkOutcome| {
            trace.push(LinkTrace { name, outcome });
        };
        {
            let mut failures = Vec::new();
            let mut hint = None;
            let mut retry_after = None;
            // The configured identity that failed, and whether Entra refused it.
            let mut stopped: Option<bool> = None;
            let mut stopped_at = "";
            for (i, link) in self.links.iter().enumerate() {
                let c = match link.current() {
                    Err(reason) if link.configured => {
                        failures.push(format!("{}: cannot be used: {reason}", link.name));
                        note(link.name, LinkOutcome::Unavailable(reason.to_owned()));
                        stopped = Some(false);
                        stopped_at = link.name;
                        break;
                    }
                    Err(reason) => {
                        failures.push(format!("{}: unavailable: {reason}", link.name));
                        note(link.name, LinkOutcome::Unavailable(reason.to_owned()));
                        continue;
                    }
                    Ok(c) => c,
                };
                self.trying.store(i + 1, Ordering::Relaxed);
                match fetch_from(&*c, scope, link.name).await {
                    Ok(t) => {
                        self.trying.store(0, Ordering::Relaxed);
                        let _ = self.chosen.set(i);
                        note(link.name, LinkOutcome::Answered);
                        tracing::debug!(target: "deadpool_entra", link = link.name, "credential chain link selected");
                        return Ok(t);
                    }
                    Err(e) => {
                        failures.push(format!("{}: {}", link.name, e.message));
                        note(link.name, LinkOutcome::Failed(e.message.clone()));
                        if link.configured {
                            stopped = Some(refused_by_entra(&e.message));
                            stopped_at = link.name;
                        }
                        if hint.is_none() {
                            hint = e.hint;
                        }
                        retry_after = retry_after.or(e.retry_after);
                        if stopped.is_some() {
                            break;
                        }
                    }
                }
            }
            self.trying.store(0, Ordering::Relaxed);
            let mut err = TokenSourceError::new(format!(
                "no credential in the chain produced a token: {}{}",
                failures.join("; "),
                match stopped {
                    Some(true) =>
                        "; the chain stops at an identity that Entra refused and tries no other in its place",
                    Some(false) =>
                        "; the chain stops at the identity the environment configures and tries no other in its place",
                    None => "",
                }
            ));
            let managed = stopped_at == "ManagedIdentityCredential";
            err.hint = Some(match stopped {
                Some(true) if managed => MANAGED_IDENTITY_REFUSED.into(),
                Some(true) => "fix the service principal or workload identity that AZURE_CLIENT_ID and its secret, certificate or token file configure, or unset them to use the next credential".into(),
                Some(false) if managed && hint.is_none() => MANAGED_IDENTITY_REFUSED.into(),
                Some(false) => format!(
                    "{}; the fetch is retried with this identity (unset its variables to use the next credential instead)",
                    hint.unwrap_or_else(|| "check the identity the environment configures".into())
                ),
                None => hint.unwrap_or_else(|| "configure one of them: a managed identity on Azure, or `az login` on a developer machine".into()),
            });
            err.retry_after = retry_after;
            Err(err)
        }
    }
}

impl TokenSource for ChainSource {
    fn fetch<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<Token, TokenSourceError>> {
        Box::pin(async move {
            if let Some(&i) = self.chosen.get() {
                let link = &self.links[i];
                if let Ok(c) = link.current() {
                    return fetch_from(&*c, scope, link.name).await;
                }
            }
            self.walk(scope).await.0
        })
    }

    /// The chosen link asked through a new instance of its credential (empty in-process
    /// cache), which is kept when it answers; before a link is chosen, the same as `fetch`.
    fn fetch_fresh<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<Token, TokenSourceError>> {
        Box::pin(async move {
            if let Some(&i) = self.chosen.get() {
                let link = &self.links[i];
                if let Ok(slot) = &link.credential {
                    return fetch_from_new_instance(&*link.make, slot, scope, link.name).await;
                }
            }
            self.fetch(scope).await
        })
    }

    fn name(&self) -> String {
        match (self.chosen.get(), self.trying.load(Ordering::Relaxed)) {
            (Some(&i), _) => self.links[i].name.to_owned(),
            (None, 0) => "ChainSource".to_owned(),
            (None, n) => format!("ChainSource (at {})", self.links[n - 1].name),
        }
    }
}

#[cfg(test)]
#[path = "chain_tests.rs"]
mod tests;
