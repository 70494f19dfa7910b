//! Check 3: the token's claims (read, not verified: the server verifies the token)
//! against the scope and the server's cloud, its lifetime and its size.

use std::{
    collections::HashMap,
    time::{SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

use super::report::{Check, CheckName};
use crate::config::Config;
use entra_pg_token::{
    cloud::{ScopeFrom, scope_for},
    token::Token,
    token::claims::claims_of,
};

/// The largest token released PgBouncer versions accept as a password.
pub(crate) const PGBOUNCER_MAX_PASSWORD: usize = 2048;

/// PgBouncer's port (Azure's built-in PgBouncer listens on it).
pub(crate) const PGBOUNCER_PORT: u16 = 6432;

/// The claims the doctor reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct Claims {
    pub(crate) aud: Option<String>,
    pub(crate) tid: Option<String>,
    pub(crate) oid: Option<String>,
    pub(crate) appid: Option<String>,
    pub(crate) idtyp: Option<String>,
    pub(crate) xms_mirid: Option<String>,
    pub(crate) upn: Option<String>,
    pub(crate) iat: Option<u64>,
    pub(crate) exp: Option<u64>,
}

impl Claims {
    fn of(token: &str) -> Option<Self> {
        let v = claims_of(token)?;
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let n = |k: &str| v.get(k).and_then(Value::as_u64);
        Some(Self {
            aud: s("aud"),
            tid: s("tid"),
            oid: s("oid"),
            appid: s("appid").or_else(|| s("azp")),
            idtyp: s("idtyp"),
            xms_mirid: s("xms_mirid"),
            upn: s("upn")
                .or_else(|| s("preferred_username"))
                .or_else(|| s("unique_name")),
            iat: n("iat"),
            exp: n("exp"),
        })
    }

    /// An application's token (a managed identity, a service principal), not a user's:
    /// `idtyp` says so, or, without it, no user name and an application id.
    pub(crate) fn is_app(&self) -> bool {
        match self.idtyp.as_deref() {
            Some(t) => t.eq_ignore_ascii_case("app"),
            None => self.upn.is_none() && self.appid.is_some(),
        }
    }
}

/// Reads `token` for a server at `host:port`, asked for `scope`.
pub(crate) fn check(
    token: &Token,
    cfg: &Config,
    env: &HashMap<String, String>,
    scope: &str,
    port: u16,
) -> (Check, Option<Claims>) {
    let secret = token.secret();
    let Some(claims) = Claims::of(secret) else {
        return (
            Check::failed(
                CheckName::Token,
                format!("the token is not a JWT ({} bytes)", secret.len()),
                "the credential gave something that is not an Entra access token: check the token source",
            ),
            None,
        );
    };
    let mut check = Check::new(CheckName::Token, "");
    let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".to_owned());
    check.fact("aud", show(&claims.aud));
    check.fact("tid", show(&claims.tid));
    check.fact("oid", show(&claims.oid));
    check.fact("appid", show(&claims.appid));
    check.fact(
        "idtyp",
        match &claims.idtyp {
            Some(t) => t.clone(),
            None if claims.is_app() => "(none; an application's, by its claims)".to_owned(),
            None => "(none; a user's, by its claims)".to_owned(),
        },
    );
    check.fact("xms_mirid", show(&claims.xms_mirid));
    check.fact("upn", show(&claims.upn));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if let (Some(iat), Some(exp)) = (claims.iat, claims.exp) {
        check.fact("lifetime", format!("{} s", exp.saturating_sub(iat)));
    }
    let expires_in = claims.exp.map(|exp| exp as i64 - now as i64);
    if let Some(s) = expires_in {
        check.fact("expires in", format!("{s} s (by this machine's clock)"));
    }
    check.fact("size", format!("{} bytes", secret.len()));
    check.found = format!(
        "{} token for {}, {} bytes, expires in {}",
        if claims.is_app() {
            "an application's"
        } else {
            "a user's"
        },
        show(&claims.aud),
        secret.len(),
        expires_in.map_or("(no exp)".to_owned(), |s| format!("{s} s")),
    );

    let aud = claims.aud.clone().unwrap_or_default();
    let host = cfg.first_host().to_owned();
    let (server_scope, from) = scope_for(None, &host);
    if !same_resource(&aud, scope) {
        check.fail(
            format!("the token's audience is {aud:?}, not the resource asked for ({scope})"),
            "the identity endpoint answered for another resource: check the scope (AZURE_POSTGRESQL_SCOPE)",
        );
    } else if !same_resource(&aud, &server_scope) {
        let found = format!(
            "the token is for {aud:?}, but the server {host} expects {:?}",
            resource(&server_scope)
        );
        let fix = format!(
            "request tokens for the scope {server_scope}: unset AZURE_POSTGRESQL_SCOPE (the scope is read from the host name), or set it to {server_scope}"
        );
        match from {
            ScopeFrom::HostName(_) => check.fail(found, fix),
            // A custom name may front a sovereign cloud's server: only a warning.
            _ => {
                check.warn(format!("{found}, if it is in the public cloud"));
                check.fix = Some(fix);
            }
        }
    }
    if let Some(s) = expires_in
        && s <= 0
    {
        check.fail(
            format!("the token expired {} s ago by this machine's clock", -s),
            "check this machine's clock (`date -u`) and the identity endpoint",
        );
    }
    if port == PGBOUNCER_PORT && secret.len() > PGBOUNCER_MAX_PASSWORD {
        check.warn(format!(
            "the token is {} bytes and the port is {PGBOUNCER_PORT} (PgBouncer): released PgBouncer versions accept at most {PGBOUNCER_MAX_PASSWORD} bytes",
            secret.len()
        ));
        check.fix.get_or_insert_with(|| {
            "connect to the server's own port, 5432, or make the token smaller (an identity in fewer groups: group claims make it long)".to_owned()
        });
    }
    if let Some(expected) = expected_client_id(cfg, env)
        && let Some(appid) = &claims.appid
        && !appid.eq_ignore_ascii_case(&expected)
    {
        check.warn(format!(
            "the token is for client id {appid}, but the configuration names {expected}: another identity answered"
        ));
    }
    (check, Some(claims))
}

/// The client id the configuration names: a user-assigned managed identity, or a
/// service principal.
fn expected_client_id(cfg: &Config, env: &HashMap<String, String>) -> Option<String> {
    let get = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
    cfg.client_id
        .clone()
        .or_else(|| {
            get("AZURE_POSTGRESQL_CLIENTSECRET").and_then(|_| get("AZURE_POSTGRESQL_CLIENTID"))
        })
        .or_else(|| get("AZURE_CLIENT_ID"))
}

/// The resource a scope names (`https://x/.default` → `https://x`).
fn resource(scope: &str) -> &str {
    scope.trim_end_matches("/.default").trim_end_matches('/')
}

fn same_resource(aud: &str, scope: &str) -> bool {
    aud.trim_end_matches('/')
        .eq_ignore_ascii_case(resource(scope))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use base64::Engine;

    use super::*;
    use crate::doctor::report::Verdict;

    fn jwt(claims: &str) -> Token {
        let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        Token::expiring_in(
            format!(
                "{}.{}.sig",
                e.encode(r#"{"alg":"RS256"}"#),
                e.encode(claims)
            ),
            Duration::from_secs(3600),
        )
    }

    fn cfg(host: &str) -> Config {
        Config {
            host: Some(host.to_owned()),
            ..Config::default()
        }
    }

    const AUD: &str = "https://ossrdbms-aad.database.windows.net";
    const SCOPE: &str = "https://ossrdbms-aad.database.windows.net/.default";
    const HOST: &str = "db.postgres.database.azure.com";

    fn claims_with(extra: &str) -> String {
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600;
        format!(r#"{{"aud":"{AUD}","oid":"o","appid":"a","idtyp":"app","exp":{exp}{extra}}}"#)
    }

    #[test]
    fn a_token_too_long_for_pgbouncer_is_a_warning_on_6432_only() {
        let groups = format!(r#","groups":["{}"]"#, "g".repeat(2100));
        let token = jwt(&claims_with(&groups));
        assert!(token.secret().len() > PGBOUNCER_MAX_PASSWORD);
        let env = HashMap::new();
        let (check, _) = check(&token, &cfg(HOST), &env, SCOPE, PGBOUNCER_PORT);
        assert_eq!(check.verdict, Verdict::Warning, "{check:?}");
        assert!(check.warnings[0].contains("2048"), "{check:?}");
        assert!(check.fix.as_deref().unwrap_or("").contains("5432"));
        let (check, _) = check_on(&token, 5432);
        assert_eq!(check.verdict, Verdict::Ok, "{check:?}");
        // A short token on 6432 is fine.
        let (check, _) = check_on(&jwt(&claims_with("")), PGBOUNCER_PORT);
        assert_eq!(check.verdict, Verdict::Ok, "{check:?}");
    }

    fn check_on(token: &Token, port: u16) -> (Check, Option<Claims>) {
        check(token, &cfg(HOST), &HashMap::new(), SCOPE, port)
    }

    #[test]
    fn a_token_for_another_cloud_than_the_host_names_fails() {
        let token = jwt(&claims_with(""));
        let host = "db.postgres.database.chinacloudapi.cn";
        let (check, _) = check(&token, &cfg(host), &HashMap::new(), SCOPE, 5432);
        assert_eq!(check.verdict, Verdict::Failed, "{check:?}");
        assert!(check.fix.unwrap().contains("chinacloudapi.cn/.default"));
    }

    #[test]
    fn an_expired_token_fails_and_a_stranger_client_id_warns() {
        let token = jwt(&format!(r#"{{"aud":"{AUD}","appid":"a","exp":1000}}"#));
        let (c, _) = check_on(&token, 5432);
        assert_eq!(c.verdict, Verdict::Failed, "{c:?}");
        assert!(c.found.contains("expired"));
        let mut config = cfg(HOST);
        config.client_id = Some("b".to_owned());
        let (c, _) = check(
            &jwt(&claims_with("")),
            &config,
            &HashMap::new(),
            SCOPE,
            5432,
        );
        assert_eq!(c.verdict, Verdict::Warning, "{c:?}");
        assert!(c.warnings[0].contains("client id a"), "{c:?}");
    }

    fn fact(check: &Check, name: &str) -> String {
        check
            .evidence
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.clone())
            .unwrap_or_default()
    }

    #[test]
    fn the_facts_say_the_claims_and_the_time_left() {
        let (c, _) = check_on(&jwt(&claims_with("")), 5432);
        assert_eq!(fact(&c, "idtyp"), "app");
        let left: i64 = fact(&c, "expires in")
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!((3590..=3600).contains(&left), "{left}");
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 60;
        let no_idtyp = |extra: &str| jwt(&format!(r#"{{"aud":"{AUD}","exp":{exp}{extra}}}"#));
        let (c, _) = check_on(&no_idtyp(r#","appid":"a""#), 5432);
        assert_eq!(fact(&c, "idtyp"), "(none; an application's, by its claims)");
        let (c, _) = check_on(&no_idtyp(r#","upn":"u@x""#), 5432);
        assert_eq!(fact(&c, "idtyp"), "(none; a user's, by its claims)");
        assert!(c.found.starts_with("a user's token"), "{}", c.found);
    }

    #[test]
    fn a_token_of_exactly_2048_bytes_passes_pgbouncer() {
        let short = jwt(&claims_with(r#","pad":"""#)).secret().len();
        // Each padding character adds 4/3 of a base64 character: find a padding that
        // makes the token exactly 2,048 bytes.
        let token = (0..2048)
            .map(|n| jwt(&claims_with(&format!(r#","pad":"{}""#, "x".repeat(n)))))
            .find(|t| t.secret().len() == PGBOUNCER_MAX_PASSWORD)
            .expect("a padding that gives 2,048 bytes");
        assert!(short < PGBOUNCER_MAX_PASSWORD);
        let (c, _) = check_on(&token, PGBOUNCER_PORT);
        assert_eq!(c.verdict, Verdict::Ok, "{c:?}");
    }

    #[test]
    fn an_empty_client_id_variable_names_no_identity() {
        let token = jwt(&claims_with(""));
        let empty = HashMap::from([("AZURE_CLIENT_ID".to_owned(), String::new())]);
        let (c, _) = check(&token, &cfg(HOST), &empty, SCOPE, 5432);
        assert_eq!(c.verdict, Verdict::Ok, "{c:?}");
        let other = HashMap::from([("AZURE_CLIENT_ID".to_owned(), "b".to_owned())]);
        let (c, _) = check(&token, &cfg(HOST), &other, SCOPE, 5432);
        assert_eq!(c.verdict, Verdict::Warning, "{c:?}");
    }

    #[test]
    fn an_application_is_told_from_a_user() {
        let app = Claims::of(jwt(&claims_with("")).secret()).unwrap();
        assert!(app.is_app());
        let user = Claims::of(jwt(r#"{"upn":"u@x","appid":"a"}"#).secret()).unwrap();
        assert!(!user.is_app());
        let mi = Claims::of(jwt(r#"{"appid":"a"}"#).secret()).unwrap();
        assert!(mi.is_app());
        assert!(Claims::of("not a jwt").is_none());
    }
}
