//! The identity endpoints at the HTTP level, and every identity fault as configured.

mod common;

use std::time::{Duration, Instant};

use common::bounded;
use entra_emulator::{Emulator, IdentitySpec, OSSRDBMS_RESOURCE};

fn http() -> reqwest::Client {
    // No connection reuse: every request sees the listener's current state.
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

async fn msi(
    emu: &Emulator,
    extra: &str,
    header: Option<&str>,
) -> Result<reqwest::Response, reqwest::Error> {
    let url = format!(
        "{}?api-version=2019-08-01&resource={OSSRDBMS_RESOURCE}{extra}",
        emu.identity_endpoint()
    );
    let mut req = http().get(url).header("Metadata", "true");
    if let Some(h) = header {
        req = req.header("X-IDENTITY-HEADER", h);
    }
    req.send().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_identity_endpoint_and_faults() {
    let emu = Emulator::builder()
        .identity(IdentitySpec::user_assigned("worker"))
        .token_lifetime(Duration::from_secs(90))
        .start()
        .await
        .expect("start");
    bounded(async {
        let h = emu.identity_header().to_string();
        let worker = emu.add_identity(IdentitySpec::user_assigned("batch")).await.unwrap();

        // System-assigned by default.
        let r = msi(&emu, "", Some(&h)).await.unwrap();
        assert_eq!(r.status(), 200);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["resource"], OSSRDBMS_RESOURCE);
        assert_eq!(body["client_id"], emu.default_identity().client_id.as_str());
        let claims = entra_emulator::decode_claims(body["access_token"].as_str().unwrap()).unwrap();
        assert_eq!(claims["oid"], emu.default_identity().object_id.as_str());
        let exp = claims["exp"].as_u64().unwrap();
        assert_eq!(body["expires_on"], exp.to_string());
        assert_eq!(exp - claims["iat"].as_u64().unwrap(), 90);
        assert!(claims.get("xms_mirid").is_none());

        // User-assigned by client_id, object_id / principal_id, mi_res_id.
        for q in [
            format!("&client_id={}", worker.client_id),
            format!("&object_id={}", worker.object_id),
            format!("&principal_id={}", worker.object_id),
            format!("&mi_res_id={}", worker.resource_id),
        ] {
            let body: serde_json::Value = msi(&emu, &q, Some(&h)).await.unwrap().json().await.unwrap();
            let claims = entra_emulator::decode_claims(body["access_token"].as_str().unwrap()).unwrap();
            assert_eq!(claims["appid"], worker.client_id.as_str(), "{q}");
            assert!(claims["xms_mirid"].as_str().unwrap().ends_with("/userAssignedIdentities/batch"));
        }
        assert_eq!(emu.counters().tokens_issued_app_service, 5);

        // Refusals: missing header 400, wrong header 401, unknown identity 400.
        assert_eq!(msi(&emu, "", None).await.unwrap().status(), 400);
        assert_eq!(msi(&emu, "", Some("wrong")).await.unwrap().status(), 401);
        assert_eq!(msi(&emu, "&client_id=nope", Some(&h)).await.unwrap().status(), 400);
        assert_eq!(emu.counters().identity_requests_refused, 3);

        // Token lifetime changed while running.
        emu.faults().set_token_lifetime(Duration::from_secs(45));
        let body: serde_json::Value = msi(&emu, "", Some(&h)).await.unwrap().json().await.unwrap();
        let claims = entra_emulator::decode_claims(body["access_token"].as_str().unwrap()).unwrap();
        assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 45);
        emu.faults().set_token_lifetime(Duration::from_secs(90));

        // Latency: at least the configured value (no upper bound asserted).
        emu.faults().set_identity_latency(Duration::from_millis(500));
        let start = Instant::now();
        assert_eq!(msi(&emu, "", Some(&h)).await.unwrap().status(), 200);
        assert!(start.elapsed() >= Duration::from_millis(500));
        emu.faults().set_identity_latency(Duration::ZERO);

        // Error status.
        emu.faults().set_identity_error(Some(503));
        assert_eq!(msi(&emu, "", Some(&h)).await.unwrap().status(), 503);
        emu.faults().set_identity_error(Some(500));
        assert_eq!(msi(&emu, "", Some(&h)).await.unwrap().status(), 500);
        emu.faults().set_identity_error(None);

        // Throttling.
        emu.faults().set_identity_throttle(Some(Duration::from_secs(7)));
        let r = msi(&emu, "", Some(&h)).await.unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "7");
        emu.faults().set_identity_throttle(None);

        // Outage: the connection is dropped, no HTTP answer.
        emu.faults().set_identity_outage(true);
        let e = msi(&emu, "", Some(&h)).await.unwrap_err();
        assert!(e.is_connect() || e.is_request(), "{e}");
        emu.faults().set_identity_outage(false);
        assert_eq!(msi(&emu, "", Some(&h)).await.unwrap().status(), 200);

        let c = emu.counters();
        assert_eq!(c.identity_requests_refused, 3 + 4);
        assert_eq!(c.tokens_issued_app_service, 8);
        assert_eq!(c.identity_requests, 8 + 7);

        // The admin API drives the same switches.
        let admin = emu.admin_url();
        let r = http()
            .post(format!("{admin}/faults"))
            .json(&serde_json::json!({"identity_throttle_retry_after_secs": 3, "token_lifetime_secs": 30}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(msi(&emu, "", Some(&h)).await.unwrap().headers()["retry-after"], "3");
        assert_eq!(emu.faults().settings().token_lifetime_secs, Some(30));
        http().post(format!("{admin}/faults/clear")).send().await.unwrap();
        assert_eq!(msi(&emu, "", Some(&h)).await.unwrap().status(), 200);
        let counters: entra_emulator::Counters = http().get(format!("{admin}/counters")).send().await.unwrap().json().await.unwrap();
        assert_eq!(counters, emu.counters());
        let r: serde_json::Value = http().post(format!("{admin}/kill-sessions")).send().await.unwrap().json().await.unwrap();
        assert_eq!(r["killed"], 0);
    })
    .await;
    emu.shutdown().await;
}

/// Run the fake `az` directly (its PATH passed to the child only, the test's env is untouched).
fn az(emu: &Emulator, args: &[&str]) -> std::process::Output {
    std::process::Command::new(emu.az_bin_dir().join("az"))
        .args(args)
        .output()
        .expect("run az")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn az_command_and_cli_faults() {
    let emu = Emulator::builder()
        .token_lifetime(Duration::from_secs(120))
        .start()
        .await
        .expect("start");
    bounded(async {
        let scope = "https://ossrdbms-aad.database.windows.net/.default";
        let out = az(
            &emu,
            &[
                "account",
                "get-access-token",
                "-o",
                "json",
                "--scope",
                scope,
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for k in [
            "accessToken",
            "expiresOn",
            "expires_on",
            "subscription",
            "tenant",
            "tokenType",
        ] {
            assert!(body.get(k).is_some(), "missing {k}");
        }
        let claims = entra_emulator::decode_claims(body["accessToken"].as_str().unwrap()).unwrap();
        assert_eq!(claims["upn"], emu.default_user());
        assert_eq!(claims["aud"], OSSRDBMS_RESOURCE);
        assert_eq!(claims["exp"], body["expires_on"]);
        // --resource and the tsv query form psql users type.
        let out = az(
            &emu,
            &[
                "account",
                "get-access-token",
                "--resource-type",
                "oss-rdbms",
                "--query",
                "accessToken",
                "-o",
                "tsv",
            ],
        );
        let tok = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            entra_emulator::decode_claims(tok.trim()).unwrap()["aud"],
            OSSRDBMS_RESOURCE
        );
        assert_eq!(emu.counters().tokens_issued_cli, 2);

        // Logged out: Azure CLI's text on stderr, non-zero exit.
        emu.faults().set_cli_logged_out(true);
        let out = az(
            &emu,
            &[
                "account",
                "get-access-token",
                "-o",
                "json",
                "--scope",
                scope,
            ],
        );
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("Please run 'az login' to setup account.")
        );
        emu.faults().set_cli_logged_out(false);
        // `az logout` / `az login` switch the same fault.
        assert!(az(&emu, &["logout"]).status.success());
        assert!(emu.faults().settings().cli_logged_out.unwrap());
        assert!(
            !az(&emu, &["account", "get-access-token", "--scope", scope])
                .status
                .success()
        );
        let out = az(&emu, &["login"]);
        assert!(out.status.success());
        assert!(String::from_utf8_lossy(&out.stdout).contains(emu.default_user()));
        assert!(!emu.faults().settings().cli_logged_out.unwrap());

        // Identity faults apply to az as well: latency and errors.
        emu.faults()
            .set_identity_latency(Duration::from_millis(300));
        let start = Instant::now();
        assert!(
            az(&emu, &["account", "get-access-token", "--scope", scope])
                .status
                .success()
        );
        assert!(start.elapsed() >= Duration::from_millis(300));
        emu.faults().clear();
        emu.faults().set_identity_outage(true);
        assert!(
            !az(&emu, &["account", "get-access-token", "--scope", scope])
                .status
                .success()
        );
        emu.faults().clear();
        let c = emu.counters();
        assert_eq!(c.tokens_issued_cli, 3);
        assert_eq!(c.identity_requests_refused, 3);
    })
    .await;
    emu.shutdown().await;
}
