//! A stable classification of [`Error`] that callers can match on, log and count, without
//! parsing messages.

use std::fmt;

use crate::{error::Error, error::TimeoutKind};

/// What kind of failure an [`Error`] is. Stable: new kinds may be added (the enum is
/// `#[non_exhaustive]`), existing ones keep their meaning and their [`ErrorKind::as_str`]
/// name.
///
/// ```
/// # fn f(e: deadpool_entra::Error) {
/// use deadpool_entra::ErrorKind;
/// match e.kind() {
///     ErrorKind::TokenUnavailable => { /* the identity endpoint: retry later */ }
///     ErrorKind::RoleMissing => { /* a deployment mistake: alert */ }
///     other => tracing::warn!(kind = other.as_str(), "database unavailable"),
/// }
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration is invalid ([`Error::Config`]).
    Configuration,
    /// No token could be had from the token source ([`Error::Token`]).
    TokenUnavailable,
    /// The server refused the token as expired.
    TokenExpired,
    /// The server refused the token: issued for another resource (the scope).
    TokenWrongAudience,
    /// The server could not validate the token (signature, issuer, tenant, clock).
    TokenInvalid,
    /// The server refused the token as revoked, or the principal is disabled.
    TokenRevoked,
    /// No PostgreSQL role for the identity (`pgaadauth_create_principal` missing).
    RoleMissing,
    /// Password authentication failed.
    BadPassword,
    /// Logged in, but not allowed (CONNECT on the database, ...).
    PermissionDenied,
    /// The role is bound to another Entra object id than the token's (the identity was
    /// recreated, or the user names another identity's role).
    RoleOidMismatch,
    /// The token's type does not fit the role's: a user's token for a service principal's
    /// role, or an application's token for a user's role.
    RoleTypeMismatch,
    /// The server has no free connection slot (SQLSTATE 53300); transient.
    TooManyConnections,
    /// The server is starting up, shutting down or recovering (SQLSTATE 57P03); transient.
    ServerNotReady,
    /// The server refused the login for another reason.
    LoginRefused,
    /// The TLS handshake failed (certificate chain or host name).
    Tls,
    /// The server could not be reached.
    Network,
    /// The server is read-only and a writer was asked for (`target_session_attrs`).
    ReadOnly,
    /// No server in the role `target_session_attrs=primary` or `standby` asks for
    /// ([`Error::WrongServerRole`]).
    WrongServerRole,
    /// A pool timeout elapsed.
    Timeout(TimeoutKind),
    /// The pool has been closed.
    Closed,
    /// A user-supplied hook failed.
    Hook,
    /// A database error after the login (a query).
    Database,
}

impl ErrorKind {
    /// A short, stable name (`token-expired`, `timeout-wait`, ...), for logs and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Configuration => "configuration",
            Self::TokenUnavailable => "token-unavailable",
            Self::TokenExpired => "token-expired",
            Self::TokenWrongAudience => "token-wrong-audience",
            Self::TokenInvalid => "token-invalid",
            Self::TokenRevoked => "token-revoked",
            Self::RoleMissing => "role-missing",
            Self::BadPassword => "bad-password",
            Self::PermissionDenied => "permission-denied",
            Self::RoleOidMismatch => "role-oid-mismatch",
            Self::RoleTypeMismatch => "role-type-mismatch",
            Self::TooManyConnections => "too-many-connections",
            Self::ServerNotReady => "server-not-ready",
            Self::LoginRefused => "login-refused",
            Self::Tls => "tls",
            Self::Network => "network",
            Self::ReadOnly => "read-only",
            Self::WrongServerRole => "wrong-server-role",
            Self::Timeout(TimeoutKind::Wait) => "timeout-wait",
            Self::Timeout(TimeoutKind::Create) => "timeout-create",
            Self::Timeout(TimeoutKind::Recycle) => "timeout-recycle",
            Self::Timeout(TimeoutKind::Health) => "timeout-health",
            Self::Closed => "closed",
            Self::Hook => "hook",
            Self::Database => "database",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// What kind of failure this is: a stable classification to match on.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config(_) => ErrorKind::Configuration,
            Error::Token(_) => ErrorKind::TokenUnavailable,
            Error::Login(l) => l.kind,
            Error::TokenRefused(r) => r.login.kind,
            Error::Tls { .. } => ErrorKind::Tls,
            Error::Network { .. } => ErrorKind::Network,
            Error::ReadOnly { .. } => ErrorKind::ReadOnly,
            Error::WrongServerRole { .. } => ErrorKind::WrongServerRole,
            Error::Timeout(t) => ErrorKind::Timeout(*t),
            Error::Closed => ErrorKind::Closed,
            Error::Hook(_) => ErrorKind::Hook,
            Error::Postgres(_) => ErrorKind::Database,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::ConfigError, error::LoginError, error::TokenError, error::TokenRefusedError,
    };

    fn login(kind: ErrorKind) -> LoginError {
        LoginError {
            kind,
            server_message: "m".into(),
            sqlstate: "28000".into(),
            user: "u".into(),
        }
    }

    #[test]
    fn every_error_has_its_kind_and_a_distinct_stable_name() {
        let token = TokenError {
            source_name: "s".into(),
            cause: "c".into(),
            hint: None,
            retry_after: None,
        };
        let cases = [
            (
                Error::Config(ConfigError::new("host", "x")),
                ErrorKind::Configuration,
                "configuration",
            ),
            (
                Error::Token(token),
                ErrorKind::TokenUnavailable,
                "token-unavailable",
            ),
            (
                Error::Login(login(ErrorKind::TokenExpired)),
                ErrorKind::TokenExpired,
                "token-expired",
            ),
            (
                Error::Login(login(ErrorKind::TokenWrongAudience)),
                ErrorKind::TokenWrongAudience,
                "token-wrong-audience",
            ),
            (
                Error::Login(login(ErrorKind::TokenInvalid)),
                ErrorKind::TokenInvalid,
                "token-invalid",
            ),
            (
                Error::Login(login(ErrorKind::TokenRevoked)),
                ErrorKind::TokenRevoked,
                "token-revoked",
            ),
            (
                Error::Login(login(ErrorKind::RoleMissing)),
                ErrorKind::RoleMissing,
                "role-missing",
            ),
            (
                Error::Login(login(ErrorKind::BadPassword)),
                ErrorKind::BadPassword,
                "bad-password",
            ),
            (
                Error::Login(login(ErrorKind::PermissionDenied)),
                ErrorKind::PermissionDenied,
                "permission-denied",
            ),
            (
                Error::Login(login(ErrorKind::RoleOidMismatch)),
                ErrorKind::RoleOidMismatch,
                "role-oid-mismatch",
            ),
            (
                Error::Login(login(ErrorKind::RoleTypeMismatch)),
                ErrorKind::RoleTypeMismatch,
                "role-type-mismatch",
            ),
            (
                Error::Login(login(ErrorKind::TooManyConnections)),
                ErrorKind::TooManyConnections,
                "too-many-connections",
            ),
            (
                Error::Login(login(ErrorKind::ServerNotReady)),
                ErrorKind::ServerNotReady,
                "server-not-ready",
            ),
            (
                Error::Login(login(ErrorKind::LoginRefused)),
                ErrorKind::LoginRefused,
                "login-refused",
            ),
            (
                Error::TokenRefused(TokenRefusedError {
                    login: login(ErrorKind::TokenRevoked),
                    source_name: "s".into(),
                    expires_in_secs: None,
                    exp: None,
                }),
                ErrorKind::TokenRevoked,
                "token-revoked",
            ),
            (
                Error::Tls {
                    endpoint: "e".into(),
                    cause: "c".into(),
                },
                ErrorKind::Tls,
                "tls",
            ),
            (
                Error::Network {
                    endpoint: "e".into(),
                    cause: "c".into(),
                },
                ErrorKind::Network,
                "network",
            ),
            (
                Error::ReadOnly {
                    endpoint: "e".into(),
                },
                ErrorKind::ReadOnly,
                "read-only",
            ),
            (
                Error::WrongServerRole {
                    endpoint: "e".into(),
                    target_session_attrs: crate::config::TargetSessionAttrs::Standby,
                },
                ErrorKind::WrongServerRole,
                "wrong-server-role",
            ),
            (
                Error::Timeout(TimeoutKind::Wait),
                ErrorKind::Timeout(TimeoutKind::Wait),
                "timeout-wait",
            ),
            (
                Error::Timeout(TimeoutKind::Create),
                ErrorKind::Timeout(TimeoutKind::Create),
                "timeout-create",
            ),
            (
                Error::Timeout(TimeoutKind::Recycle),
                ErrorKind::Timeout(TimeoutKind::Recycle),
                "timeout-recycle",
            ),
            (
                Error::Timeout(TimeoutKind::Health),
                ErrorKind::Timeout(TimeoutKind::Health),
                "timeout-health",
            ),
            (Error::Closed, ErrorKind::Closed, "closed"),
            (Error::Hook("h".into()), ErrorKind::Hook, "hook"),
        ];
        let mut names = std::collections::HashSet::new();
        for (e, kind, name) in cases {
            assert_eq!(e.kind(), kind, "{e}");
            assert_eq!(kind.as_str(), name);
            assert_eq!(kind.to_string(), name);
            names.insert(name);
        }
        assert!(names.insert(ErrorKind::Database.as_str()));
        assert_eq!(names.len(), 25, "one distinct name per kind");
    }
}
