//! The real `azure_identity` credentials against the emulator.
//!
//! `ManagedIdentityCredential` reads `IDENTITY_ENDPOINT`/`IDENTITY_HEADER` and
//! `AzureCliCredential` runs `az` with the process `PATH`: both read the process environment,
//! which this crate cannot change in-process (`std::env::set_var` is `unsafe` in edition 2024
//! and the crate forbids `unsafe`; it would also race with the other tests). So the parent test
//! starts an emulator and re-runs this test binary as a child process, filtered to the
//! `child_real_credentials` test, with `Emulator::env()` as its environment. The child does the
//! credential work and logs in through the front; the parent checks the counters.

mod common;

use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_identity::{
    AzureCliCredential, ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
};
use entra_emulator::{Emulator, IdentitySpec, OSSRDBMS_RESOURCE, OSSRDBMS_SCOPE};

const CHILD_FLAG: &str = "ENTRA_EMULATOR_TEST_CHILD";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_azure_identity_credentials() {
    let emu = Emulator::builder()
        .identity(IdentitySpec::user_assigned("worker"))
        .token_lifetime(Duration::from_secs(600))
        .start()
        .await
        .expect("start");
    let worker_client_id = {
        let body: serde_json::Value = reqwest::get(format!("{}/principals", emu.admin_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body.as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "worker")
            .map(|p| p["client_id"].as_str().unwrap().to_string())
            .unwrap()
    };
    let mut cmd = tokio::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "child_real_credentials",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .envs(emu.env())
    .env(CHILD_FLAG, "1")
    .env("CHILD_MI_OID", &emu.default_identity().object_id)
    .env("CHILD_MI_CLIENT_ID", &emu.default_identity().client_id)
    .env("CHILD_WORKER_CLIENT_ID", worker_client_id)
    .env("CHILD_USER", emu.default_user())
    .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("child timed out")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = emu.counters();
    assert_eq!(c.tokens_issued_app_service, 2, "{c:?}");
    assert_eq!(c.tokens_issued_cli, 1, "{c:?}");
    assert_eq!(c.logins_accepted, 3, "{c:?}");
    assert_eq!(c.identity_requests_refused, 2, "{c:?}"); // unknown identity, logged-out az
    emu.shutdown().await;
}

/// Runs only as the child of `real_azure_identity_credentials` (ignored, and a no-op without
/// the emulator's environment).
#[tokio::test]
#[ignore = "run by real_azure_identity_credentials in a child process"]
async fn child_real_credentials() {
    if std::env::var_os(CHILD_FLAG).is_none() {
        return;
    }
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} not set"));
    let (host, port, db) = (
        var("PGHOST"),
        var("PGPORT").parse::<u16>().unwrap(),
        var("PGDATABASE"),
    );
    let ca = std::path::PathBuf::from(var("PGSSLROOTCERT"));
    let login = |user: String, token: String| {
        let cfg = common::config(&host, port, &db, &user, &token);
        let tls = common::tls(&ca);
        async move {
            let (client, conn) = cfg.connect(tls).await.expect("login through the front");
            tokio::spawn(conn);
            let row = client
                .query_one("SELECT current_user::text", &[])
                .await
                .unwrap();
            row.get::<_, String>(0)
        }
    };

    // System-assigned managed identity, App Service source.
    let cred = ManagedIdentityCredential::new(None).expect("credential");
    let tok = cred
        .get_token(&[OSSRDBMS_SCOPE], None)
        .await
        .expect("MI token");
    let claims = entra_emulator::decode_claims(tok.token.secret()).unwrap();
    assert_eq!(claims["aud"], OSSRDBMS_RESOURCE);
    assert_eq!(
        claims["iss"],
        format!("https://sts.windows.net/{}/", entra_emulator::TENANT_ID)
    );
    assert_eq!(claims["tid"], entra_emulator::TENANT_ID);
    assert_eq!(claims["oid"], var("CHILD_MI_OID"));
    assert_eq!(claims["sub"], var("CHILD_MI_OID"));
    assert_eq!(claims["appid"], var("CHILD_MI_CLIENT_ID"));
    // A system-assigned identity's token names the resource that owns it, as Azure's do.
    assert!(
        claims["xms_mirid"].as_str().unwrap().ends_with(&format!(
            "/providers/Microsoft.Web/sites/{}",
            var("AZURE_POSTGRESQL_USER")
        )),
        "{:?}",
        claims["xms_mirid"]
    );
    // Sized like Azure's managed identity tokens (about 1,300 to 1,900 characters).
    let len = tok.token.secret().len();
    assert!((1_200..=2_000).contains(&len), "token of {len} characters");
    let (iat, nbf, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["nbf"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert!(nbf <= iat + 1 && exp - iat == 600);
    assert_eq!(tok.expires_on.unix_timestamp(), exp);
    assert_eq!(
        login(var("AZURE_POSTGRESQL_USER"), tok.token.secret().to_string()).await,
        var("AZURE_POSTGRESQL_USER")
    );

    // User-assigned, by client id.
    let opts = ManagedIdentityCredentialOptions {
        user_assigned_id: Some(UserAssignedId::ClientId(var("CHILD_WORKER_CLIENT_ID"))),
        ..Default::default()
    };
    let cred = ManagedIdentityCredential::new(Some(opts)).expect("credential");
    let tok = cred
        .get_token(&[OSSRDBMS_SCOPE], None)
        .await
        .expect("UAMI token");
    let claims = entra_emulator::decode_claims(tok.token.secret()).unwrap();
    assert_eq!(claims["appid"], var("CHILD_WORKER_CLIENT_ID"));
    assert!(
        claims["xms_mirid"]
            .as_str()
            .unwrap()
            .ends_with("/userAssignedIdentities/worker")
    );
    assert_eq!(
        login("worker".into(), tok.token.secret().to_string()).await,
        "worker"
    );

    // An unknown user-assigned identity is refused like Azure does (400).
    let opts = ManagedIdentityCredentialOptions {
        user_assigned_id: Some(UserAssignedId::ClientId(
            "11111111-2222-4333-8444-555555555555".into(),
        )),
        ..Default::default()
    };
    let err = ManagedIdentityCredential::new(Some(opts))
        .unwrap()
        .get_token(&[OSSRDBMS_SCOPE], None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("has not been assigned"), "{err}");

    // Azure CLI credential: runs the emulator's `az` found on PATH.
    let cred = AzureCliCredential::new(None).expect("credential");
    let tok = cred
        .get_token(&[OSSRDBMS_SCOPE], None)
        .await
        .expect("CLI token");
    let claims = entra_emulator::decode_claims(tok.token.secret()).unwrap();
    assert_eq!(claims["upn"], var("CHILD_USER"));
    assert_eq!(claims["aud"], OSSRDBMS_RESOURCE);
    assert_eq!(
        tok.expires_on.unix_timestamp(),
        claims["exp"].as_i64().unwrap()
    );
    assert_eq!(
        login(var("CHILD_USER"), tok.token.secret().to_string()).await,
        var("CHILD_USER")
    );

    // Logged out: the credential reports Azure CLI's text.
    let admin = var("ENTRA_EMULATOR_ADMIN");
    let http = reqwest::Client::new();
    http.post(format!("{admin}/faults"))
        .json(&serde_json::json!({"cli_logged_out": true}))
        .send()
        .await
        .unwrap();
    let err = AzureCliCredential::new(None)
        .unwrap()
        .get_token(&[OSSRDBMS_SCOPE], None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Please run 'az login'"), "{err}");
    http.post(format!("{admin}/faults/clear"))
        .send()
        .await
        .unwrap();
}
