//! The identity endpoints at the HTTP level, and every identity fault as configured.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{bounded, db_error, login};
use entra_emulator::{Emulator, IdentitySpec, OSSRDBMS_RESOURCE, OSSRDBMS_SCOPE};

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
        assert!(
            claims["xms_mirid"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/providers/Microsoft.Web/sites/{}", emu.default_identity().name))
        );

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

        // Token lifetime changed while running (applies to the next token minted).
        emu.faults().set_token_lifetime(Duration::from_secs(45));
        emu.faults().mint_next();
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

/// Run one of the emulator's CLI stand-ins (`az`, `azd`) directly (by path: the test's
/// environment is untouched).
fn cli(emu: &Emulator, name: &str, args: &[&str]) -> std::process::Output {
    std::process::Command::new(emu.az_bin_dir().join(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"))
}

/// Run the `az` stand-in.
fn az(emu: &Emulator, args: &[&str]) -> std::process::Output {
    cli(emu, "az", args)
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

async fn msi_token(emu: &Emulator) -> (String, u64) {
    let body: serde_json::Value = msi(emu, "", Some(emu.identity_header()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tok = body["access_token"].as_str().unwrap().to_owned();
    let exp = body["expires_on"].as_str().unwrap().parse().unwrap();
    (tok, exp)
}

fn az_token(emu: &Emulator) -> String {
    let out = az(
        emu,
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
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Sleeps (real time) until the wall clock reaches `exp` (Unix seconds) minus `before`.
async fn sleep_until_before(exp: u64, before: Duration) {
    let at = UNIX_EPOCH + Duration::from_secs(exp) - before;
    if let Ok(d) = at.duration_since(SystemTime::now()) {
        tokio::time::sleep(d).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_endpoints_serve_their_cached_token_like_azure() {
    // 3 s tokens: the default window is a twelfth of that, 250 ms.
    let emu = Emulator::builder()
        .token_lifetime(Duration::from_secs(3))
        .start()
        .await
        .expect("start");
    bounded(async {
        // Two raw calls to the managed identity endpoint: the same token.
        let (a, exp) = msi_token(&emu).await;
        let (b, _) = msi_token(&emu).await;
        assert_eq!(a, b, "the endpoint serves its cached token");
        // Two `az account get-access-token` calls: the same token (MSAL's cache).
        let (x, y) = (az_token(&emu), az_token(&emu));
        assert_eq!(x, y);
        assert_ne!(a, x, "another principal, another token");
        let c = emu.counters();
        assert_eq!((c.tokens_minted, c.token_cache_hits), (2, 2));
        assert_eq!((c.tokens_issued_app_service, c.tokens_issued_cli), (2, 2));

        // Inside the window (less than 250 ms left): a new token.
        sleep_until_before(exp, Duration::from_millis(150)).await;
        let (c2, exp2) = msi_token(&emu).await;
        assert_ne!(c2, a, "a token inside its refresh window is replaced");
        assert!(exp2 > exp);

        // Told to mint (a revocation): a new token at once; switched off: one per call.
        emu.faults().mint_next();
        let (d, _) = msi_token(&emu).await;
        assert_ne!(d, c2);
        assert_eq!(msi_token(&emu).await.0, d);
        emu.faults().set_token_cache(false);
        assert_ne!(msi_token(&emu).await.0, d);
        assert!(!emu.faults().settings().token_cache.unwrap());
        emu.faults().clear();
        assert!(
            emu.faults().settings().token_cache.unwrap(),
            "clear restores the cache"
        );

        // An explicit window through the admin API: longer than the life, so every call mints.
        let r = http()
            .post(format!("{}/faults", emu.admin_url()))
            .json(&serde_json::json!({"token_cache_window_ms": 10_000}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let (e1, _) = msi_token(&emu).await;
        assert_ne!(msi_token(&emu).await.0, e1);
        emu.faults().clear();
    })
    .await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_front_can_refuse_a_valid_token_that_the_cache_keeps_serving() {
    let emu = Emulator::builder()
        .token_lifetime(Duration::from_secs(3600))
        .start()
        .await
        .expect("start");
    bounded(async {
        let user = emu.default_identity().name.clone();
        let (old, _) = msi_token(&emu).await;
        emu.faults().set_refuse_issued_tokens(true);
        let e = login(&emu, &user, &old).await.expect_err("refused");
        assert_eq!(
            db_error(&e),
            (
                "28000".into(),
                entra_emulator::messages::TOKEN_VALIDATION_FAILED.into()
            )
        );
        // Asking again gives the same, refused token: the cache still holds it.
        assert_eq!(msi_token(&emu).await.0, old);
        // A token minted after the refusal (as after a forced new one) is accepted.
        emu.faults().mint_next();
        let (new, _) = msi_token(&emu).await;
        assert_ne!(new, old);
        login(&emu, &user, &new)
            .await
            .expect("a newer token logs in");
        let c = emu.counters();
        assert_eq!(c.logins_refused_validation, 1);
        assert_eq!(c.logins_accepted, 1);
        emu.faults().set_refuse_issued_tokens(false);
        login(&emu, &user, &old).await.expect("the fault ended");
    })
    .await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_like_imds_answers_429_with_retry_after() {
    let emu = Emulator::builder().start().await.expect("start");
    bounded(async {
        let h = emu.identity_header().to_string();
        emu.faults().set_identity_rate_limit(Some(5));
        let mut statuses = Vec::new();
        for _ in 0..12 {
            let r = msi(&emu, "", Some(&h)).await.unwrap();
            if r.status() == 429 {
                assert_eq!(r.headers()["retry-after"], "1");
            }
            statuses.push(r.status().as_u16());
        }
        let ok = statuses.iter().filter(|&&s| s == 200).count();
        assert!((5..=6).contains(&ok), "{statuses:?}");
        assert_eq!(
            emu.counters().identity_requests_rate_limited as usize,
            12 - ok
        );
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(msi(&emu, "", Some(&h)).await.unwrap().status(), 200);
        assert_eq!(emu.faults().settings().identity_rate_limit_per_sec, Some(5));
        emu.faults().clear();
        assert_eq!(emu.faults().settings().identity_rate_limit_per_sec, Some(0));
    })
    .await;
    emu.shutdown().await;
}

/// The `azd` stand-in answers `azd auth token` as `AzureDeveloperCliCredential` runs it: the
/// logged-in user's token with an RFC 3339 `expiresOn`, and azd's JSON error on stderr.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azd_auth_token_and_its_errors() {
    let emu = Emulator::builder()
        .token_lifetime(Duration::from_secs(120))
        .start()
        .await
        .expect("start");
    let azd = |args: &[&str]| cli(&emu, "azd", args);
    let out = azd(&[
        "auth",
        "token",
        "-o",
        "json",
        "--no-prompt",
        "--scope",
        entra_emulator::OSSRDBMS_SCOPE,
    ]);
    assert!(out.status.success(), "{out:?}");
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let claims = entra_emulator::decode_claims(body["token"].as_str().unwrap()).unwrap();
    assert_eq!(claims["upn"], emu.default_user());
    assert_eq!(claims["aud"], entra_emulator::OSSRDBMS_RESOURCE);
    let expires = body["expiresOn"].as_str().unwrap();
    assert!(
        expires.len() == 20 && expires.ends_with('Z') && expires.as_bytes()[10] == b'T',
        "RFC 3339 in UTC: {expires}"
    );

    let out = azd(&[
        "auth",
        "token",
        "--scope",
        "x/.default",
        "--tenant-id",
        "11111111-2222-3333-4444-555555555555",
    ]);
    assert!(!out.status.success());
    let err: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert!(
        err["data"]["message"]
            .as_str()
            .unwrap()
            .contains("AADSTS90002"),
        "{err}"
    );

    emu.faults().set_cli_logged_out(true);
    let out = azd(&["auth", "token", "--scope", entra_emulator::OSSRDBMS_SCOPE]);
    assert!(!out.status.success());
    let err: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert!(
        err["data"]["message"]
            .as_str()
            .unwrap()
            .contains("not logged in, run `azd auth login` to login"),
        "{err}"
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_az_stand_in_is_the_emulator_binary_and_speaks_the_cli_s_forms() {
    let program = env!("CARGO_BIN_EXE_entra-emulator");
    let emu = Emulator::builder()
        .cli_program(program)
        .start()
        .await
        .expect("start");
    bounded(async {
        // The shim runs this crate's binary, not a script of its own.
        let shim = std::fs::read_to_string(emu.az_bin_dir().join("az")).unwrap();
        assert!(shim.starts_with("#!/bin/sh\n"), "{shim}");
        assert!(
            shim.contains(&format!("exec '{program}' az \"$@\"")),
            "{shim}"
        );

        let text = |o: &std::process::Output| {
            (
                o.status.code(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        };
        // `az account show`: the account, with no token minted.
        let show: serde_json::Value =
            serde_json::from_slice(&az(&emu, &["account", "show"]).stdout).unwrap();
        assert_eq!(show["user"]["name"], emu.default_user());
        assert_eq!(show["tenantId"], emu.tenant_id());
        let (code, out, _) = text(&az(
            &emu,
            &["account", "show", "--query", "user.name", "-o", "tsv"],
        ));
        assert_eq!(
            (code, out.as_str()),
            (Some(0), format!("{}\n", emu.default_user()).as_str())
        );
        assert_eq!(emu.counters().tokens_issued_cli, 0);

        // `-o none` prints nothing; a JSON query prints a JSON string.
        let scope = ["account", "get-access-token", "--scope", OSSRDBMS_SCOPE];
        let (code, out, _) = text(&az(&emu, &[&scope[..], &["-o", "none"]].concat()));
        assert_eq!((code, out.as_str()), (Some(0), ""));
        let (_, out, _) = text(&az(&emu, &[&scope[..], &["--query", "tokenType"]].concat()));
        assert_eq!(out, "\"Bearer\"\n");

        // The subscription is checked, by id or name in any case, as az does.
        let sub = show["id"].as_str().unwrap().to_owned();
        let with_subscription =
            |s: &str| text(&az(&emu, &[&scope[..], &["--subscription", s]].concat()));
        for accepted in [sub.as_str(), "ENTRA-EMULATOR"] {
            assert_eq!(with_subscription(accepted).0, Some(0), "{accepted}");
        }
        for refused in ["nope", "abonnement-é"] {
            let (code, _, err) = with_subscription(refused);
            assert_eq!(code, Some(1));
            assert!(
                err.contains(&format!("ERROR: Subscription '{refused}' not found.")),
                "{err}"
            );
        }

        // Command lines it does not speak: exit 2 and a sentence, as az's parser does.
        for args in [
            &[&scope[..], &["--query", "[0].accessToken"]].concat()[..],
            &[
                "account",
                "get-access-token",
                "--scope",
                OSSRDBMS_SCOPE,
                "--resource",
                "x",
            ],
            &["account", "get-access-token", "--bogus"],
            &["account", "get-access-token", "--resource-type", "nope"],
            &["group", "list"],
        ] {
            let (code, out, err) = text(&az(&emu, args));
            assert_eq!(code, Some(2), "{args:?}: {out} {err}");
            assert!(!err.trim().is_empty(), "{args:?}");
        }

        // As Azure CLI: a tenant and a subscription together are refused; asked for a
        // tenant, the answer has no subscription.
        let tenant = emu.tenant_id().to_owned();
        let (code, _, err) = text(&az(
            &emu,
            &[&scope[..], &["--tenant", &tenant, "--subscription", &sub]].concat(),
        ));
        assert_eq!(code, Some(1));
        assert!(err.contains("only one of subscription and tenant"), "{err}");
        let with_tenant: serde_json::Value = serde_json::from_slice(
            &az(&emu, &[&scope[..], &["--tenant", &tenant]].concat()).stdout,
        )
        .unwrap();
        assert!(with_tenant.get("subscription").is_none(), "{with_tenant}");
        // `az logout` when nobody is signed in.
        assert_eq!(az(&emu, &["logout"]).status.code(), Some(0));
        let (code, _, err) = text(&az(&emu, &["logout"]));
        assert_eq!(code, Some(1));
        assert!(err.contains("There are no active accounts."), "{err}");
        assert_eq!(az(&emu, &["login"]).status.code(), Some(0));
        let minted = emu.counters().tokens_issued_cli;

        // An expiry past what RFC 3339 can write: azd refuses it in its own format.
        emu.faults()
            .set_token_lifetime(Duration::from_secs(300_000_000_000));
        let out = cli(
            &emu,
            "azd",
            &[
                "auth",
                "token",
                "-o",
                "json",
                "--scope",
                "https://management.core.windows.net//.default",
            ],
        );
        let (code, out, err) = text(&out);
        assert_eq!((code, out.as_str()), (Some(1), ""), "{err}");
        let message: serde_json::Value =
            serde_json::from_str(err.trim()).expect("azd's JSON error");
        assert!(
            message["data"]["message"]
                .as_str()
                .unwrap()
                .contains("out of range"),
            "{err}"
        );
        emu.faults().clear();

        // Versions, as the tools print them; azd takes one scope at a time here.
        for (tool, args, want) in [
            ("az", &["--version"][..], "azure-cli"),
            ("az", &["version"][..], "azure-cli"),
            ("azd", &["version"][..], "azd version"),
            ("azd", &["--version"][..], "azd version"),
        ] {
            let (code, out, _) = text(&cli(&emu, tool, args));
            assert_eq!(code, Some(0), "{tool} {args:?}");
            assert!(out.starts_with(want), "{tool} {args:?}: {out}");
        }
        let two = [
            "auth",
            "token",
            "--scope",
            OSSRDBMS_SCOPE,
            "--scope",
            OSSRDBMS_SCOPE,
        ];
        let (code, _, err) = text(&cli(&emu, "azd", &two));
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains("one scope at a time"), "{err}");

        // Run without a shim, the binary says what it needs.
        let out = std::process::Command::new(program)
            .args(["az", "account", "show"])
            .env_remove(entra_emulator::standin::PORT_ENV)
            .output()
            .unwrap();
        let (code, _, err) = text(&out);
        assert_eq!(code, Some(1));
        assert!(err.contains(entra_emulator::standin::PORT_ENV), "{err}");
        assert_eq!(emu.counters().tokens_issued_cli, minted + 1);
    })
    .await;
    emu.shutdown().await;
}
