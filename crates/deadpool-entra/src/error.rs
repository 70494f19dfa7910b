//! Typed, actionable errors. No variant ever carries a token: messages are built from
//! server texts, SQLSTATEs, source names and causes that never include the secret.

use std::time::Duration;

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
        /// What was asked for: [`crate::TargetSessionAttrs::Primary`] or
        /// [`crate::TargetSessionAttrs::Standby`].
        target_session_attrs: crate::TargetSessionAttrs,
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

fn wrong_role_text(endpoint: &str, wanted: crate::TargetSessionAttrs) -> String {
    use crate::TargetSessionAttrs::*;
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
fn pg_text(e: &tokio_postgres::Error) -> String {
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

/// An invalid configuration value; `field` names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration `{field}`: {reason}")]
pub struct ConfigError {
    /// The setting at fault (`host`, `port`, `sslmode`, `user`, ...).
    pub field: String,
    /// Why it is invalid and what to do.
    pub reason: String,
}

impl ConfigError {
    /// A new configuration error for `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The setting at fault.
    pub fn field(&self) -> &str {
        &self.field
    }
}

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
    pub(crate) fn from_source(source_name: String, e: crate::TokenSourceError) -> Self {
        Self {
            source_name,
            cause: e.message,
            hint: e.hint,
            retry_after: e.retry_after,
        }
    }
}

/// The server refused a token that the token source keeps returning.
///
/// Every Azure credential serves its cached token until shortly before it expires, so
/// after a refusal the pool asks for a token that bypasses the caches it can bypass; when
/// even that returns the same token, this error says so instead of sending it again.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the server refused the token (login as {:?}, SQLSTATE {}: {}) and the token source {source_name} returns the same token{}, so no second login was sent; check this machine's clock against the server's (the pool trusts the token until its `exp` by this machine's clock; compare `date -u` here with `SELECT now()` on the server), and the token's `exp` claim; if the server refused a token that is still valid (revoked, or the principal changed), the identity endpoint hands out a new one only when its cached one nears expiry (5 minutes before, on Azure)",
    login.user, login.sqlstate, login.server_message,
    expiry_text(*expires_in_secs, *exp)
)]
pub struct TokenRefusedError {
    /// The refused login.
    pub login: LoginError,
    /// The token source (or chain link) that returned the same token.
    pub source_name: String,
    /// Seconds until the token expires by this machine's clock (negative: past).
    pub expires_in_secs: Option<i64>,
    /// The token's `exp` claim (Unix seconds).
    pub exp: Option<u64>,
}

fn expiry_text(expires_in: Option<i64>, exp: Option<u64>) -> String {
    let mut out = String::new();
    if let Some(s) = expires_in {
        out.push_str(&format!(", which by this machine's clock expires in {s} s"));
    }
    if let Some(e) = exp {
        out.push_str(&format!(" (exp {e}, Unix seconds)"));
    }
    out
}

/// Why the server refused a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginErrorKind {
    /// The token had expired when it reached the server.
    TokenExpired,
    /// The token was issued for another resource.
    WrongAudience,
    /// No PostgreSQL role exists for the identity.
    UnknownRole,
    /// Password authentication failed (static password mode, or an unusable token).
    BadPassword,
    /// The token or principal has been revoked or disabled.
    Revoked,
    /// The server could not validate the token ("An error occurred while validating the
    /// access token", "The access token is invalid"): its signature, issuer or tenant, or
    /// a clock that disagrees.
    TokenInvalid,
    /// Logged in, but not allowed (SQLSTATE 42501 and friends).
    PermissionDenied,
    /// The role exists but is bound to another Entra object than the token's: its
    /// security label holds another object id (Azure: "Service principal oid mismatch for
    /// role ..."). The identity was deleted and recreated under the same name, or the user
    /// names another identity's role. A new token cannot fix it.
    RoleOidMismatch,
    /// The token's type does not fit the role's: a user's token for a role created for a
    /// service principal or managed identity (Azure: "Service principals cannot generate
    /// AAD_AUTH_TOKENTYPE_APP_USER tokens for role ..."), or an application's token for a
    /// role created for a user ("... is neither an AAD_AUTH_TOKENTYPE_APP_USER or an
    /// AAD_AUTH_TOKENTYPE_APP_OBO token"). A new token cannot fix it.
    RoleTypeMismatch,
    /// The server has no free connection slot (SQLSTATE 53300, "sorry, too many clients
    /// already"): a transient state of the server; a new token cannot fix it, the login
    /// may succeed once other sessions end.
    TooManyConnections,
    /// The server is starting up, shutting down or recovering (SQLSTATE 57P03: a restart,
    /// a failover, a scale or maintenance operation): a transient state of the server; a
    /// new token cannot fix it, the login may succeed later.
    ServerNotReady,
    /// Anything else the server said.
    Other,
}

/// The server refused the login.
#[derive(Debug, Clone, thiserror::Error)]
#[error("login as {user:?} refused ({kind:?}, SQLSTATE {sqlstate}): {server_message}{}", hint_for(*kind, user, server_message).map(|h| format!("; {h}")).unwrap_or_default())]
pub struct LoginError {
    /// The classified reason.
    pub kind: LoginErrorKind,
    /// The server's message (never contains the token).
    pub server_message: String,
    /// The SQLSTATE code.
    pub sqlstate: String,
    /// The user name the login used.
    pub user: String,
}

impl LoginError {
    /// The classified reason.
    pub fn kind(&self) -> LoginErrorKind {
        self.kind
    }

    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        hint_for(self.kind, &self.user, &self.server_message)
    }
}

/// The scope to ask for, from the resource a wrong-audience refusal names
/// (`... for the resource "https://ossrdbms-aad.database.chinacloudapi.cn".`): a server in
/// a sovereign cloud names its own; the public cloud's when the message names none.
fn scope_from_refusal(server_message: &str) -> String {
    const MARK: &str = "for the resource \"";
    server_message
        .split_once(MARK)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(resource, _)| resource.trim_end_matches('/'))
        .filter(|r| r.starts_with("https://") && !r.contains(char::is_whitespace))
        .map_or_else(
            || crate::DEFAULT_SCOPE.to_owned(),
            |r| format!("{r}/.default"),
        )
}

fn hint_for(kind: LoginErrorKind, user: &str, server_message: &str) -> Option<String> {
    Some(match kind {
        LoginErrorKind::TokenExpired => "the pool refreshes tokens ahead of expiry; check the clock of this machine and the token source".into(),
        LoginErrorKind::WrongAudience => format!(
            "request tokens for the scope {} (the scope is read from the host name's cloud unless `scope`/AZURE_POSTGRESQL_SCOPE sets another)",
            scope_from_refusal(server_message)
        ),
        LoginErrorKind::UnknownRole => format!(
            "as the server's Entra administrator, run `select * from pgaadauth_create_principal('{user}', false, false);` (the role name must be the identity's name), or set the user (PGUSER / AZURE_POSTGRESQL_USER) to an existing role"
        ),
        LoginErrorKind::BadPassword => "check the password, or the user name matching the identity".into(),
        LoginErrorKind::Revoked => "the principal was disabled or its token revoked; check the identity in Entra ID".into(),
        LoginErrorKind::TokenInvalid => "check that the token comes from the server's Entra tenant (the credential's tenant) and this machine's clock".into(),
        LoginErrorKind::PermissionDenied => "grant the role the privileges it needs (CONNECT on the database)".into(),
        LoginErrorKind::RoleOidMismatch => format!(
            "the role {user:?} exists but is bound to another Entra object id than the token's `oid` (the identity was deleted and recreated under the same name, or the user names another identity's role); a new token will not help. Log in as the role created for this identity, or, as the server's Entra administrator, bind the role to the identity's current object id (its principal id): drop the role and run `select * from pgaadauth_create_principal_with_oid('{user}', '<object id>', 'service', false, false);`, then grant its rights again"
        ),
        LoginErrorKind::RoleTypeMismatch if server_message.to_ascii_lowercase().contains("service principals cannot") => format!(
            "the role {user:?} was created for a service principal or managed identity, and the token is a user's (`az login`, a developer credential); a new token will not help: run where the identity's token is available (its managed identity, workload identity or secret), or log in as your own user's role"
        ),
        LoginErrorKind::RoleTypeMismatch => format!(
            "the role {user:?} was created for a user, and the token is an application's (a managed identity or service principal); a new token will not help: set the user (PGUSER / AZURE_POSTGRESQL_USER) to the identity's role, created with `select * from pgaadauth_create_principal('<identity name>', false, false);`"
        ),
        LoginErrorKind::TooManyConnections => "the server has no free connection slot (`max_connections`, less the slots reserved for administrators, is shared by every pool and client of the server); a new token will not help, a login may succeed once other sessions end: lower `max_size` across the application's instances, close idle clients, or raise the server parameter `max_connections` (its ceiling depends on the compute size)".into(),
        LoginErrorKind::ServerNotReady => "the server is starting up, shutting down or recovering (a restart, a failover, a scale or maintenance operation); a new token will not help, a login may succeed once it is up: retry later".into(),
        LoginErrorKind::Other => return None,
    })
}

pub(crate) fn classify_login(db: &tokio_postgres::error::DbError, user: &str) -> LoginError {
    classify_login_text(db.code().code(), db.message(), user)
}

/// The login error for a server error with SQLSTATE `code` and text `msg` during a login;
/// `None` when the SQLSTATE is not one a login failure has. Too many clients (53300) and
/// a server starting up or shutting down (57P03) are login failures too: a query never
/// meets them, and calling them query errors would hide what stopped the login.
pub(crate) fn login_error(code: &str, msg: &str, user: &str) -> Option<LoginError> {
    let login = code.starts_with("28")
        || matches!(
            code,
            "42501" | "3D000" | SQLSTATE_TOO_MANY_CONNECTIONS | SQLSTATE_CANNOT_CONNECT_NOW
        );
    login.then(|| classify_login_text(code, msg, user))
}

/// `too_many_connections`: no free connection slot.
const SQLSTATE_TOO_MANY_CONNECTIONS: &str = "53300";
/// `cannot_connect_now`: starting up, shutting down, in recovery.
const SQLSTATE_CANNOT_CONNECT_NOW: &str = "57P03";

/// Why the server refused a login, from its SQLSTATE and text.
fn classify_login_text(code: &str, msg: &str, user: &str) -> LoginError {
    let lower = msg.to_ascii_lowercase();
    let kind = if code == SQLSTATE_TOO_MANY_CONNECTIONS {
        LoginErrorKind::TooManyConnections
    } else if code == SQLSTATE_CANNOT_CONNECT_NOW {
        LoginErrorKind::ServerNotReady
    } else if lower.contains("expired") {
        LoginErrorKind::TokenExpired
    } else if lower.contains("audience") {
        LoginErrorKind::WrongAudience
    } else if lower.contains("revoked") || lower.contains("disabled") {
        LoginErrorKind::Revoked
    } else if lower.contains("validating the access token")
        || lower.contains("access token is invalid")
    {
        LoginErrorKind::TokenInvalid
    } else if lower.contains("password authentication failed") {
        LoginErrorKind::BadPassword
    } else if lower.contains("oid mismatch") {
        // Before the role checks: the text names a principal, and the role exists.
        LoginErrorKind::RoleOidMismatch
    } else if lower.contains("aad_auth_tokentype") {
        LoginErrorKind::RoleTypeMismatch
    } else if (lower.contains("role") && lower.contains("does not exist"))
        || lower.contains("principal")
    {
        LoginErrorKind::UnknownRole
    } else if code == "42501" || lower.contains("permission denied") {
        LoginErrorKind::PermissionDenied
    } else {
        LoginErrorKind::Other
    };
    LoginError {
        kind,
        server_message: msg.to_owned(),
        sqlstate: code.to_owned(),
        user: user.to_owned(),
    }
}

/// Is this a login refused for authentication reasons (SQLSTATE 28000 or 28P01)?
pub(crate) fn is_auth_refusal(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| matches!(db.code().code(), "28000" | "28P01"))
}

/// Turns a tokio-postgres error from a login into our typed error.
pub(crate) fn classify_pg(e: tokio_postgres::Error, endpoint: &str, user: &str) -> Error {
    classify_pg_ref(&e, endpoint, user).unwrap_or(Error::Postgres(e))
}

/// Classifies a login error; `None` when it is none of login, TLS or network.
pub(crate) fn classify_pg_ref(
    e: &tokio_postgres::Error,
    endpoint: &str,
    user: &str,
) -> Option<Error> {
    if let Some(db) = e.as_db_error() {
        return login_error(db.code().code(), db.message(), user).map(Error::Login);
    }
    // Walk the source chain: rustls errors are TLS failures, I/O errors network ones.
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut io_cause = None;
    while let Some(err) = cur {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(Error::Tls {
                endpoint: endpoint.to_owned(),
                cause: tls.to_string(),
            });
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(Error::Tls {
                    endpoint: endpoint.to_owned(),
                    cause: tls.to_string(),
                });
            }
            io_cause.get_or_insert_with(|| io.to_string());
        }
        cur = err.source();
    }
    let text = e.to_string();
    if text.contains("TLS") || text.contains("tls") {
        return Some(Error::Tls {
            endpoint: endpoint.to_owned(),
            cause: io_cause.unwrap_or(text),
        });
    }
    if crate::network::network_cause(e) == Some(crate::network::DeadCause::ReadOnly) {
        return Some(Error::ReadOnly {
            endpoint: endpoint.to_owned(),
        });
    }
    if let Some(cause) = io_cause {
        return Some(Error::Network {
            endpoint: endpoint.to_owned(),
            cause,
        });
    }
    if text.contains("timeout") || text.contains("timed out") {
        return Some(Error::Network {
            endpoint: endpoint.to_owned(),
            cause: text,
        });
    }
    None
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

#[cfg(test)]
mod refusal_tests {
    use super::scope_from_refusal;

    #[test]
    fn the_scope_to_ask_for_is_the_resource_the_server_names() {
        let china = "The access token does not have a valid audience claim. Please acquire a new token for the resource \"https://ossrdbms-aad.database.chinacloudapi.cn\".";
        assert_eq!(
            scope_from_refusal(china),
            "https://ossrdbms-aad.database.chinacloudapi.cn/.default"
        );
        assert_eq!(
            scope_from_refusal("no resource named"),
            crate::DEFAULT_SCOPE
        );
        assert_eq!(
            scope_from_refusal("for the resource \"not a url\""),
            crate::DEFAULT_SCOPE
        );
    }
}

#[cfg(test)]
mod classify_tests {
    use super::{Error, LoginErrorKind, login_error};
    use crate::ErrorKind;

    /// The login error, its kind, its `ErrorKind`, the metric label and the full text.
    fn classify(code: &str, msg: &str) -> (LoginErrorKind, ErrorKind, &'static str, String) {
        let l = login_error(code, msg, "app").expect("a login error, not a query error");
        let kind = l.kind();
        let e = Error::Login(l);
        (kind, e.kind(), e.kind().as_str(), e.to_string())
    }

    #[test]
    fn too_many_clients_during_a_login_is_a_login_error_with_its_own_kind() {
        for msg in [
            "sorry, too many clients already",
            "remaining connection slots are reserved for roles with the SUPERUSER attribute",
        ] {
            let (kind, ekind, label, text) = classify("53300", msg);
            assert_eq!(kind, LoginErrorKind::TooManyConnections, "{text}");
            assert_eq!(ekind, ErrorKind::TooManyConnections);
            assert_eq!(label, "too-many-connections");
            assert!(text.contains("a new token will not help"), "{text}");
            assert!(text.contains("max_connections"), "{text}");
            assert!(text.contains("max_size"), "{text}");
        }
    }

    #[test]
    fn a_server_starting_up_or_shutting_down_is_a_login_error_with_its_own_kind() {
        for msg in [
            "the database system is starting up",
            "the database system is shutting down",
            "the database system is in recovery mode",
            "the database system is not yet accepting connections",
        ] {
            let (kind, ekind, label, text) = classify("57P03", msg);
            assert_eq!(kind, LoginErrorKind::ServerNotReady, "{text}");
            assert_eq!(ekind, ErrorKind::ServerNotReady);
            assert_eq!(label, "server-not-ready");
            assert!(text.contains("a new token will not help"), "{text}");
            assert!(text.contains("retry later"), "{text}");
        }
    }

    #[test]
    fn an_oid_mismatch_is_not_a_missing_role() {
        // Azure's text as users report it, quoted and bracketed.
        for msg in [
            "Service principal oid mismatch for role \"The oid in the security label [ca2d3f9c-0000-0000-0000-000000000001] does not match the appid [79bfdfb1-0000-0000-0000-000000000002] or oid [e9e1d347-0000-0000-0000-000000000003] in the token.\"",
            "Service Principal oid mismatch for role[app]",
        ] {
            let (kind, ekind, label, text) = classify("28000", msg);
            assert_eq!(kind, LoginErrorKind::RoleOidMismatch, "{text}");
            assert_eq!(ekind, ErrorKind::RoleOidMismatch);
            assert_eq!(label, "role-oid-mismatch");
            assert!(text.contains("a new token will not help"), "{text}");
            assert!(
                text.contains("pgaadauth_create_principal_with_oid('app'"),
                "{text}"
            );
            assert!(
                !text.contains("pgaadauth_create_principal('app'"),
                "no advice to create a role that exists: {text}"
            );
        }
    }

    #[test]
    fn a_token_of_the_wrong_type_for_the_role_is_not_a_missing_role() {
        // A user's token for a service principal's role.
        let (kind, ekind, label, text) = classify(
            "28000",
            "Service principals cannot generate AAD_AUTH_TOKENTYPE_APP_USER tokens for role \"app\".",
        );
        assert_eq!(kind, LoginErrorKind::RoleTypeMismatch, "{text}");
        assert_eq!(ekind, ErrorKind::RoleTypeMismatch);
        assert_eq!(label, "role-type-mismatch");
        assert!(text.contains("the token is a user's"), "{text}");
        assert!(text.contains("a new token will not help"), "{text}");
        assert!(!text.contains("pgaadauth_create_principal('app'"), "{text}");
        // An application's token for a user's role: today's text and the older one.
        for msg in [
            "Microsoft Entra user token for role \"app\" is neither an AAD_AUTH_TOKENTYPE_APP_USER or an AAD_AUTH_TOKENTYPE_APP_OBO token.",
            "Azure AD user token for role[app] is neither an AAD_AUTH_TOKENTYPE_APP_USER or an AAD_AUTH_TOKENTYPE_APP_OBO token.",
        ] {
            let (kind, ekind, _, text) = classify("28000", msg);
            assert_eq!(kind, LoginErrorKind::RoleTypeMismatch, "{text}");
            assert_eq!(ekind, ErrorKind::RoleTypeMismatch);
            assert!(text.contains("the token is an application's"), "{text}");
            assert!(text.contains("PGUSER"), "{text}");
        }
    }

    #[test]
    fn a_missing_role_and_query_errors_keep_their_kinds() {
        let (kind, ..) = classify(
            "28000",
            "role \"nobody\" does not exist. Create it for the principal (oid c60e2553-76bb-4935-a3fa-d9c8c3500e6c) with pgaadauth_create_principal.",
        );
        assert_eq!(kind, LoginErrorKind::UnknownRole);
        let (kind, ..) = classify("3D000", "database \"nope\" does not exist");
        assert_eq!(kind, LoginErrorKind::Other);
        // A query's error is no login error.
        assert!(login_error("42P01", "relation \"t\" does not exist", "app").is_none());
        assert!(login_error("40001", "could not serialize access", "app").is_none());
    }
}
