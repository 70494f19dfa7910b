//! What building the pool can fail with. No message carries a token.

use deadpool_entra::error::ConfigError;
use entra_pg_token::TokenError;

/// Why the pool could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid, or asks for what sqlx cannot do.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No token could be had.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// No token came within the startup limit.
    #[error("no token within {0:?} at startup (the identity endpoint did not answer)")]
    TokenTimeout(std::time::Duration),
    /// The first login failed (the server refused it, or could not be reached).
    #[error("first login failed: {0}")]
    Login(#[source] sqlx::Error),
}
