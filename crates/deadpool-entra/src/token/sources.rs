//! Token sources: any Azure credential, the documented credential chain, a static
//! password, a closure.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use azure_core::credentials::TokenCredential;
pub use azure_identity::UserAssignedId;

use super::{BoxFuture, Token, TokenSource, TokenSourceError};

/// Makes a new credential instance (with an empty in-process token cache).
pub type CredentialFactory =
    dyn Fn() -> Result<Arc<dyn TokenCredential>, String> + Send + Sync + 'static;

/// Any `azure_core` [`TokenCredential`] as a token source.
///
/// Built with [`CredentialSource::from_factory`], it can bypass the credential's own token
/// cache after the server refused a token: it makes a new instance and asks that one
/// (`azure_identity`'s credentials serve their cached token until 5 minutes before it
/// expires).
#[derive(Clone)]
pub struct CredentialSource {
    credential: Arc<Mutex<Arc<dyn TokenCredential>>>,
    factory: Option<Arc<CredentialFactory>>,
    name: String,
}

impl CredentialSource {
    /// Wraps a credential; its name is taken from its type.
    pub fn new(credential: Arc<dyn TokenCredential>) -> Self {
        let name = type_name_of(&*credential);
        Self {
            credential: Arc::new(Mutex::new(credential)),
            factory: None,
            name,
        }
    }

    /// Wraps a credential under an explicit name.
    pub fn with_name(credential: Arc<dyn TokenCredential>, name: impl Into<String>) -> Self {
        Self {
            credential: Arc::new(Mutex::new(credential)),
            factory: None,
            name: name.into(),
        }
    }

    /// A source that makes its credential with `factory`, and makes a new instance when
    /// it needs a token that bypasses the instance's cache (after a refused login).
    ///
    /// ```no_run
    /// use deadpool_entra::CredentialSource;
    /// use std::sync::Arc;
    /// let source = CredentialSource::from_factory("ManagedIdentityCredential", || {
    ///     azure_identity::ManagedIdentityCredential::new(None)
    ///         .map(|c| c as Arc<dyn azure_core::credentials::TokenCredential>)
    ///         .map_err(|e| e.to_string())
    /// })?;
    /// # Ok::<(), deadpool_entra::TokenSourceError>(())
    /// ```
    pub fn from_factory<F>(name: impl Into<String>, factory: F) -> Result<Self, TokenSourceError>
    where
        F: Fn() -> Result<Arc<dyn TokenCredential>, String> + Send + Sync + 'static,
    {
        let name = name.into();
        let credential =
            factory().map_err(|e| TokenSourceError::new(format!("cannot create {name}: {e}")))?;
        Ok(Self {
            credential: Arc::new(Mutex::new(credential)),
            factory: Some(Arc::new(factory)),
            name,
        })
    }

    fn current(&self) -> Arc<dyn TokenCredential> {
        self.credential
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Asks a new instance from `factory` and, when it answers, keeps it: its cache holds the
/// new token, which the old instance's does not.
async fn fetch_from_new_instance(
    factory: &CredentialFactory,
    slot: &Mutex<Arc<dyn TokenCredential>>,
    scope: &str,
    name: &str,
) -> Result<Token, TokenSourceError> {
    let fresh =
        factory().map_err(|e| TokenSourceError::new(format!("cannot create {name}: {e}")))?;
    let token = fetch_from(&*fresh, scope, name).await?;
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = fresh;
    Ok(token)
}

/// The credential's type name from its `Debug` output, cut before any field so that no
/// field value (which could be sensitive) is ever kept.
fn type_name_of(c: &dyn TokenCredential) -> String {
    let dbg = format!("{c:?}");
    let head = dbg.split([' ', '{', '(']).next().unwrap_or("");
    let last = head.rsplit("::").next().unwrap_or("").trim();
    if last.is_empty() || !last.chars().all(|c| c.is_alphanumeric() || c == '_') {
        "TokenCredential".to_owned()
    } else {
        last.to_owned()
    }
}

impl fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CredentialSource")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

pub(crate) fn map_azure_error(e: &azure_core::Error, name: &str) -> TokenSourceError {
    let message = e.to_string();
    let mut err = TokenSourceError::new(message.clone());
    err.retry_after = retry_after_of(e, 0);
    let lower = message.to_ascii_lowercase();
    if lower.contains("azd auth login") || name.contains("DeveloperCli") {
        err.hint = Some("run `azd auth login`".into());
    } else if lower.contains("az login") || name.contains("AzureCli") {
        err.hint = Some("run `az login` (and check that `az` is on PATH)".into());
    } else if name.contains("ManagedIdentity") {
        err.hint = Some("check IDENTITY_ENDPOINT/IDENTITY_HEADER (App Service, Container Apps) or that the VM has a managed identity assigned; for a user-assigned identity set AZURE_POSTGRESQL_CLIENTID".into());
    } else if name.contains("WorkloadIdentity") {
        err.hint = Some("check AZURE_FEDERATED_TOKEN_FILE, AZURE_CLIENT_ID and AZURE_TENANT_ID (workload identity webhook)".into());
    } else if name.contains("ClientSecret") || name.contains("ClientCertificate") {
        err.hint = Some("check AZURE_TENANT_ID, AZURE_CLIENT_ID and the secret or certificate of the service principal".into());
    }
    err
}

/// A `Retry-After` (seconds) or `retry-after-ms` header on the HTTP response behind the
/// error; credentials wrap the HTTP error in a credential error, so look inside too.
fn retry_after_of(e: &azure_core::Error, depth: usize) -> Option<Duration> {
    use azure_core::http::headers::HeaderName;
    if let azure_core::error::ErrorKind::HttpResponse {
        raw_response: Some(raw),
        ..
    } = e.kind()
    {
        let h = raw.headers();
        if let Some(ms) = h
            .get_optional_str(&HeaderName::from_static("retry-after-ms"))
            .or_else(|| h.get_optional_str(&HeaderName::from_static("x-ms-retry-after-ms")))
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            return Some(Duration::from_millis(ms));
        }
        if let Some(secs) = h
            .get_optional_str(&HeaderName::from_static("retry-after"))
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            return Some(Duration::from_secs(secs));
        }
    }
    if depth >= 4 {
        return None;
    }
    let inner = e.get_ref()?.downcast_ref::<azure_core::Error>()?;
    retry_after_of(inner, depth + 1)
}

fn to_system_time(t: azure_core::time::OffsetDateTime) -> SystemTime {
    let secs = t.unix_timestamp();
    if secs <= 0 {
        return UNIX_EPOCH;
    }
    UNIX_EPOCH + Duration::new(secs as u64, t.nanosecond())
}

async fn fetch_from(
    credential: &dyn TokenCredential,
    scope: &str,
    name: &str,
) -> Result<Token, TokenSourceError> {
    match credential.get_token(&[scope], None).await {
        Ok(t) => Ok(Token::new(t.token.secret(), to_system_time(t.expires_on))),
        Err(e) => Err(map_azure_error(&e, name)),
    }
}

impl TokenSource for CredentialSource {
    fn fetch<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<Token, TokenSourceError>> {
        Box::pin(async move { fetch_from(&*self.current(), scope, &self.name).await })
    }
    fn fetch_fresh<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<Token, TokenSourceError>> {
        Box::pin(async move {
            match &self.factory {
                Some(f) => fetch_from_new_instance(&**f, &self.credential, scope, &self.name).await,
                None => fetch_from(&*self.current(), scope, &self.name).await,
            }
        })
    }
    fn name(&self) -> String {
        self.name.clone()
    }
}

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
            Ok(m) => Ok(m.lock().unwrap_or_else(|p| p.into_inner()).clone()),
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
        if id.is_some() {
            // A named identity is configured: the chain stops at any failure of it, so
            // that a developer tool's principal never stands in for it.
            links.push(Link::configured("ManagedIdentityCredential", move || {
                managed_identity_credential(id.clone())
            }));
        } else if mi_shown {
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

impl TokenSource for ChainSource {
    fn fetch<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<Token, TokenSourceError>> {
        Box::pin(async move {
            if let Some(&i) = self.chosen.get() {
                let link = &self.links[i];
                if let Ok(c) = link.current() {
                    return fetch_from(&*c, scope, link.name).await;
                }
            }
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
                        stopped = Some(false);
                        stopped_at = link.name;
                        break;
                    }
                    Err(reason) => {
                        failures.push(format!("{}: unavailable: {reason}", link.name));
                        continue;
                    }
                    Ok(c) => c,
                };
                self.trying.store(i + 1, Ordering::Relaxed);
                match fetch_from(&*c, scope, link.name).await {
                    Ok(t) => {
                        let _ = self.chosen.set(i);
                        tracing::debug!(target: "deadpool_entra", link = link.name, "credential chain link selected");
                        return Ok(t);
                    }
                    Err(e) => {
                        failures.push(format!("{}: {}", link.name, e.message));
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

/// A static password (local development, migration): never expires, never refreshed.
#[derive(Clone)]
pub struct StaticPassword {
    /// Zeroed when the source and the last token made from it are dropped; every token
    /// it yields shares it, so no plain copy is made per login.
    password: Arc<super::secret::Secret>,
}

impl StaticPassword {
    /// A source that always yields `password`.
    pub fn new(password: impl Into<String>) -> Self {
        Self {
            password: Arc::new(super::secret::Secret::new(password.into())),
        }
    }
}

impl fmt::Debug for StaticPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StaticPassword(<redacted>)")
    }
}

impl TokenSource for StaticPassword {
    fn fetch<'a>(&'a self, _scope: &'a str) -> BoxFuture<'a, Result<Token, TokenSourceError>> {
        let t = Token {
            secret: self.password.clone(),
            expiry: super::Expiry::Never,
        };
        Box::pin(async move { Ok(t) })
    }
    fn name(&self) -> String {
        "StaticPassword".to_owned()
    }
    fn is_password(&self) -> bool {
        true
    }
}

type FetchFn = dyn Fn(String) -> BoxFuture<'static, Result<Token, TokenSourceError>> + Send + Sync;

/// A closure as a token source.
///
/// ```
/// use deadpool_entra::{FnSource, Token};
/// use std::time::Duration;
/// let source = FnSource::new("my-source", |_scope: String| async {
///     Ok(Token::expiring_in("t", Duration::from_secs(60)))
/// });
/// ```
pub struct FnSource {
    name: String,
    f: Box<FetchFn>,
}

impl FnSource {
    /// A source named `name` calling `f(scope)` for each fetch.
    pub fn new<F, Fut>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Token, TokenSourceError>> + Send + 'static,
    {
        Self {
            name: name.into(),
            f: Box::new(move |scope| Box::pin(f(scope))),
        }
    }
}

impl fmt::Debug for FnSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnSource")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TokenSource for FnSource {
    fn fetch<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<Token, TokenSourceError>> {
        (self.f)(scope.to_owned())
    }
    fn name(&self) -> String {
        self.name.clone()
    }
}

#[cfg(test)]
#[path = "sources_tests.rs"]
mod tests;
