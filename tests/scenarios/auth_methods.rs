//! The pool built from the environment, as a deployed application builds it, with each
//! `AZURE_AUTH_METHOD`; and the drop-in promise (a `deadpool-postgres` data layer, unchanged).
//!
//! Managed identity and the Azure CLI read the process environment (see
//! `support/child.rs`), so those scenarios run the application, `app_from_env` below, in a
//! child process with the emulator's environment; the parent keeps the emulator.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_entra::{Config, Error, Pool};
use deadpool_entra_tests::child::{emit, is_child, run_child};
use deadpool_entra_tests::{Explain, init_tracing, note_error, record_secret, start_emulator};
use serde_json::json;

use crate::data_layer;

const APP: &str = "auth_methods::app_from_env";

fn kind_of(e: &Error) -> &'static str {
    match e {
        Error::Config(_) => "config",
        Error::Token(_) => "token",
        Error::Login(_) => "login",
        Error::Tls { .. } => "tls",
        Error::Network { .. } => "network",
        Error::Timeout(_) => "timeout",
        _ => "other",
    }
}

/// JWT-shaped text (`eyJ...header.eyJ...payload`) anywhere in this process's captured logs
/// and error texts: the child cannot see its tokens, so it looks for their shape.
fn jwt_shaped_in_capture() -> bool {
    deadpool_entra_tests::secrets::captured_contains(".eyJ")
}

/// The application: `Pool::from_env()`, then the unchanged `deadpool-postgres` data layer
/// under light concurrent load for `DPE_APP_RUN_SECS` seconds. Reports over stdout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of the from-environment scenarios; does nothing unless one of them starts it"]
async fn app_from_env() {
    if !is_child(APP) {
        return;
    }
    init_tracing();
    let run_for = Duration::from_secs(
        std::env::var("DPE_APP_RUN_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2),
    );
    let pool = match Pool::from_env().await {
        Ok(p) => p,
        Err(e) => {
            let display = note_error(&e);
            emit(
                "BUILD_ERROR",
                &json!({
                    "kind": kind_of(&e), "display": display, "debug": format!("{e:?}"),
                    "jwt_shaped_in_logs": jwt_shaped_in_capture(),
                    // What the failed fetch's warning said of the (empty) cache.
                    "logged_no_valid_token": deadpool_entra_tests::secrets::captured_contains("no valid token is cached"),
                    "logged_serving_cached": deadpool_entra_tests::secrets::captured_contains("serving the cached token"),
                }),
            );
            return;
        }
    };
    let client = pool.get().await.expect("first checkout");
    data_layer::migrate(&client).await.expect("migrate");
    let user = data_layer::current_user(&client)
        .await
        .expect("current_user");
    drop(client);
    emit(
        "READY",
        &json!({"credential": pool.credential_name(), "current_user": user, "stats": pool.stats()}),
    );

    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let deadline = Instant::now() + run_for;
    let mut tasks = Vec::new();
    for t in 0..4 {
        let (pool, ok, failed, errors) = (pool.clone(), ok.clone(), failed.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            // Per process: a scenario may run the app twice on one database.
            let customer = format!("customer-{}-{t}", std::process::id());
            let mut expected = 0i64;
            let mut n = 0;
            while n < 100_000 {
                n += 1;
                let r: Result<(), String> = async {
                    let mut client = pool.get().await.map_err(|e| note_error(&e))?;
                    data_layer::place_order(&mut client, &customer, 5)
                        .await
                        .map_err(|e| note_error(&e))?;
                    expected += 5;
                    data_layer::abandoned_order(&mut client, &customer)
                        .await
                        .map_err(|e| note_error(&e))?;
                    let total = data_layer::total_for(&client, &customer)
                        .await
                        .map_err(|e| note_error(&e))?;
                    if total != expected {
                        return Err(format!("total {total} != {expected}"));
                    }
                    Ok(())
                }
                .await;
                match r {
                    Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        let mut errs = errors.lock().unwrap_or_else(|p| p.into_inner());
                        if errs.len() < 5 {
                            errs.push(e);
                        }
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
                if Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("app task");
    }
    let first_errors = errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
    emit(
        "DONE",
        &json!({
            "ok": ok.load(Ordering::Relaxed),
            "failed": failed.load(Ordering::Relaxed),
            "first_errors": first_errors,
            "credential": pool.credential_name(),
            "current_user": user,
            "stats": pool.stats(),
            "jwt_shaped_in_logs": jwt_shaped_in_capture(),
        }),
    );
    pool.close();
}

/// The emulator's environment (what `entra-emulator` prints) minus some variables.
fn env_without(emu: &entra_emulator::Emulator, drop: &[&str]) -> Vec<(String, String)> {
    emu.env()
        .into_iter()
        .filter(|(k, _)| !drop.contains(&k.as_str()))
        .collect()
}

fn check_done(done: &serde_json::Value) {
    assert_eq!(done["failed"], 0, "the app had failures: {done}");
    assert!(
        done["ok"].as_u64().unwrap_or(0) > 0,
        "the app did some work: {done}"
    );
    assert_eq!(
        done["jwt_shaped_in_logs"], false,
        "a token-shaped string reached the app's logs"
    );
}

/// A `deadpool-postgres` data layer (prepared statements, transactions, `GenericClient`)
/// runs unchanged against the pool built from the environment the emulator prints
/// (managed identity through `IDENTITY_ENDPOINT`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_in_data_layer_runs_unchanged_on_a_pool_from_the_environment() {
    let emu = start_emulator(Duration::from_secs(3600)).await;
    let explain = Explain::new("drop_in", &emu);
    let outcome = run_child(APP, &emu.env(), Duration::from_secs(90)).await;
    explain.note(format!("app: {outcome:?}"));
    assert!(outcome.success, "{}", outcome.stderr);
    assert!(
        outcome.last("BUILD_ERROR").is_none(),
        "{:?}",
        outcome.last("BUILD_ERROR")
    );
    let done = outcome.last("DONE").expect("the app reported");
    check_done(done);
    assert!(
        done["credential"]
            .as_str()
            .unwrap_or("")
            .contains("ManagedIdentity"),
        "{done}"
    );
    assert_eq!(done["current_user"], emu.default_identity().name.as_str());
    let c = emu.counters();
    assert!(c.tokens_issued_app_service >= 1);
    assert_eq!(c.tokens_issued_cli, 0);
    assert_eq!(c.expired_token_logins, 0);
}

/// `AZURE_AUTH_METHOD=password` logs in to a static-password role, no token involved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_auth_method_logs_in_to_a_static_password_role() {
    const ROLE: &str = "app_password_role";
    const PASSWORD: &str = "correct-horse-battery-staple-42";
    record_secret(PASSWORD);
    let emu = start_emulator(Duration::from_secs(3600)).await;
    let explain = Explain::new("password_auth_method", &emu);
    emu.add_password_role(ROLE, PASSWORD)
        .await
        .expect("password role");
    let mut vars = env_without(
        &emu,
        &[
            "IDENTITY_ENDPOINT",
            "IDENTITY_HEADER",
            "PGUSER",
            "AZURE_POSTGRESQL_USER",
        ],
    );
    vars.extend([
        ("AZURE_AUTH_METHOD".to_owned(), "password".to_owned()),
        ("PGUSER".to_owned(), ROLE.to_owned()),
        ("AZURE_POSTGRESQL_USER".to_owned(), ROLE.to_owned()),
        ("PGPASSWORD".to_owned(), PASSWORD.to_owned()),
        ("AZURE_POSTGRESQL_PASSWORD".to_owned(), PASSWORD.to_owned()),
    ]);
    let config = Config::from_env_vars(vars).expect("config from the environment");
    let pool = config.build_pool().await.expect("pool builds");
    explain.pool(&pool);
    let client = pool.get().await.expect("checkout");
    assert_eq!(
        data_layer::current_user(&client).await.expect("query"),
        ROLE
    );
    drop(client);
    let c = emu.counters();
    assert_eq!(
        c.identity_requests, 0,
        "password mode asks Entra for nothing"
    );
    assert!(c.logins_accepted >= 1);
    assert_eq!(pool.stats().token.identity_calls, 0);
    let debug = format!("{config:?} {:?}", pool.stats());
    assert!(
        !debug.contains(PASSWORD),
        "the password shows in Debug output"
    );

    // A wrong password gives the password error, not a token error.
    let mut vars = env_without(
        &emu,
        &[
            "IDENTITY_ENDPOINT",
            "IDENTITY_HEADER",
            "PGUSER",
            "AZURE_POSTGRESQL_USER",
        ],
    );
    vars.extend([
        ("AZURE_AUTH_METHOD".to_owned(), "password".to_owned()),
        ("PGUSER".to_owned(), ROLE.to_owned()),
        ("AZURE_POSTGRESQL_USER".to_owned(), ROLE.to_owned()),
        ("PGPASSWORD".to_owned(), "wrong-password".to_owned()),
        (
            "AZURE_POSTGRESQL_PASSWORD".to_owned(),
            "wrong-password".to_owned(),
        ),
    ]);
    let bad = Config::from_env_vars(vars)
        .expect("config")
        .build_pool()
        .await;
    let err = match bad {
        Err(e) => e,
        Ok(p) => p.get().await.expect_err("wrong password"),
    };
    let text = note_error(&err);
    assert!(
        matches!(&err, Error::Login(l) if l.kind() == deadpool_entra::ErrorKind::BadPassword),
        "{text}"
    );
    assert!(emu.counters().logins_refused_bad_password >= 1);
    pool.close();
}

/// `AZURE_AUTH_METHOD=auto` with `IDENTITY_ENDPOINT` set picks the managed identity.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_auth_method_picks_managed_identity_when_identity_endpoint_is_set() {
    let emu = start_emulator(Duration::from_secs(3600)).await;
    let explain = Explain::new("auto_managed_identity", &emu);
    let mut env = emu.env();
    env.push(("AZURE_AUTH_METHOD".into(), "auto".into()));
    let outcome = run_child(APP, &env, Duration::from_secs(90)).await;
    explain.note(format!("app: {outcome:?}"));
    assert!(outcome.success, "{}", outcome.stderr);
    let done = outcome.last("DONE").expect("the app reported");
    check_done(done);
    assert!(
        done["credential"]
            .as_str()
            .unwrap_or("")
            .contains("ManagedIdentity"),
        "{done}"
    );
    let c = emu.counters();
    assert!(c.tokens_issued_app_service >= 1);
    assert_eq!(c.tokens_issued_cli, 0, "the Azure CLI was not asked");
}

/// `auto` without `IDENTITY_ENDPOINT` picks the Azure CLI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_auth_method_picks_the_azure_cli_without_identity_endpoint() {
    let emu = start_emulator(Duration::from_secs(3600)).await;
    let explain = Explain::new("auto_azure_cli", &emu);
    // The emulator's environment names the managed identity's role; the CLI user is
    // another principal, so the user is set to it.
    let mut env = env_without(
        &emu,
        &[
            "IDENTITY_ENDPOINT",
            "IDENTITY_HEADER",
            "PGUSER",
            "AZURE_POSTGRESQL_USER",
        ],
    );
    env.push(("AZURE_AUTH_METHOD".into(), "auto".into()));
    env.push((
        "AZURE_POSTGRESQL_USER".into(),
        emu.default_user().to_owned(),
    ));
    let outcome = run_child(APP, &env, Duration::from_secs(90)).await;
    explain.note(format!("app: {outcome:?}"));
    assert!(outcome.success, "{}", outcome.stderr);
    let done = outcome.last("DONE").expect("the app reported");
    check_done(done);
    assert!(
        done["credential"]
            .as_str()
            .unwrap_or("")
            .contains("AzureCli"),
        "{done}"
    );
    assert_eq!(done["current_user"], emu.default_user());
    let c = emu.counters();
    assert!(c.tokens_issued_cli >= 1);
    assert_eq!(
        c.tokens_issued_app_service, 0,
        "no managed identity was asked"
    );
}

/// A user-assigned identity selected by client id logs in as its own role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_assigned_identity_by_client_id_gets_its_own_role() {
    let emu = start_emulator(Duration::from_secs(3600)).await;
    let explain = Explain::new("user_assigned_identity", &emu);
    let uai = emu
        .add_identity(entra_emulator::IdentitySpec {
            name: "orders-api-identity".into(),
            user_assigned: true,
            client_id: None,
            object_id: None,
        })
        .await
        .expect("user-assigned identity");
    let mut env = env_without(&emu, &["PGUSER", "AZURE_POSTGRESQL_USER"]);
    env.push(("AZURE_AUTH_METHOD".into(), "managed_identity".into()));
    env.push(("AZURE_POSTGRESQL_CLIENTID".into(), uai.client_id.clone()));
    env.push(("AZURE_POSTGRESQL_USER".into(), uai.name.clone()));
    let outcome = run_child(APP, &env, Duration::from_secs(90)).await;
    explain.note(format!("app: {outcome:?}"));
    assert!(outcome.success, "{}", outcome.stderr);
    let done = outcome.last("DONE").expect("the app reported");
    check_done(done);
    assert_eq!(done["current_user"], uai.name.as_str(), "{done}");
    assert_ne!(uai.name, emu.default_identity().name);
}

/// A managed identity the environment names (`AZURE_POSTGRESQL_CLIENTID`) stops the
/// chain, as a configured service principal does: when its endpoint refuses it (here an
/// identity the endpoint does not know, as after a deployment assigned another one), the
/// pool does not log in as whoever `az` is signed in as, with another principal's rights.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_named_managed_identity_that_fails_is_not_replaced_by_the_azure_cli() {
    let emu = start_emulator(Duration::from_secs(3600)).await;
    let explain = Explain::new("named_identity_stops_the_chain", &emu);
    let mut env = env_without(&emu, &["PGUSER", "AZURE_POSTGRESQL_USER"]);
    env.push(("AZURE_AUTH_METHOD".into(), "auto".into()));
    env.push((
        "AZURE_POSTGRESQL_CLIENTID".into(),
        "0badc0de-0000-4000-8000-000000000000".into(),
    ));
    let (err, display) = failed_build(&explain, "unknown identity", &env).await;
    assert!(
        display.contains("the chain stops at the identity the environment configures"),
        "{display} {err}"
    );
    assert!(display.contains("ManagedIdentityCredential"), "{display}");
    assert!(display.contains("assigned to this resource"), "{display}");
    assert_eq!(emu.counters().tokens_issued_cli, 0, "az was not asked");
}

/// A user token from the Azure CLI, with no user configured: the user name is derived
/// from the token (its `upn`), as Microsoft's own client libraries do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_cli_user_is_derived_from_the_token_when_none_is_configured() {
    let emu = start_emulator(Duration::from_secs(3600)).await;
    let explain = Explain::new("user_from_token", &emu);
    let mut env = env_without(
        &emu,
        &[
            "IDENTITY_ENDPOINT",
            "IDENTITY_HEADER",
            "PGUSER",
            "AZURE_POSTGRESQL_USER",
        ],
    );
    env.push(("AZURE_AUTH_METHOD".into(), "auto".into()));
    let outcome = run_child(APP, &env, Duration::from_secs(90)).await;
    explain.note(format!("app: {outcome:?}"));
    assert!(outcome.success, "{}", outcome.stderr);
    let done = outcome.last("DONE").expect("the app reported");
    check_done(done);
    assert_eq!(done["current_user"], emu.default_user(), "{done}");
}

/// The variables of `env` with `key` set to `value`.
fn with_var(mut env: Vec<(String, String)>, key: &str, value: &str) -> Vec<(String, String)> {
    env.retain(|(k, _)| k != key);
    env.push((key.to_owned(), value.to_owned()));
    env
}

/// `env` with a `PATH` that holds no `az` or `azd`: no CLI link can answer.
fn without_cli(env: Vec<(String, String)>) -> Vec<(String, String)> {
    with_var(env, "PATH", "/usr/local/bin:/usr/bin:/bin")
}

/// Runs the app with `env`, expecting its pool build to fail; returns the error it
/// reported and its `Display` text.
async fn failed_build(
    explain: &Explain<'_>,
    what: &str,
    env: &[(String, String)],
) -> (serde_json::Value, String) {
    let outcome = run_child(APP, env, Duration::from_secs(90)).await;
    explain.note(format!("{what}: {outcome:?}"));
    let err = outcome
        .last("BUILD_ERROR")
        .unwrap_or_else(|| panic!("{what}: the build did not fail: {outcome:?}"))
        .clone();
    let display = err["display"].as_str().unwrap_or_default().to_owned();
    (err, display)
}

/// The app of `outcome` logged in through `credential` as `user`, with tokens from the
/// Entra authority only.
fn check_authority_login(
    emu: &entra_emulator::Emulator,
    outcome: &deadpool_entra_tests::child::ChildOutcome,
    credential: &str,
    user: &str,
) {
    assert!(outcome.success, "{}", outcome.stderr);
    let done = outcome.last("DONE").expect("the app reported");
    check_done(done);
    assert_eq!(done["credential"], credential, "{done}");
    assert_eq!(done["current_user"], user);
    let c = emu.counters();
    assert!(c.tokens_issued_authority >= 1, "{c:?}");
    assert_eq!(
        c.tokens_issued_app_service + c.tokens_issued_cli,
        0,
        "{c:?}"
    );
}

/// A service principal's secret from the environment (`AZURE_TENANT_ID`,
/// `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`, `AZURE_AUTHORITY_HOST`): the chain's
/// `EnvironmentCredential` link, the real `ClientSecretCredential`, against the emulator's
/// Entra authority over HTTPS; the pool logs in as the service principal's role. A wrong
/// secret is refused with Entra's code, named in the chain's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_principal_secret_from_the_environment() {
    let emu = start_emulator(Duration::from_secs(3600)).await;
    let explain = Explain::new("service_principal", &emu);
    let sp = emu
        .add_service_principal("ci-deployer")
        .await
        .expect("service principal");
    record_secret(&sp.secret);
    let outcome = run_child(
        APP,
        &emu.service_principal_env(&sp),
        Duration::from_secs(90),
    )
    .await;
    explain.note(format!("app: {outcome:?}"));
    check_authority_login(&emu, &outcome, "EnvironmentCredential", "ci-deployer");

    // A wrong secret, and no other link that could answer (no `az` on PATH): the build
    // fails with the chain's error, which names Entra's refusal.
    let env = with_var(
        emu.service_principal_env(&sp),
        "AZURE_CLIENT_SECRET",
        "not-the-secret",
    );
    let env = without_cli(env);
    let (err, display) = failed_build(&explain, "wrong secret", &env).await;
    assert_eq!(err["kind"], "token", "{err}");
    assert!(display.contains("EnvironmentCredential"), "{display}");
    assert!(display.contains("AADSTS7000215"), "{display}");
    assert!(!display.contains("not-the-secret"), "{display}");
    assert_eq!(err["jwt_shaped_in_logs"], false);

    // With a signed-in `az` on PATH as well, the chain stops at the identity Entra
    // refused, as `DefaultAzureCredential` does in Azure's other SDKs: no other identity
    // (here the developer's) is used in its place.
    let env = with_var(
        emu.service_principal_env(&sp),
        "AZURE_CLIENT_SECRET",
        "not-the-secret",
    );
    assert!(
        env.iter()
            .any(|(k, v)| k == "PATH" && v.contains(&*emu.az_bin_dir().to_string_lossy()))
    );
    let cli_tokens = emu.counters().tokens_issued_cli;
    let (err, display) = failed_build(&explain, "wrong secret, az signed in", &env).await;
    assert!(display.contains("AADSTS7000215"), "{display}");
    assert!(!display.contains("AzureCliCredential"), "{display}");
    assert_eq!(
        emu.counters().tokens_issued_cli,
        cli_tokens,
        "az was not asked"
    );
    // With nothing cached, the warning does not claim to serve a cached token.
    assert_eq!(
        (&err["logged_no_valid_token"], &err["logged_serving_cached"]),
        (&json!(true), &json!(false)),
        "{err}"
    );
}

/// A service principal as Azure Service Connector configures one:
/// `AZURE_POSTGRESQL_TENANTID`, `AZURE_POSTGRESQL_CLIENTID` and
/// `AZURE_POSTGRESQL_CLIENTSECRET` (its variables for the service-principal auth type). The
/// pool logs in as the service principal, not as a managed identity named by the client id
/// (nor as the developer signed in to `az`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_principal_from_service_connector_variables() {
    let emu = start_emulator(Duration::from_secs(3600)).await;
    let explain = Explain::new("service_connector_service_principal", &emu);
    let sp = emu
        .add_service_principal("orders-sc")
        .await
        .expect("service principal");
    record_secret(&sp.secret);
    let rename = |env: Vec<(String, String)>| -> Vec<(String, String)> {
        env.into_iter()
            .map(|(k, v)| match k.as_str() {
                "AZURE_TENANT_ID" => ("AZURE_POSTGRESQL_TENANTID".to_owned(), v),
                "AZURE_CLIENT_ID" => ("AZURE_POSTGRESQL_CLIENTID".to_owned(), v),
                "AZURE_CLIENT_SECRET" => ("AZURE_POSTGRESQL_CLIENTSECRET".to_owned(), v),
                _ => (k, v),
            })
            .collect()
    };
    let env = rename(emu.service_principal_env(&sp));
    let outcome = run_child(APP, &env, Duration::from_secs(90)).await;
    explain.note(format!("app: {outcome:?}"));
    check_authority_login(&emu, &outcome, "EnvironmentCredential", "orders-sc");

    // A wrong secret stops the chain there: neither a managed identity by that client id
    // nor `az` stands in.
    let env = with_var(env, "AZURE_POSTGRESQL_CLIENTSECRET", "not-the-secret");
    let cli_tokens = emu.counters().tokens_issued_cli;
    let (_, display) = failed_build(&explain, "wrong secret", &env).await;
    assert!(display.contains("AADSTS7000215"), "{display}");
    assert!(!display.contains("not-the-secret"), "{display}");
    assert_eq!(
        emu.counters().tokens_issued_cli,
        cli_tokens,
        "az was not asked"
    );
}

/// A service principal's certificate from the environment (`AZURE_CLIENT_CERTIFICATE_PATH`):
/// the chain's `EnvironmentCredential` link, the real `ClientCertificateCredential`,
/// signs its client assertion with the certificate's key; the emulator's authority checks
/// it against the certificate registered on the app. Both forms Azure's tools write are
/// read: a PEM file with key and certificate (`az ad sp create-for-rbac --create-cert`)
/// and a password-protected PKCS#12 file (the portal's, Key Vault's). A certificate of
/// another app is refused with Entra's code, named in the chain's error.
#[cfg(feature = "client-certificate")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_principal_certificate_from_the_environment() {
    let emu = start_emulator(Duration::from_secs(3600)).await;
    let explain = Explain::new("service_principal_certificate", &emu);
    let sp = emu
        .add_service_principal("cert-deployer")
        .await
        .expect("service principal");
    let cert = emu.add_client_certificate(&sp).expect("certificate");
    let env = emu.service_principal_certificate_env(&sp, &cert);
    let outcome = run_child(APP, &env, Duration::from_secs(90)).await;
    explain.note(format!("PEM: {outcome:?}"));
    check_authority_login(&emu, &outcome, "EnvironmentCredential", "cert-deployer");

    // The same key and certificate as PKCS#12 with a password.
    let pem = std::fs::read(&cert.path).expect("PEM");
    let key = openssl::pkey::PKey::private_key_from_pem(&pem).expect("key");
    let x509 = openssl::x509::X509::from_pem(&pem).expect("certificate");
    let pfx = openssl::pkcs12::Pkcs12::builder()
        .name("cert-deployer")
        .pkey(&key)
        .cert(&x509)
        .build2("pfx-password")
        .expect("PKCS#12")
        .to_der()
        .expect("DER");
    let pfx_path = emu.temp_dir().join("cert-deployer.pfx");
    std::fs::write(&pfx_path, pfx).expect("write the PKCS#12 file");
    let env = with_var(
        with_var(
            env,
            "AZURE_CLIENT_CERTIFICATE_PATH",
            &pfx_path.display().to_string(),
        ),
        "AZURE_CLIENT_CERTIFICATE_PASSWORD",
        "pfx-password",
    );
    let outcome = run_child(APP, &env, Duration::from_secs(90)).await;
    explain.note(format!("PKCS#12: {outcome:?}"));
    check_authority_login(&emu, &outcome, "EnvironmentCredential", "cert-deployer");

    // The wrong password: the chain's error says the file could not be read, without the
    // password; with a signed-in `az` on PATH too, the chain stops at the configured
    // identity instead of using the developer's.
    let wrong = with_var(env.clone(), "AZURE_CLIENT_CERTIFICATE_PASSWORD", "not-it");
    let cli_tokens = emu.counters().tokens_issued_cli;
    let (err, display) = failed_build(&explain, "wrong password", &wrong).await;
    assert_eq!(err["kind"], "token", "{err}");
    assert!(display.contains("EnvironmentCredential"), "{display}");
    assert!(display.contains("PKCS12"), "{display}");
    assert!(!display.contains("not-it"), "{display}");
    assert!(
        display.contains("the chain stops at the identity the environment configures"),
        "{display}"
    );
    assert_eq!(
        emu.counters().tokens_issued_cli,
        cli_tokens,
        "az was not asked"
    );

    // Another app's certificate with this app's client id.
    let other_sp = emu
        .add_service_principal("other-app")
        .await
        .expect("other app");
    let other = emu.add_client_certificate(&other_sp).expect("certificate");
    let env = without_cli(emu.service_principal_certificate_env(&sp, &other));
    let (err, display) = failed_build(&explain, "another app's certificate", &env).await;
    assert_eq!(err["kind"], "token", "{err}");
    assert!(display.contains("EnvironmentCredential"), "{display}");
    assert!(display.contains("AADSTS700027"), "{display}");
    assert_eq!(err["jwt_shaped_in_logs"], false);
}

/// Without the `client-certificate` feature, `AZURE_CLIENT_CERTIFICATE_PATH` is not
/// ignored: the chain's error says which feature reads it.
#[cfg(not(feature = "client-certificate"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_without_the_feature_is_named_in_the_chain_error() {
    let emu = start_emulator(Duration::from_secs(3600)).await;
    let sp = emu
        .add_service_principal("cert-deployer")
        .await
        .expect("service principal");
    let cert = emu.add_client_certificate(&sp).expect("certificate");
    let env = without_cli(emu.service_principal_certificate_env(&sp, &cert));
    let explain = Explain::new("certificate_without_feature", &emu);
    let (_, display) = failed_build(&explain, "certificate", &env).await;
    assert!(
        display.contains("EnvironmentCredential")
            && display.contains("built without the `client-certificate` feature"),
        "{display}"
    );
    assert_eq!(emu.counters().tokens_issued_authority, 0);
}

/// Workload identity from the environment (`AZURE_FEDERATED_TOKEN_FILE`, as AKS
/// projects it): the chain's `WorkloadIdentityCredential` link trades the file's token
/// for an Entra token of the user-assigned identity it is federated with; the pool logs
/// in as that identity. A token of a subject without a federated credential, and one of
/// another issuer, are refused with Entra's codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_identity_from_the_environment() {
    let emu = start_emulator(Duration::from_secs(3600)).await;
    let explain = Explain::new("workload_identity", &emu);
    let mi = emu
        .add_identity(entra_emulator::IdentitySpec::user_assigned("aks-workload"))
        .await
        .expect("identity");
    let subject = "system:serviceaccount:default:app";
    emu.add_federated_credential(&mi.client_id, subject)
        .expect("federated credential");
    let file = emu.write_federated_token_file(subject).expect("token file");
    let env = emu.workload_identity_env(&mi.name, &mi.client_id, &file);
    let outcome = run_child(APP, &env, Duration::from_secs(90)).await;
    explain.note(format!("app: {outcome:?}"));
    check_authority_login(&emu, &outcome, "WorkloadIdentityCredential", "aks-workload");

    // The service account of another workload has no federated credential.
    let other = emu
        .write_federated_token_file("system:serviceaccount:default:other")
        .expect("token file");
    let env = emu.workload_identity_env(&mi.name, &mi.client_id, &other);
    let env = without_cli(env);
    let (err, display) = failed_build(&explain, "other subject", &env).await;
    assert_eq!(err["kind"], "token", "{err}");
    assert!(display.contains("WorkloadIdentityCredential"), "{display}");
    assert!(display.contains("AADSTS700213"), "{display}");

    // A token of an issuer the identity has no federated credential for (here an Entra
    // access token, as a misconfigured projection might hold).
    let foreign = emu.temp_dir().join("foreign-issuer-token");
    std::fs::write(
        &foreign,
        emu.issue_token(
            "aks-workload",
            "api://AzureADTokenExchange",
            Duration::from_secs(3600),
        ),
    )
    .expect("token file");
    let env = emu.workload_identity_env(&mi.name, &mi.client_id, &foreign);
    let env = without_cli(env);
    let (err, display) = failed_build(&explain, "other issuer", &env).await;
    assert_eq!(err["kind"], "token", "{err}");
    assert!(display.contains("WorkloadIdentityCredential"), "{display}");
    assert!(display.contains("AADSTS700211"), "{display}");
}

/// The Azure Developer CLI, the chain's last link, when it is the only CLI on `PATH`: the
/// real `AzureDeveloperCliCredential` runs the emulator's `azd auth token`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_developer_cli_when_it_is_the_only_cli() {
    let emu = start_emulator(Duration::from_secs(3600)).await;
    let explain = Explain::new("azure_developer_cli", &emu);
    let only_azd = emu.temp_dir().join("only-azd");
    std::fs::create_dir_all(&only_azd).expect("a directory");
    std::os::unix::fs::symlink(emu.az_bin_dir().join("azd"), only_azd.join("azd"))
        .expect("symlink azd");
    let env = env_without(
        &emu,
        &[
            "IDENTITY_ENDPOINT",
            "IDENTITY_HEADER",
            "PGUSER",
            "AZURE_POSTGRESQL_USER",
        ],
    );
    let env = with_var(env, "AZURE_POSTGRESQL_USER", emu.default_user());
    let env = with_var(
        env,
        "PATH",
        &format!("{}:/usr/local/bin:/usr/bin:/bin", only_azd.display()),
    );
    let outcome = run_child(APP, &env, Duration::from_secs(90)).await;
    explain.note(format!("app: {outcome:?}"));
    assert!(outcome.success, "{}", outcome.stderr);
    let done = outcome.last("DONE").expect("the app reported");
    check_done(done);
    assert_eq!(done["credential"], "AzureDeveloperCliCredential", "{done}");
    assert_eq!(done["current_user"], emu.default_user());
    assert!(emu.counters().tokens_issued_cli >= 1);
}
