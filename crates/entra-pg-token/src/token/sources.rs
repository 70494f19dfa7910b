//! Token sources: any Azure credential, a static password, a closure (the credential
//! chain is in `chain.rs`).

use std::{
    fmt,
    future::Future,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use azure_core::credentials::TokenCredential;
pub use azure_identity::UserAssignedId;

use super::source::{BoxFuture, Token, TokenSource, TokenSourceError};

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
    /// use entra_pg_token::CredentialSource;
    /// use std::sync::Arc;
    /// let source = CredentialSource::from_factory("ManagedIdentityCredential", || {
    ///     azure_identity::ManagedIdentityCredential::new(None)
    ///         .map(|c| c as Arc<dyn azure_core::credentials::TokenCredential>)
    ///         .map_err(|e| e.to_string())
    /// })?;
    /// # Ok::<(), entra_pg_token::TokenSourceError>(())
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
        crate::sync::lock(&self.credential).clone()
    }
}

/// Asks a new instance from `factory` and, when it answers, keeps it: its cache holds the
/// new token, which the old instance's does not.
pub(super) async fn fetch_from_new_instance(
    factory: &CredentialFactory,
    slot: &Mutex<Arc<dyn TokenCredential>>,
    scope: &str,
    name: &str,
) -> Result<Token, TokenSourceError> {
    let fresh =
        factory().map_err(|e| TokenSourceError::new(format!("cannot create {name}: {e}")))?;
    let token = fetch_from(&*fresh, scope, name).await?;
    *crate::sync::lock(slot) = fresh;
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

/// A `Retry-After` value (RFC 9110 §10.2.3): delay seconds, or an HTTP date, taken as
/// the time from `now` to it (none when it has passed). Anything else is no value: the
/// backoff applies. The caller caps it ([`crate::token::policy::RETRY_AFTER_CAP`]).
fn retry_after_value(v: &str, now: SystemTime) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A `Retry-After` (seconds or an HTTP date) or `retry-after-ms` header on the HTTP response behind the
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
        if let Some(d) = h
            .get_optional_str(&HeaderName::from_static("retry-after"))
            .and_then(|v| retry_after_value(v, SystemTime::now()))
        {
            return Some(d);
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

pub(super) async fn fetch_from(
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

impl StaticPassword {
    /// The password as a secret that never expires, sharing the one zeroized copy.
    pub(crate) fn token(&self) -> Token {
        Token {
            secret: self.password.clone(),
            expiry: super::source::Expiry::Never,
        }
    }
}

/// What a password provider's cache fetches from: the password, at once, every time. Not
/// public: a password is not a token source.
pub(crate) struct Fixed(pub(crate) StaticPassword);

impl TokenSource for Fixed {
    fn fetch<'a>(&'a self, _scope: &'a str) -> BoxFuture<'a, Result<Token, TokenSourceError>> {
        let t = self.0.token();
        Box::pin(async move { Ok(t) })
    }
    fn name(&self) -> String {
        "StaticPassword".to_owned()
    }
}

type FetchFn = dyn Fn(String) -> BoxFuture<'static, Result<Token, TokenSourceError>> + Send + Sync;

/// A closure as a token source.
///
/// ```
/// use entra_pg_token::{FnSource, Token};
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
pub(super) mod tests;
