//! Check 8 (and 9, through PgBouncer's port): a login as the pool logs in, with the
//! token already fetched; on a refusal, the classified error and the SQL that fixes it.

use std::time::Duration;

use super::{
    report::{Check, CheckName},
    token::Claims,
};
use crate::{config::Config, error::Error, error::ErrorKind};
use entra_pg_token::{token::FnSource, token::Token};

/// How long the login may take.
const LOGIN_LIMIT: Duration = Duration::from_secs(30);

/// A login to the server `cfg` names, with `token` (none in password mode).
pub(crate) async fn check(
    name: CheckName,
    cfg: &Config,
    token: Option<(Token, String)>,
    claims: Option<&Claims>,
) -> Check {
    let mut builder = cfg
        .builder()
        .max_size(1)
        .min_connections(0)
        .wait_timeout(Some(LOGIN_LIMIT))
        .create_timeout(Some(LOGIN_LIMIT));
    if let Some((token, source)) = token {
        // The token already fetched: no second call to the identity endpoint.
        builder = builder.token_source(FnSource::new(source, move |_scope: String| {
            let token = token.clone();
            async move { Ok(token) }
        }));
    }
    let pool = match builder.build().await {
        Ok(p) => p,
        Err(e) => {
            return Check::failed(
                name,
                format!("the pool cannot be built: {e}"),
                fix_for(&e, cfg, claims),
            );
        }
    };
    let outcome = async {
        let client = pool.get().await?;
        let row = client
            .query_one(
                "SELECT current_user::text, current_setting('server_version'), current_setting('transaction_read_only')",
                &[],
            )
            .await
            .map_err(Error::Postgres)?;
        Ok::<_, Error>((row.get::<_, String>(0), row.get::<_, String>(1), row.get::<_, String>(2)))
    }
    .await;
    pool.close();
    match outcome {
        Ok((user, version, read_only)) => {
            let mut check = Check::new(
                name,
                format!(
                    "logged in as {user}, PostgreSQL {version}{}",
                    if read_only == "on" { ", read-only" } else { "" }
                ),
            );
            check.fact("current_user", &user);
            check.fact("server_version", &version);
            check.fact("transaction_read_only", &read_only);
            if read_only == "on" {
                check.warn("the session is read-only (a read replica, or a standby): writes fail; connect to the primary's name for writes, or set target_session_attrs=read-write");
            }
            check
        }
        Err(e) => Check::failed(name, e.to_string(), fix_for(&e, cfg, claims)),
    }
}

/// The fix for a failed login: the SQL to run when the role is wrong, else the error's
/// own hint.
fn fix_for(e: &Error, cfg: &Config, claims: Option<&Claims>) -> String {
    let user = match e {
        Error::Login(l) => l.user.clone(),
        Error::TokenRefused(r) => r.login.user.clone(),
        _ => cfg.user.clone().unwrap_or_default(),
    };
    let principal = claims.map(|c| {
        (
            c.oid.clone().unwrap_or_else(|| "<object id>".to_owned()),
            if c.is_app() { "service" } else { "user" },
        )
    });
    let create = |role: &str| match &principal {
        Some((oid, kind)) => format!(
            "select * from pgaadauth_create_principal_with_oid('{}', '{oid}', '{kind}', false, false);",
            sql_text(role)
        ),
        None => format!(
            "select * from pgaadauth_create_principal('{}', false, false);",
            sql_text(role)
        ),
    };
    match e.kind() {
        // Azure reads a password sent to an Entra role as a malformed token.
        ErrorKind::TokenInvalid | ErrorKind::BadPassword if cfg.uses_password() => format!(
            "the server refused the password for {user:?}: an Entra role logs in with a token, not a password; unset the password (PGPASSWORD, AZURE_POSTGRESQL_PASSWORD, or the one in the URL) so that the credential chain is used, or, for a password role, check the password"
        ),
        ErrorKind::RoleMissing => format!(
            "as the server's Entra administrator, connected to the postgres database, run: {} then grant the role its rights (GRANT CONNECT ON DATABASE ..., GRANT USAGE ON SCHEMA ...)",
            create(&user)
        ),
        ErrorKind::RoleOidMismatch => {
            let oid = principal.as_ref().map_or("unknown", |p| p.0.as_str());
            let role = sql_ident(&user);
            let create = create(&user);
            format!(
                "the role {user:?} is bound to another object id than this identity's ({oid}): log in as this identity's own role, or, as the Entra administrator, drop and recreate the role for it: REASSIGN OWNED BY \"{role}\" TO <another role>; DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\"; {create} then grant its rights again"
            )
        }
        ErrorKind::RoleTypeMismatch => format!(
            "the role {user:?} is a user's, and the token is an application's (a managed identity or service principal): log in as the identity's own role (PGUSER / AZURE_POSTGRESQL_USER), created by the Entra administrator with {}",
            create(
                &claims
                    .and_then(|c| c.upn.clone())
                    .unwrap_or_else(|| "<identity name>".to_owned())
            )
        ),
        _ => match e {
            Error::Login(l) => l
                .hint()
                .unwrap_or_else(|| "see docs/troubleshooting.md for this error".to_owned()),
            Error::Tls { .. } => "see the tls check above".to_owned(),
            Error::Network { .. } => "see the dns and tcp checks above".to_owned(),
            // The error's text ends with what to check.
            _ => "the error says what to check; docs/troubleshooting.md indexes it".to_owned(),
        },
    }
}

/// `s` inside single quotes in SQL.
fn sql_text(s: &str) -> String {
    s.replace('\'', "''")
}

/// `s` inside double quotes in SQL.
fn sql_ident(s: &str) -> String {
    s.replace('"', "\"\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::LoginError;

    fn login(kind: ErrorKind, user: &str) -> Error {
        Error::Login(LoginError {
            kind,
            server_message: "m".into(),
            sqlstate: "28000".into(),
            user: user.into(),
        })
    }

    fn app() -> Claims {
        Claims {
            oid: Some("oid-1".into()),
            appid: Some("app-1".into()),
            idtyp: Some("app".into()),
            ..Claims::default()
        }
    }

    #[test]
    fn a_missing_role_gets_the_create_sql_from_the_claims() {
        let cfg = Config::default();
        let fix = fix_for(&login(ErrorKind::RoleMissing, "it's"), &cfg, Some(&app()));
        assert!(
            fix.contains(
                "pgaadauth_create_principal_with_oid('it''s', 'oid-1', 'service', false, false);"
            ),
            "{fix}"
        );
        let user = Claims {
            oid: Some("oid-2".into()),
            upn: Some("a@x".into()),
            ..Claims::default()
        };
        let fix = fix_for(&login(ErrorKind::RoleMissing, "a@x"), &cfg, Some(&user));
        assert!(
            fix.contains("('a@x', 'oid-2', 'user', false, false)"),
            "{fix}"
        );
        // Without claims (password mode): the create call without an object id.
        let fix = fix_for(&login(ErrorKind::RoleMissing, "r"), &cfg, None);
        assert!(
            fix.contains("pgaadauth_create_principal('r', false, false);"),
            "{fix}"
        );
    }

    #[test]
    fn an_oid_mismatch_drops_and_recreates_the_role_for_this_identity() {
        let fix = fix_for(
            &login(ErrorKind::RoleOidMismatch, "r\"x"),
            &Config::default(),
            Some(&app()),
        );
        assert!(fix.contains("DROP ROLE \"r\"\"x\";"), "{fix}");
        assert!(fix.contains("this identity's (oid-1)"), "{fix}");
        assert!(fix.contains("'oid-1', 'service'"), "{fix}");
    }

    #[test]
    fn a_type_mismatch_points_at_the_identity_s_own_role() {
        let fix = fix_for(
            &login(ErrorKind::RoleTypeMismatch, "a@x"),
            &Config::default(),
            Some(&app()),
        );
        assert!(fix.contains("the identity's own role"), "{fix}");
        assert!(
            fix.contains("'<identity name>', 'oid-1', 'service'"),
            "{fix}"
        );
    }

    #[test]
    fn a_password_refused_by_an_entra_role_says_to_unset_it() {
        let cfg = Config {
            password: Some("p".into()),
            ..Config::default()
        };
        let fix = fix_for(&login(ErrorKind::TokenInvalid, "r"), &cfg, None);
        assert!(fix.contains("unset the password"), "{fix}");
        // With a token, the error's own hint.
        let e = login(ErrorKind::TokenInvalid, "r");
        let fix = fix_for(&e, &Config::default(), None);
        let Error::Login(l) = &e else { unreachable!() };
        assert_eq!(Some(fix), l.hint());
        // A refusal of the same token names the refused login's user.
        let refused = Error::TokenRefused(crate::error::TokenRefusedError {
            login: LoginError {
                kind: ErrorKind::TokenInvalid,
                server_message: "m".into(),
                sqlstate: "28000".into(),
                user: "refused-user".into(),
            },
            source_name: "s".into(),
            expires_in_secs: None,
            exp: None,
        });
        assert!(fix_for(&refused, &cfg, None).contains("\"refused-user\""));
    }

    #[test]
    fn network_and_tls_failures_point_at_their_checks() {
        let cfg = Config::default();
        let tls = Error::Tls {
            endpoint: "e".into(),
            cause: "c".into(),
        };
        assert!(fix_for(&tls, &cfg, None).contains("tls check"));
        let net = Error::Network {
            endpoint: "e".into(),
            cause: "c".into(),
        };
        assert!(fix_for(&net, &cfg, None).contains("dns and tcp"));
    }
}
