//! The error a pool reports when no token could be had: which source failed, why, and
//! what to do. It lives with the tokens (the token layer imports nothing above it); the
//! crate's `error` module re-exports it.

use std::time::Duration;

/// A token source failed to produce a token.
#[derive(Debug, Clone, thiserror::Error)]
#[error("token source {source_name} failed: {cause}{}", hint.as_deref().map(|h| format!("; {h}")).unwrap_or_default())]
pub struct TokenError {
    /// Which credential (or chain link) failed.
    pub source_name: String,
    /// Why it failed.
    pub cause: String,
    /// What to do about it, when known.
    pub hint: Option<String>,
    /// How long the identity endpoint asked us to wait, when it said so (HTTP 429).
    pub retry_after: Option<Duration>,
}

impl TokenError {
    pub(crate) fn from_source(source_name: String, e: super::source::TokenSourceError) -> Self {
        Self {
            source_name,
            cause: e.message,
            hint: e.hint,
            retry_after: e.retry_after,
        }
    }
}
