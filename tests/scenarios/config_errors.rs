//! Bad configurations end to end: each fails with an error that names the cause and the fix.

use std::time::Duration;

use deadpool_entra::{Error, ErrorKind, SslMode};
use deadpool_entra_tests::child::run_child;
use deadpool_entra_tests::{Explain, builder_for, cli_credential, note_error, start_emulator};

/// Builds the pool and checks out one connection; the first error, as text too.
async fn first_error(builder: deadpool_entra::PoolBuilder) -> (Error, String) {
    let err = match builder.build().await {
        Err(e) => e,
        Ok(pool) => {
            let r = pool.get().await;
            pool.close();
            match r {
                Ok(_) => panic!("the misconfigured pool worked"),
                Err(e) => e,
            }
        }
    };
    let text = note_error(&err);
    (err, text)
}

/// A free loopback port with nothing listening on it.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configurations_fail_with_the_cause_and_the_fix() {
    let emu = start_emulator(Duration::from_secs(3600)).await;
    let explain = Explain::new("bad_configuration", &emu);
    let base = || {
        builder_for(&emu, cli_credential(&emu))
            .max_size(1)
            .wait_timeout(Some(Duration::from_secs(5)))
            .create_timeout(Some(Duration::from_secs(5)))
    };

    // Wrong host: a loopback address nobody listens on (no DNS, no traffic off the host).
    let (err, text) = first_error(base().host("127.0.0.2").port(closed_port())).await;
    explain.note(format!("wrong host: {text}"));
    assert!(matches!(err, Error::Network { .. }), "wrong host: {text}");
    assert!(text.contains("127.0.0.2"), "names the host: {text}");

    // Wrong port.
    let port = closed_port();
    let (err, text) = first_error(base().port(port)).await;
    explain.note(format!("wrong port: {text}"));
    assert!(matches!(err, Error::Network { .. }), "wrong port: {text}");
    assert!(text.contains(&port.to_string()), "names the port: {text}");

    // Unknown role: a user with no Entra principal behind it.
    let (err, text) = first_error(base().user("no_such_role")).await;
    explain.note(format!("unknown role: {text}"));
    match &err {
        Error::Login(l) => assert_eq!(l.kind(), ErrorKind::RoleMissing, "{text}"),
        other => panic!("unknown role: expected a login error, got {other:?}"),
    }
    assert!(
        text.contains("pgaadauth_create_principal"),
        "unknown role hint: {text}"
    );

    // A role that exists but is a managed identity's, with a user's token (`az login`):
    // Azure's type refusal, its own kind, no advice to create the role.
    let mi = emu.default_identity().name.clone();
    let (err, text) = first_error(base().user(&mi)).await;
    explain.note(format!("a user's token for an identity's role: {text}"));
    assert_eq!(err.kind(), ErrorKind::RoleTypeMismatch, "{text}");
    assert!(
        text.contains("Service principals cannot generate AAD_AUTH_TOKENTYPE_APP_USER"),
        "{text}"
    );
    assert!(text.contains("the token is a user's"), "{text}");
    assert!(
        !text.contains(&format!("pgaadauth_create_principal('{mi}'")),
        "{text}"
    );

    // Wrong scope: a token for Azure Resource Manager, not for the database.
    let before = emu.counters();
    let (err, text) = first_error(base().scope("https://management.azure.com/.default")).await;
    explain.note(format!("wrong scope: {text}"));
    match &err {
        Error::Login(l) => assert_eq!(l.kind(), ErrorKind::TokenWrongAudience, "{text}"),
        other => panic!("wrong scope: expected a login error, got {other:?}"),
    }
    assert!(
        text.contains("ossrdbms-aad.database.windows.net"),
        "says which scope to use: {text}"
    );
    assert!(emu.counters().logins_refused_audience > before.logins_refused_audience);

    // sslmode=disable with token auth: refused before any token leaves the process.
    let before = emu.counters();
    let (err, text) = first_error(base().ssl_mode(SslMode::Disable)).await;
    let after = emu.counters();
    explain.note(format!("sslmode=disable: {text}"));
    assert!(matches!(err, Error::Config(_)), "sslmode=disable: {text}");
    assert!(
        text.to_lowercase().contains("ssl") || text.to_lowercase().contains("tls"),
        "{text}"
    );
    assert_eq!(
        after.identity_requests, before.identity_requests,
        "no token was even requested"
    );
    assert_eq!(
        after.logins_refused_plaintext, before.logins_refused_plaintext,
        "no plaintext login reached the server"
    );
    assert_eq!(after.logins_accepted, before.logins_accepted);

    // Azure CLI logged out: the error says to run `az login`.
    emu.faults().set_cli_logged_out(true);
    let (err, text) = first_error(base()).await;
    emu.faults().set_cli_logged_out(false);
    explain.note(format!("az logged out: {text}"));
    assert!(matches!(err, Error::Token(_)), "az logged out: {text}");
    assert!(text.contains("az login"), "says to run az login: {text}");

    assert_eq!(emu.counters().expired_token_logins, 0);
    // And the same pool configuration works once nothing is wrong.
    let pool = base().build().await.expect("the good configuration works");
    deadpool_entra_tests::one_request(&pool)
        .await
        .expect("and serves");
    pool.close();
}

/// A wrong `IDENTITY_HEADER` (App Service managed identity): the error says what to check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_managed_identity_header_says_what_to_check() {
    let emu = start_emulator(Duration::from_secs(3600)).await;
    let explain = Explain::new("wrong_identity_header", &emu);
    let mut env: Vec<(String, String)> = emu
        .env()
        .into_iter()
        .filter(|(k, _)| k != "IDENTITY_HEADER")
        .collect();
    env.push(("IDENTITY_HEADER".into(), "not-the-header".into()));
    env.push(("AZURE_AUTH_METHOD".into(), "managed_identity".into()));
    let outcome = run_child("auth_methods::app_from_env", &env, Duration::from_secs(90)).await;
    explain.note(format!("app: {outcome:?}"));
    assert!(outcome.success, "{}", outcome.stderr);
    let err = outcome.last("BUILD_ERROR").expect("the pool did not build");
    let text = err["display"].as_str().unwrap_or_default();
    assert_eq!(err["kind"], "token", "{err}");
    assert!(
        text.contains("IDENTITY_HEADER"),
        "names what to check: {text}"
    );
    let c = emu.counters();
    assert_eq!(c.tokens_issued_app_service, 0);
    assert!(c.identity_requests_refused >= 1);
    assert_eq!(c.logins_accepted, 0);
}
