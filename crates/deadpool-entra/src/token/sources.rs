//! Token sources: any Azure credential, the documented credential chain, a static
//! password, a closure.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use azure_core::credentials::TokenCredential;
pub use azure_identity::UserAssignedId;

use super::{BoxFuture, Token, TokenSource, TokenSourceError};

/// Any `azure_core` [`TokenCredential`] as a token source.
#[derive(Clone)]
pub struct CredentialSource {
    credential: Arc<dyn TokenCredential>,
    name: String,
}

impl CredentialSource {
    /// Wraps a credential; its name is taken from its type.
    pub fn new(credential: Arc<dyn TokenCredential>) -> Self {
        let name = type_name_of(&*credential);
        Self { credential, name }
    }

    /// Wraps a credential under an explicit name.
    pub fn with_name(credential: Arc<dyn TokenCredential>, name: impl Into<String>) -> Self {
        Self {
            credential,
            name: name.into(),
        }
    }
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
        Box::pin(fetch_from(&*self.credential, scope, &self.name))
    }
    fn name(&self) -> String {
        self.name.clone()
    }
}

struct Link {
    name: &'static str,
    credential: Result<Arc<dyn TokenCredential>, String>,
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
/// The first link that yields a token is remembered and used from then on. When none
/// works, the error lists every link's failure.
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

        // 1. Environment service principal.
        let env_link = match (
            get("AZURE_TENANT_ID"),
            get("AZURE_CLIENT_ID"),
            get("AZURE_CLIENT_SECRET"),
            get("AZURE_CLIENT_CERTIFICATE_PATH"),
        ) {
            (Some(tenant), Some(client), Some(secret), _) => {
                azure_identity::ClientSecretCredential::new(&tenant, client, secret.into(), None)
                    .map(|c| c as Arc<dyn TokenCredential>)
                    .map_err(|e| e.to_string())
            }
            (Some(tenant), Some(client), None, Some(path)) => {
                certificate_credential(tenant, client, path, get("AZURE_CLIENT_CERTIFICATE_PASSWORD"))
            }
            _ => Err("AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH) are not all set".into()),
        };
        links.push(Link {
            name: "EnvironmentCredential",
            credential: env_link,
        });

        // 2. Workload identity.
        let wi = if get("AZURE_FEDERATED_TOKEN_FILE").is_some() {
            azure_identity::WorkloadIdentityCredential::new(None)
                .map(|c| c as Arc<dyn TokenCredential>)
                .map_err(|e| e.to_string())
        } else {
            Err("AZURE_FEDERATED_TOKEN_FILE is not set".into())
        };
        links.push(Link {
            name: "WorkloadIdentityCredential",
            credential: wi,
        });

        // 3. Managed identity.
        let id = managed_identity.or_else(|| {
            get("AZURE_POSTGRESQL_CLIENTID")
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
        let mi = if mi_shown || id.is_some() {
            azure_identity::ManagedIdentityCredential::new(Some(
                azure_identity::ManagedIdentityCredentialOptions {
                    user_assigned_id: id,
                    ..Default::default()
                },
            ))
            .map(|c| c as Arc<dyn TokenCredential>)
            .map_err(|e| e.to_string())
        } else {
            Err("no managed identity in this environment (IDENTITY_ENDPOINT, MSI_ENDPOINT and AZURE_POSTGRESQL_CLIENTID unset); on an Azure VM set AZURE_AUTH_METHOD=managed_identity".into())
        };
        links.push(Link {
            name: "ManagedIdentityCredential",
            credential: mi,
        });

        // 4. and 5. Developer tools.
        links.push(Link {
            name: "AzureCliCredential",
            credential: azure_identity::AzureCliCredential::new(None)
                .map(|c| c as Arc<dyn TokenCredential>)
                .map_err(|e| e.to_string()),
        });
        links.push(Link {
            name: "AzureDeveloperCliCredential",
            credential: azure_identity::AzureDeveloperCliCredential::new(None)
                .map(|c| c as Arc<dyn TokenCredential>)
                .map_err(|e| e.to_string()),
        });
        Self {
            links,
            chosen: OnceLock::new(),
            trying: AtomicUsize::new(0),
        }
    }

    /// A chain of only the managed identity link (`AZURE_AUTH_METHOD=managed_identity`).
    pub fn managed_identity_only(id: Option<UserAssignedId>) -> Self {
        let mi = azure_identity::ManagedIdentityCredential::new(Some(
            azure_identity::ManagedIdentityCredentialOptions {
                user_assigned_id: id,
                ..Default::default()
            },
        ))
        .map(|c| c as Arc<dyn TokenCredential>)
        .map_err(|e| e.to_string());
        Self {
            links: vec![Link {
                name: "ManagedIdentityCredential",
                credential: mi,
            }],
            chosen: OnceLock::new(),
            trying: AtomicUsize::new(0),
        }
    }

    /// The names of the links, in order.
    pub fn link_names(&self) -> Vec<&'static str> {
        self.links.iter().map(|l| l.name).collect()
    }
}

#[cfg(feature = "client-certificate")]
fn certificate_credential(
    tenant: String,
    client: String,
    path: String,
    password: Option<String>,
) -> Result<Arc<dyn TokenCredential>, String> {
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let options = azure_identity::ClientCertificateCredentialOptions {
        password: password.map(Into::into),
        ..Default::default()
    };
    azure_identity::ClientCertificateCredential::new(tenant, client, bytes.into(), Some(options))
        .map(|c| c as Arc<dyn TokenCredential>)
        .map_err(|e| e.to_string())
}

#[cfg(not(feature = "client-certificate"))]
fn certificate_credential(
    _tenant: String,
    _client: String,
    _path: String,
    _password: Option<String>,
) -> Result<Arc<dyn TokenCredential>, String> {
    Err("AZURE_CLIENT_CERTIFICATE_PATH is set but deadpool-entra was built without its `client-certificate` feature".into())
}

impl TokenSource for ChainSource {
    fn fetch<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<Token, TokenSourceError>> {
        Box::pin(async move {
            if let Some(&i) = self.chosen.get() {
                let link = &self.links[i];
                if let Ok(c) = &link.credential {
                    return fetch_from(&**c, scope, link.name).await;
                }
            }
            let mut failures = Vec::new();
            let mut hint = None;
            let mut retry_after = None;
            for (i, link) in self.links.iter().enumerate() {
                let c = match &link.credential {
                    Err(reason) => {
                        failures.push(format!("{}: unavailable: {reason}", link.name));
                        continue;
                    }
                    Ok(c) => c,
                };
                self.trying.store(i + 1, Ordering::Relaxed);
                match fetch_from(&**c, scope, link.name).await {
                    Ok(t) => {
                        let _ = self.chosen.set(i);
                        tracing::debug!(target: "deadpool_entra", link = link.name, "credential chain link selected");
                        return Ok(t);
                    }
                    Err(e) => {
                        failures.push(format!("{}: {}", link.name, e.message));
                        if hint.is_none() {
                            hint = e.hint;
                        }
                        retry_after = retry_after.or(e.retry_after);
                    }
                }
            }
            self.trying.store(0, Ordering::Relaxed);
            let mut err = TokenSourceError::new(format!(
                "no credential in the chain produced a token: {}",
                failures.join("; ")
            ));
            err.hint = Some(hint.unwrap_or_else(|| "configure one of them: a managed identity on Azure, or `az login` on a developer machine".into()));
            err.retry_after = retry_after;
            Err(err)
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
    password: Arc<str>,
}

impl StaticPassword {
    /// A source that always yields `password`.
    pub fn new(password: impl Into<String>) -> Self {
        Self {
            password: Arc::from(password.into()),
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
        let t = Token::never_expiring(self.password.to_string());
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
