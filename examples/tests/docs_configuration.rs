//! Keeps docs/configuration.md true: its JSON example must deserialize into
//! `deadpool_entra::Config` with the values the page shows, and its URL must parse.

use std::time::Duration;

use deadpool_entra::{AuthMethod, Config, SslMode};

const PAGE: &str = include_str!("../../docs/configuration.md");

fn block(lang: &str) -> &'static str {
    let start = PAGE
        .find(&format!("```{lang}\n"))
        .unwrap_or_else(|| panic!("a ```{lang} block in docs/configuration.md"))
        + lang.len()
        + 4;
    let len = PAGE[start..].find("```").expect("closing fence");
    &PAGE[start..start + len]
}

#[test]
fn the_json_example_deserializes_into_config() {
    let cfg: Config = serde_json::from_str(block("json")).expect("the JSON example parses");
    assert_eq!(
        cfg.host.as_deref(),
        Some("my-server.postgres.database.azure.com")
    );
    assert_eq!(cfg.dbname.as_deref(), Some("app"));
    assert_eq!(cfg.user.as_deref(), Some("my-app-identity"));
    assert_eq!(cfg.auth_method, AuthMethod::ManagedIdentity);
    assert_eq!(cfg.ssl_mode, SslMode::VerifyFull);
    assert_eq!(cfg.max_size, Some(16));
    assert_eq!(cfg.wait_timeout, Some(Duration::from_secs(5)));
    assert_eq!(cfg.retire.token_margin, Duration::from_secs(120));
    assert_eq!(cfg.retire.max_lifetime, Some(Duration::from_secs(20 * 60)));
    assert_eq!(cfg.refresh.max_backoff, Duration::from_secs(60));
    // Fields the example leaves out keep their documented defaults.
    assert!(cfg.retire.by_token_age);
    assert_eq!(cfg.retire.token_spread, Duration::from_secs(300));
    assert_eq!(cfg.refresh.refresh_before_expiry, Duration::from_secs(270));
    assert_eq!(cfg.create_timeout, Some(Duration::from_secs(10)));
}

#[test]
fn the_url_example_parses() {
    let cfg: Config = block("text")
        .trim()
        .parse()
        .expect("the URL example parses");
    assert_eq!(cfg.user.as_deref(), Some("me@contoso.com"));
    assert_eq!(cfg.dbname.as_deref(), Some("app"));
    assert_eq!(cfg.ssl_mode, SslMode::VerifyFull);
}

#[test]
fn the_environment_example_reads_as_documented() {
    let vars = block("sh").lines().filter_map(|line| {
        let line = line.split('#').next()?.trim();
        let (k, v) = line.split_once('=')?;
        Some((k.to_string(), v.to_string()))
    });
    let cfg = Config::from_env_vars(vars).expect("the environment example is valid");
    assert_eq!(
        cfg.host.as_deref(),
        Some("my-server.postgres.database.azure.com")
    );
    assert_eq!(cfg.user.as_deref(), Some("my-app-identity"));
    assert_eq!(
        cfg.client_id.as_deref(),
        Some("00000000-0000-0000-0000-000000000000")
    );
    assert_eq!(cfg.auth_method, AuthMethod::Auto);
    assert_eq!(cfg.ssl_mode, SslMode::VerifyFull);
}
