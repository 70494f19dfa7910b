//! The server refused a login: why (its SQLSTATE and text, classified into an
//! [`ErrorKind`]), and what to do about it.

use crate::error::ErrorKind;

/// The server refused the login.
#[derive(Debug, Clone, thiserror::Error)]
#[error("login as {user:?} refused ({kind}, SQLSTATE {sqlstate}): {server_message}{}", hint_for(*kind, user, server_message).map(|h| format!("; {h}")).unwrap_or_default())]
pub struct LoginError {
    /// The classified reason: one of [`ErrorKind`]'s login kinds (`TokenExpired`,
    /// `RoleMissing`, ... `LoginRefused` for anything else the server said).
    pub kind: ErrorKind,
    /// The server's message (never contains the token).
    pub server_message: String,
    /// The SQLSTATE code.
    pub sqlstate: String,
    /// The user name the login used.
    pub user: String,
}

impl LoginError {
    /// The classified reason.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        hint_for(self.kind, &self.user, &self.server_message)
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
            || entra_pg_token::cloud::DEFAULT_SCOPE.to_owned(),
            |r| format!("{r}/.default"),
        )
}

fn hint_for(kind: ErrorKind, user: &str, server_message: &str) -> Option<String> {
    Some(match kind {
        ErrorKind::TokenExpired => "the pool refreshes tokens ahead of expiry; check the clock of this machine and the token source".into(),
        ErrorKind::TokenWrongAudience => format!(
            "request tokens for the scope {} (the scope is read from the host name's cloud unless `scope`/AZURE_POSTGRESQL_SCOPE sets another)",
            scope_from_refusal(server_message)
        ),
        ErrorKind::RoleMissing => format!(
            "as the server's Entra administrator, run `select * from pgaadauth_create_principal('{user}', false, false);` (the role name must be the identity's name), or set the user (PGUSER / AZURE_POSTGRESQL_USER) to an existing role"
        ),
        ErrorKind::BadPassword => "check the password, or the user name matching the identity".into(),
        ErrorKind::TokenRevoked => "the principal was disabled or its token revoked; check the identity in Entra ID".into(),
        ErrorKind::TokenInvalid => "check that the token comes from the server's Entra tenant (the credential's tenant) and this machine's clock".into(),
        ErrorKind::PermissionDenied => "grant the role the privileges it needs (CONNECT on the database)".into(),
        ErrorKind::RoleOidMismatch => format!(
            "the role {user:?} exists but is bound to another Entra object id than the token's `oid` (the identity was deleted and recreated under the same name, or the user names another identity's role); a new token will not help. Log in as the role created for this identity, or, as the server's Entra administrator, bind the role to the identity's current object id (its principal id): drop the role and run `select * from pgaadauth_create_principal_with_oid('{user}', '<object id>', 'service', false, false);`, then grant its rights again"
        ),
        ErrorKind::RoleTypeMismatch if server_message.to_ascii_lowercase().contains("service principals cannot") => format!(
            "the role {user:?} was created for a service principal or managed identity, and the token is a user's (`az login`, a developer credential); a new token will not help: run where the identity's token is available (its managed identity, workload identity or secret), or log in as your own user's role"
        ),
        ErrorKind::RoleTypeMismatch => format!(
            "the role {user:?} was created for a user, and the token is an application's (a managed identity or service principal); a new token will not help: set the user (PGUSER / AZURE_POSTGRESQL_USER) to the identity's role, created with `select * from pgaadauth_create_principal('<identity name>', false, false);`"
        ),
        ErrorKind::TooManyConnections => "the server has no free connection slot (`max_connections`, less the slots reserved for administrators, is shared by every pool and client of the server); a new token will not help, a login may succeed once other sessions end: lower `max_size` across the application's instances, close idle clients, or raise the server parameter `max_connections` (its ceiling depends on the compute size)".into(),
        ErrorKind::ServerNotReady => "the server is starting up, shutting down or recovering (a restart, a failover, a scale or maintenance operation); a new token will not help, a login may succeed once it is up: retry later".into(),
        // The rest: a refusal the classifier does not know, or no login failure.
        _ => return None,
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
        ErrorKind::TooManyConnections
    } else if code == SQLSTATE_CANNOT_CONNECT_NOW {
        ErrorKind::ServerNotReady
    } else if lower.contains("expired") {
        ErrorKind::TokenExpired
    } else if lower.contains("audience") {
        ErrorKind::TokenWrongAudience
    } else if lower.contains("revoked") || lower.contains("disabled") {
        ErrorKind::TokenRevoked
    } else if lower.contains("validating the access token")
        || lower.contains("access token is invalid")
    {
        ErrorKind::TokenInvalid
    } else if lower.contains("password authentication failed") {
        ErrorKind::BadPassword
    } else if lower.contains("oid mismatch") {
        // Before the role checks: the text names a principal, and the role exists.
        ErrorKind::RoleOidMismatch
    } else if lower.contains("aad_auth_tokentype") {
        ErrorKind::RoleTypeMismatch
    } else if (lower.contains("role") && lower.contains("does not exist"))
        || lower.contains("principal")
    {
        ErrorKind::RoleMissing
    } else if code == "42501" || lower.contains("permission denied") {
        ErrorKind::PermissionDenied
    } else {
        ErrorKind::LoginRefused
    };
    LoginError {
        kind,
        server_message: msg.to_owned(),
        sqlstate: code.to_owned(),
        user: user.to_owned(),
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
            entra_pg_token::cloud::DEFAULT_SCOPE
        );
        assert_eq!(
            scope_from_refusal("for the resource \"not a url\""),
            entra_pg_token::cloud::DEFAULT_SCOPE
        );
    }
}

#[cfg(test)]
mod classify_tests {
    use super::login_error;
    use crate::{error::Error, error::ErrorKind};

    /// The login error's kind (checked to be the `Error`'s too), the metric label and the
    /// full text.
    fn classify(code: &str, msg: &str) -> (ErrorKind, &'static str, String) {
        let l = login_error(code, msg, "app").expect("a login error, not a query error");
        let kind = l.kind();
        let e = Error::Login(l);
        assert_eq!(e.kind(), kind);
        (kind, e.kind().as_str(), e.to_string())
    }

    #[test]
    fn too_many_clients_during_a_login_is_a_login_error_with_its_own_kind() {
        for msg in [
            "sorry, too many clients already",
            "remaining connection slots are reserved for roles with the SUPERUSER attribute",
        ] {
            let (kind, label, text) = classify("53300", msg);
            assert_eq!(kind, ErrorKind::TooManyConnections, "{text}");
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
            let (kind, label, text) = classify("57P03", msg);
            assert_eq!(kind, ErrorKind::ServerNotReady, "{text}");
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
            let (kind, label, text) = classify("28000", msg);
            assert_eq!(kind, ErrorKind::RoleOidMismatch, "{text}");
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
        let (kind, label, text) = classify(
            "28000",
            "Service principals cannot generate AAD_AUTH_TOKENTYPE_APP_USER tokens for role \"app\".",
        );
        assert_eq!(kind, ErrorKind::RoleTypeMismatch, "{text}");
        assert_eq!(label, "role-type-mismatch");
        assert!(text.contains("the token is a user's"), "{text}");
        assert!(text.contains("a new token will not help"), "{text}");
        assert!(!text.contains("pgaadauth_create_principal('app'"), "{text}");
        // An application's token for a user's role: today's text and the older one.
        for msg in [
            "Microsoft Entra user token for role \"app\" is neither an AAD_AUTH_TOKENTYPE_APP_USER or an AAD_AUTH_TOKENTYPE_APP_OBO token.",
            "Azure AD user token for role[app] is neither an AAD_AUTH_TOKENTYPE_APP_USER or an AAD_AUTH_TOKENTYPE_APP_OBO token.",
        ] {
            let (kind, _, text) = classify("28000", msg);
            assert_eq!(kind, ErrorKind::RoleTypeMismatch, "{text}");
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
        assert_eq!(kind, ErrorKind::RoleMissing);
        let (kind, ..) = classify("3D000", "database \"nope\" does not exist");
        assert_eq!(kind, ErrorKind::LoginRefused);
        // A query's error is no login error.
        assert!(login_error("42P01", "relation \"t\" does not exist", "app").is_none());
        assert!(login_error("40001", "could not serialize access", "app").is_none());
    }
}
