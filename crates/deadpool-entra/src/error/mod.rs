//! Typed, actionable errors. No variant ever carries a token: messages are built from
//! server texts, SQLSTATEs, source names and causes that never include the secret.

mod classify;
mod kind;
mod login;

pub(crate) use classify::{classify_pg, classify_pg_ref, is_auth_refusal};
pub use kind::ErrorKind;
pub use login::{LoginError, TokenRefusedError};
// Defined in the token layer, which knows nothing above it; an error of this crate all the
// same.
pub use entra_pg_token::token::TokenError;
pub(crate) use login::{classify_login, login_error};
// Defined beside the configuration it judges, which knows nothing of the errors above it.
pub use crate::config::ConfigError;

/// Everything that can go wrong when building the pool or checking out a connection.
///
/// Every message says what failed and, where one is known, what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid (names the field).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The token source could not produce a token.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The server refused the login.
    #[error(transparent)]
    Login(#[from] LoginError),
    /// The server refused the token and the token source gives no other: it returns the
    /// same one. No second login was attempted.
    #[error(transparent)]
    TokenRefused(#[from] TokenRefusedError),
    /// The TLS handshake failed (certificate chain or host name).
    #[error(
        "TLS handshake with {endpoint} failed: {cause}; check the server certificate, the host name and `sslrootcert`/PGSSLROOTCERT (the CA that signed the server's certificate)"
    )]
    Tls {
        /// `host:port` of the server.
        endpoint: String,
        /// What rustls reported.
        cause: String,
    },
    /// The server could not be reached.
    #[error(
        "cannot reach PostgreSQL at {endpoint}: {cause}; check the host, the port and the firewall rules"
    )]
    Network {
        /// `host:port` of the server.
        endpoint: String,
        /// The I/O error.
        cause: String,
    },
    /// The server accepted the login but is read-only (a standby, a demoted primary, a
    /// replica behind a stale DNS answer) while `target_session_attrs=read-write` asks
    /// for a writer; the session was not kept.
    #[error(
        "the server at {endpoint} is read-only and target_session_attrs=read-write asks for a writer; the session was not kept. During a failover the server's name points to the new primary once it is promoted (Azure: 60 to 120 s); the pool resolves the name again on every login"
    )]
    ReadOnly {
        /// `host:port` of the server.
        endpoint: String,
    },
    /// Every server that accepted the login is in the wrong role for
    /// `target_session_attrs=primary` (each was a standby) or `standby` (none was); the
    /// sessions were not kept.
    #[error("{}", wrong_role_text(endpoint, *target_session_attrs))]
    WrongServerRole {
        /// `host:port` of the servers (comma-separated).
        endpoint: String,
        /// What was asked for: [`crate::config::TargetSessionAttrs::Primary`] or
        /// [`crate::config::TargetSessionAttrs::Standby`].
        target_session_attrs: crate::config::TargetSessionAttrs,
    },
    /// A pool timeout elapsed.
    #[error("timed out {0}")]
    Timeout(TimeoutKind),
    /// The pool has been closed.
    #[error("the pool has been closed")]
    Closed,
    /// A user-supplied `post_create` hook failed.
    #[error("a post_create hook failed: {0}")]
    Hook(String),
    /// Another database error (after a successful login, or one not classified above).
    #[error("database error: {}", pg_text(.0))]
    Postgres(#[source] tokio_postgres::Error),
}

fn wrong_role_text(endpoint: &str, wanted: crate::config::TargetSessionAttrs) -> String {
    use crate::config::TargetSessionAttrs::*;
    match wanted {
        Primary => format!(
            "no server at {endpoint} is a primary (each that accepted the login is in recovery: a standby) and target_session_attrs=primary asks for one; the sessions were not kept. During a failover a standby is promoted within minutes (Azure: 60 to 120 s); list the primary's host, or use prefer-standby or any to accept a standby"
        ),
        _ => format!(
            "no server at {endpoint} is a standby (none that accepted the login is in recovery) and target_session_attrs={} asks for one; the sessions were not kept. List a read replica's host, or use prefer-standby to fall back to the primary",
            wanted.as_str()
        ),
    }
}

/// tokio-postgres shows a server error as just "db error"; say what the server said.
pub(crate) fn pg_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// Which pool timeout elapsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// Waiting for a free slot (`wait_timeout`); the pool is exhausted.
    Wait,
    /// Creating a connection (`create_timeout`): login, TLS, or token took too long.
    Create,
    /// Recycling a connection (`recycle_timeout`).
    Recycle,
    /// The health check's `SELECT 1`.
    Health,
}

impl std::fmt::Display for TimeoutKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Wait => "waiting for a free connection slot (wait_timeout); the pool is exhausted: raise max_size or shorten transactions",
            Self::Create => "creating a connection (create_timeout): the login, TLS handshake or token request took too long",
            Self::Recycle => "recycling a connection (recycle_timeout)",
            Self::Health => "running the health check query",
        })
    }
}

impl From<Error> for deadpool_postgres::PoolError {
    fn from(e: Error) -> Self {
        use deadpool_postgres::{HookError, PoolError, TimeoutType};
        match e {
            Error::Timeout(TimeoutKind::Wait) => PoolError::Timeout(TimeoutType::Wait),
            Error::Timeout(TimeoutKind::Create) => PoolError::Timeout(TimeoutType::Create),
            Error::Timeout(TimeoutKind::Recycle) => PoolError::Timeout(TimeoutType::Recycle),
            Error::Closed => PoolError::Closed,
            Error::Postgres(e) => PoolError::Backend(e),
            other => PoolError::PostCreateHook(HookError::message(other.to_string())),
        }
    }
}
