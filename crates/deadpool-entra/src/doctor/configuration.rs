//! Check 1: which variables were read and which ignored, the authentication method, and
//! the cloud and scope the host name gives.

use std::collections::HashMap;

use super::report::{Check, CheckName};
use crate::{
    config::AuthMethod,
    config::Config,
    config::{CONNECTION_STRING, OTHER_VARIABLES, VARIABLES, keys_set_by},
};
use entra_pg_token::cloud::{ScopeFrom, scope_for};

/// The environment as read, the configuration it gives (or why none), and the check.
pub(crate) fn check_env(env: &HashMap<String, String>) -> (Check, Option<Config>) {
    let set = |k: &str| env.get(k).is_some_and(|v| !v.is_empty());
    let mut check = Check::new(CheckName::Configuration, "");
    // The winner for each setting: the later single variable, then the connection
    // strings, which win over every single variable.
    let mut winner: HashMap<String, String> = HashMap::new();
    for (var, key) in VARIABLES {
        if set(var) {
            winner.insert(key.to_owned(), var.to_owned());
        }
    }
    for var in [CONNECTION_STRING, "DATABASE_URL"] {
        if let Some(v) = env.get(var).filter(|v| !v.trim().is_empty()) {
            for key in keys_set_by(var, v) {
                winner.insert(key, var.to_owned());
            }
        }
    }
    let mut read = Vec::new();
    let mut ignored = Vec::new();
    for (var, key) in VARIABLES {
        if !set(var) {
            continue;
        }
        match winner.get(key) {
            Some(w) if w == var => read.push(format!("{var} ({key})")),
            Some(w) => ignored.push(format!("{var} ({w} sets {key} and wins)")),
            None => {}
        }
    }
    for var in [CONNECTION_STRING, "DATABASE_URL"] {
        if set(var) {
            read.push(format!("{var} (a connection string)"));
        }
    }
    for (var, what) in OTHER_VARIABLES {
        if !set(var) {
            continue;
        }
        if var == "AZURE_POSTGRESQL_CLIENTID" && set("AZURE_POSTGRESQL_CLIENTSECRET") {
            read.push(format!(
                "{var} (the service principal's client id: AZURE_POSTGRESQL_CLIENTSECRET is set)"
            ));
        } else {
            read.push(format!("{var} ({what})"));
        }
    }
    let known: Vec<&str> = VARIABLES
        .iter()
        .map(|(v, _)| *v)
        .chain(OTHER_VARIABLES.iter().map(|(v, _)| *v))
        .chain([CONNECTION_STRING])
        .collect();
    let mut unknown: Vec<&String> = env
        .iter()
        .filter(|(k, v)| {
            !v.is_empty()
                && (k.starts_with("PG") || k.starts_with("AZURE_POSTGRESQL_"))
                && !known.contains(&k.as_str())
        })
        .map(|(k, _)| k)
        .collect();
    unknown.sort();
    for var in unknown {
        ignored.push(format!("{var} (not read by deadpool-entra)"));
    }
    check.fact("variables read", list(&read));
    check.fact("variables ignored", list(&ignored));

    let cfg = match Config::from_env_vars(env.clone()) {
        Ok(cfg) => cfg,
        Err(e) => {
            check.fail(
                format!("the configuration does not parse: {e}"),
                format!("fix {} ({})", e.field, e.reason),
            );
            return (check, None);
        }
    };
    describe(&mut check, &cfg, &winner);
    (check, Some(cfg))
}

/// The check of a configuration given in code (no variables to report).
pub(crate) fn check_config(cfg: &Config) -> Check {
    let mut check = Check::new(CheckName::Configuration, "");
    check.fact(
        "variables read",
        "none: the configuration was given in code",
    );
    describe(&mut check, cfg, &HashMap::new());
    check
}

/// The method, endpoint, cloud and scope; fails the check when no host is set.
/// `winner` names the variable that set each setting.
fn describe(check: &mut Check, cfg: &Config, winner: &HashMap<String, String>) {
    let host = cfg.first_host().to_owned();
    if host.is_empty() {
        check.fail(
            "no host configured",
            "set AZURE_POSTGRESQL_HOST (or PGHOST, or DATABASE_URL, or --url) to the server's name, <server>.postgres.database.azure.com",
        );
        return;
    }
    let method = method_text(cfg);
    check.fact("auth method", &method);
    if cfg.auth_method == AuthMethod::Auto && cfg.password.is_some() {
        let from = winner
            .get("password")
            .cloned()
            .unwrap_or_else(|| "the configuration".to_owned());
        check.warn(format!(
            "a password is set ({from}), so AZURE_AUTH_METHOD=auto logs in with that password, NOT with an Entra token"
        ));
        check.fix = Some(format!(
            "for Entra tokens, unset {from} (a left-over password?), or set AZURE_AUTH_METHOD=managed_identity; to use the password on purpose, set AZURE_AUTH_METHOD=password"
        ));
    }
    let (scope, from) = scope_for(cfg.scope.as_deref(), &host);
    let cloud = match from {
        ScopeFrom::Explicit => "configured (AZURE_POSTGRESQL_SCOPE or scope)".to_owned(),
        ScopeFrom::HostName(cloud) => format!("{cloud}, from the host name's suffix"),
        ScopeFrom::Default => "the public cloud's: the host name names no Azure cloud (a custom name, an address, a local server); set AZURE_POSTGRESQL_SCOPE for a sovereign cloud behind a custom name".to_owned(),
    };
    if !cfg.uses_password() {
        check.fact("scope", &scope);
        check.fact("scope from", &cloud);
    }
    let port = cfg.port_of(0);
    let user = cfg
        .user
        .clone()
        .unwrap_or_else(|| "(from the token)".to_owned());
    let db = cfg.dbname.clone().unwrap_or_else(|| user.clone());
    check.found = format!(
        "{method}; {host}:{port}, database {db}, user {user}, sslmode {}{}",
        cfg.ssl_mode.as_str(),
        if cfg.uses_password() {
            String::new()
        } else {
            format!("; scope {scope}")
        }
    );
}

fn method_text(cfg: &Config) -> String {
    match (cfg.auth_method, cfg.uses_password()) {
        (AuthMethod::Password, _) => "password (AZURE_AUTH_METHOD=password)".to_owned(),
        (AuthMethod::ManagedIdentity, _) => {
            "managed identity only (AZURE_AUTH_METHOD=managed_identity)".to_owned()
        }
        (AuthMethod::Auto, true) => "password (auto, because a password is set)".to_owned(),
        (AuthMethod::Auto, false) => "Entra token from the credential chain (auto)".to_owned(),
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "none".to_owned()
    } else {
        items.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::report::Verdict;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
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
    fn each_variable_is_read_or_ignored_with_the_reason() {
        let (check, cfg) = check_env(&env(&[
            ("PGHOST", "old.example.com"),
            ("AZURE_POSTGRESQL_HOST", "db.postgres.database.azure.com"),
            ("PGUSER", "pguser"),
            (
                "DATABASE_URL",
                "postgresql://urluser@db.postgres.database.azure.com/app",
            ),
            ("AZURE_POSTGRESQL_CLIENTID", "cid"),
            ("AZURE_POSTGRESQL_CLIENTSECRET", "secret"),
            ("PGSSLCERT", "/x"),
            ("PGPORT", ""),
        ]));
        assert_eq!(check.verdict, Verdict::Ok, "{check:?}");
        let read = fact(&check, "variables read");
        let ignored = fact(&check, "variables ignored");
        assert!(
            read.contains("DATABASE_URL (a connection string)"),
            "{read}"
        );
        assert!(
            ignored.contains("AZURE_POSTGRESQL_HOST (DATABASE_URL sets host and wins)"),
            "{ignored}"
        );
        assert!(
            read.contains("AZURE_POSTGRESQL_CLIENTID (the service principal's client id"),
            "{read}"
        );
        assert!(
            ignored.contains("PGHOST (DATABASE_URL sets host and wins)"),
            "{ignored}"
        );
        assert!(
            ignored.contains("PGUSER (DATABASE_URL sets user and wins)"),
            "{ignored}"
        );
        assert!(
            ignored.contains("PGSSLCERT (not read by deadpool-entra)"),
            "{ignored}"
        );
        assert!(
            !read.contains("PGPORT") && !ignored.contains("PGPORT"),
            "empty is unset"
        );
        assert!(!read.contains("PGHOST"), "{read}");
        assert_eq!(cfg.unwrap().user.as_deref(), Some("urluser"));
        assert!(
            check
                .found
                .contains("scope https://ossrdbms-aad.database.windows.net/.default")
        );
        assert!(fact(&check, "scope from").contains("Azure public cloud"));
        // Only the PG* and AZURE_POSTGRESQL_* variables are listed, set ones only; a
        // client id without a secret names a managed identity.
        let (check, _) = check_env(&env(&[
            ("AZURE_POSTGRESQL_HOST", "db.postgres.database.azure.com"),
            ("AZURE_POSTGRESQL_CLIENTID", "cid"),
            ("HOME", "/root"),
            ("PGSSLKEY", ""),
        ]));
        let read = fact(&check, "variables read");
        assert!(
            read.contains("AZURE_POSTGRESQL_CLIENTID (a user-assigned managed identity"),
            "{read}"
        );
        assert_eq!(fact(&check, "variables ignored"), "none");
        // Without the URL, the later single variable wins.
        let (check, _) = check_env(&env(&[
            ("PGHOST", "old.example.com"),
            ("AZURE_POSTGRESQL_HOST", "db.postgres.database.azure.com"),
        ]));
        assert!(fact(&check, "variables read").contains("AZURE_POSTGRESQL_HOST (host)"));
        assert!(
            fact(&check, "variables ignored")
                .contains("PGHOST (AZURE_POSTGRESQL_HOST sets host and wins)")
        );
    }

    #[test]
    fn nothing_set_reads_none_and_fails_for_want_of_a_host() {
        let (check, _) = check_env(&env(&[]));
        assert_eq!(fact(&check, "variables read"), "none");
        assert_eq!(check.verdict, Verdict::Failed);
        assert!(check.fix.unwrap().contains("AZURE_POSTGRESQL_HOST"));
    }

    #[test]
    fn a_password_in_auto_mode_is_said_loudly_and_on_purpose_is_not() {
        let base = [
            ("AZURE_POSTGRESQL_HOST", "db.postgres.database.azure.com"),
            ("PGUSER", "u"),
        ];
        let (check, _) = check_env(&env(&[base[0], base[1], ("PGPASSWORD", "p")]));
        assert_eq!(check.verdict, Verdict::Warning);
        assert!(check.warnings[0].contains("(PGPASSWORD)"), "{check:?}");
        assert!(check.found.starts_with("password (auto"), "{}", check.found);
        assert!(!check.found.contains("scope"), "no scope in password mode");
        let (check, _) = check_env(&env(&[
            base[0],
            base[1],
            ("PGPASSWORD", "p"),
            ("AZURE_AUTH_METHOD", "password"),
        ]));
        assert_eq!(check.verdict, Verdict::Ok, "{check:?}");
        assert!(
            check
                .found
                .starts_with("password (AZURE_AUTH_METHOD=password)")
        );
        let (check, _) = check_env(&env(&[base[0], ("AZURE_AUTH_METHOD", "managed_identity")]));
        assert!(
            check.found.starts_with("managed identity only"),
            "{}",
            check.found
        );
    }

    #[test]
    fn a_configuration_that_does_not_parse_fails_with_its_field() {
        let (check, cfg) = check_env(&env(&[("AZURE_AUTH_METHOD", "magic")]));
        assert!(cfg.is_none());
        assert_eq!(check.verdict, Verdict::Failed);
        assert!(check.fix.unwrap().starts_with("fix AZURE_AUTH_METHOD"));
    }

    #[test]
    fn a_configuration_given_in_code_is_described() {
        let cfg: Config = "host=db.postgres.database.chinacloudapi.cn user=u"
            .parse()
            .unwrap();
        let check = check_config(&cfg);
        assert_eq!(check.verdict, Verdict::Ok, "{check:?}");
        assert!(fact(&check, "scope from").contains("21Vianet"));
        assert!(check.found.contains("user u"));
    }
}
