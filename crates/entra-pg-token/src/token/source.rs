//! What a token source yields ([`Token`], or a [`TokenSourceError`]) and the trait every
//! source implements ([`TokenSource`]).

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, SystemTime},
};

use super::secret;

/// A boxed, sendable future (the shape [`TokenSource::fetch`] returns).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    Never,
    At(SystemTime),
    /// Relative to the moment the token is handed to the cache; exact on tokio's clock.
    In(Duration),
}

/// A secret (access token or password) and when it expires.
///
/// `Debug` shows the expiry only; the secret is never printed, and its memory is zeroed
/// when the last copy of the token is dropped.
#[derive(Clone)]
pub struct Token {
    pub(super) secret: Arc<secret::Secret>,
    pub(crate) expiry: Expiry,
}

impl Token {
    /// A token that expires at `expires_on` (wall clock, as credentials report it).
    pub fn new(secret: impl Into<String>, expires_on: SystemTime) -> Self {
        Self {
            secret: Arc::new(secret::Secret::new(secret.into())),
            expiry: Expiry::At(expires_on),
        }
    }

    /// A token that expires `expires_in` from now (measured on tokio's clock, which makes
    /// it the natural constructor for tests with paused time).
    pub fn expiring_in(secret: impl Into<String>, expires_in: Duration) -> Self {
        Self {
            secret: Arc::new(secret::Secret::new(secret.into())),
            expiry: Expiry::In(expires_in),
        }
    }

    /// A secret that never expires (a static password).
    pub fn never_expiring(secret: impl Into<String>) -> Self {
        Self {
            secret: Arc::new(secret::Secret::new(secret.into())),
            expiry: Expiry::Never,
        }
    }

    /// The secret. Handle with care: never log it.
    pub fn secret(&self) -> &str {
        self.secret.expose()
    }

    pub(crate) fn secret_arc(&self) -> Arc<secret::Secret> {
        self.secret.clone()
    }

    /// When the token expires, on the wall clock; `None` for a secret that never expires.
    pub fn expires_on(&self) -> Option<SystemTime> {
        match self.expiry {
            Expiry::Never => None,
            Expiry::At(t) => Some(t),
            // A lifetime past what the wall clock holds reads as far in the future.
            Expiry::In(d) => {
                let now = SystemTime::now();
                Some(
                    now.checked_add(d)
                        .or_else(|| now.checked_add(FAR_FUTURE))
                        .unwrap_or(now),
                )
            }
        }
    }
}

/// What [`Token::expires_on`] reports for a lifetime the wall clock cannot hold.
const FAR_FUTURE: Duration = Duration::from_secs(200 * 365 * 86_400);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let expires_in = match self.expiry {
            Expiry::Never => None,
            Expiry::In(d) => Some(d),
            Expiry::At(t) => Some(
                t.duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO),
            ),
        };
        f.debug_struct("Token")
            .field("secret", &"<redacted>")
            .field("expires_in", &expires_in)
            .finish()
    }
}

/// Why a [`TokenSource`] could not produce a token.
#[derive(Debug, Clone)]
pub struct TokenSourceError {
    /// What went wrong. Must not contain a secret.
    pub message: String,
    /// What the user can do, when known (`run az login`, ...).
    pub hint: Option<String>,
    /// A `Retry-After` the identity endpoint sent, if any.
    pub retry_after: Option<Duration>,
}

impl TokenSourceError {
    /// An error with a message.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
            retry_after: None,
        }
    }

    /// Adds a hint for the user.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a retry-after hint.
    pub fn with_retry_after(mut self, d: Duration) -> Self {
        self.retry_after = Some(d);
        self
    }
}

impl fmt::Display for TokenSourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(h) = &self.hint {
            write!(f, "; {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for TokenSourceError {}

/// Something that yields a token and its expiry.
///
/// Implemented for any Azure credential ([`CredentialSource`](super::CredentialSource)),
/// the documented credential chain ([`ChainSource`](super::ChainSource)) and closures
/// ([`FnSource`](super::FnSource)). A static password is not a token source: a provider
/// holds one with [`crate::provider::TokenProvider::password`].
///
/// ```
/// use entra_pg_token::{BoxFuture, Token, TokenSource, TokenSourceError};
/// use std::time::Duration;
///
/// struct Fixed;
/// impl TokenSource for Fixed {
///     fn fetch<'a>(&'a self, _scope: &'a str) -> BoxFuture<'a, Result<Token, TokenSourceError>> {
///         Box::pin(async { Ok(Token::expiring_in("secret", Duration::from_secs(3600))) })
///     }
///     fn name(&self) -> String { "Fixed".into() }
/// }
/// ```
pub trait TokenSource: Send + Sync + 'static {
    /// Fetches a token for `scope`.
    fn fetch<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<Token, TokenSourceError>>;

    /// A name for logs, stats and errors (for a chain: the link in use).
    fn name(&self) -> String;

    /// A token that bypasses any cache the source keeps, where it can (a new credential
    /// instance, whose in-process cache is empty). The pool asks for one only after the
    /// server refused the token that [`TokenSource::fetch`] returned; the default is
    /// `fetch`. An identity endpoint may still answer with the token it has cached: the
    /// pool then reports that no other token can be had instead of sending the same one
    /// again.
    fn fetch_fresh<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<Token, TokenSourceError>> {
        self.fetch(scope)
    }
}

impl<T: TokenSource + ?Sized> TokenSource for Arc<T> {
    fn fetch<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<Token, TokenSourceError>> {
        (**self).fetch(scope)
    }
    fn fetch_fresh<'a>(&'a self, scope: &'a str) -> BoxFuture<'a, Result<Token, TokenSourceError>> {
        (**self).fetch_fresh(scope)
    }
    fn name(&self) -> String {
        (**self).name()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::{Token, TokenSourceError};

    /// The error's text is its message, then its hint: what a user reads in the pool's
    /// error.
    #[test]
    fn a_source_error_reads_as_its_message_and_its_hint() {
        let bare = TokenSourceError::new("no identity endpoint answered");
        assert_eq!(bare.to_string(), "no identity endpoint answered");
        let hinted = bare.with_hint("run az login");
        assert_eq!(
            hinted.to_string(),
            "no identity endpoint answered; run az login"
        );
    }

    /// A source may say its token lives for ever: printing it or asking for its expiry
    /// must not overflow the wall clock.
    #[test]
    fn a_token_that_lives_for_ever_prints_and_reports_without_a_panic() {
        let t = Token::expiring_in("secret-value", Duration::MAX);
        let printed = format!("{t:?}");
        assert!(!printed.contains("secret-value"), "{printed}");
        assert!(printed.contains("expires_in"), "{printed}");
        let on = t.expires_on().expect("a token that expires");
        assert!(on > SystemTime::now() + Duration::from_secs(100 * 365 * 86_400));
        let at = Token::new("s", SystemTime::UNIX_EPOCH);
        assert!(format!("{at:?}").contains("0ns"), "{at:?}");
    }
}
