//! Helpers shared by the HTTP tests: an emulator, a pool on it, and the assertions both
//! web examples must pass.
#![allow(dead_code)] // each test binary uses its own subset

use std::time::Duration;

use deadpool_entra::{Config, FnSource, Pool, Token, TokenSourceError};
use deadpool_entra_examples::notes;
use entra_emulator::Emulator;
use serde_json::{Value, json};

/// Every test is bounded: a hung server fails the test instead of hanging CI.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts an emulator and a small pool on it, with the `notes` table created.
///
/// The pool is configured from the emulator's environment ([`Emulator::env`]: host, port,
/// database, role, `verify-full` with the emulator's CA) like the example programs, but
/// its tokens come from a [`FnSource`] that calls the emulator's managed identity
/// endpoint over HTTP: `ManagedIdentityCredential` would read `IDENTITY_ENDPOINT` from
/// the process environment, which tests running side by side cannot share.
pub async fn emulator_and_pool() -> (Emulator, Pool) {
    deadpool_entra_examples::init_tracing("warn");
    let emulator = Emulator::start().await.expect("emulator starts");
    let source = managed_identity_over_http(&emulator);
    let pool = Config::from_env_vars(emulator.env())
        .expect("the emulator's environment is a valid configuration")
        .builder()
        .token_source(source)
        .max_size(4)
        .build()
        .await
        .expect("pool builds against the emulator");
    notes::migrate(&pool).await.expect("notes table created");
    (emulator, pool)
}

/// A token source speaking the App Service managed identity protocol to the emulator.
pub fn managed_identity_over_http(emulator: &Emulator) -> FnSource {
    let endpoint = emulator.identity_endpoint();
    let header = emulator.identity_header().to_string();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    FnSource::new("emulator managed identity (HTTP)", move |scope: String| {
        let resource = scope
            .trim_end_matches("/.default")
            .replace(':', "%3A")
            .replace('/', "%2F");
        let url = format!("{endpoint}?api-version=2019-08-01&resource={resource}");
        let request = http.get(url).header("X-IDENTITY-HEADER", header.clone());
        async move {
            let res = request
                .send()
                .await
                .map_err(|e| TokenSourceError::new(format!("identity endpoint: {e}")))?;
            if !res.status().is_success() {
                return Err(TokenSourceError::new(format!(
                    "identity endpoint answered {}",
                    res.status()
                )));
            }
            let body: Value = res
                .json()
                .await
                .map_err(|e| TokenSourceError::new(format!("identity endpoint body: {e}")))?;
            let secret = body["access_token"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let expires_on: u64 = body["expires_on"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| TokenSourceError::new("identity endpoint: no expires_on"))?;
            Ok(Token::new(
                secret,
                std::time::UNIX_EPOCH + Duration::from_secs(expires_on),
            ))
        }
    })
}

/// Exercises `/healthz` and the `/notes` resource of a server at `base`
/// (e.g. `http://127.0.0.1:41234`), asserting status codes and bodies.
pub async fn healthz_and_notes_crud(base: &str) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");

    // Health: 200 and a report that says healthy.
    let res = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let report: Value = res.json().await.unwrap();
    assert_eq!(report["healthy"], json!(true), "report: {report}");

    // Create two notes.
    let res = http
        .post(format!("{base}/notes"))
        .json(&json!({ "body": "buy milk" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let first: Value = res.json().await.unwrap();
    assert_eq!(first["body"], json!("buy milk"));
    let first_id = first["id"].as_i64().expect("numeric id");
    assert!(first["created_at"].as_str().unwrap().ends_with('Z'));

    let res = http
        .post(format!("{base}/notes"))
        .json(&json!({ "body": "call the bank" }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let second: Value = res.json().await.unwrap();
    let second_id = second["id"].as_i64().unwrap();
    assert!(second_id > first_id);

    // An empty note is refused.
    let res = http
        .post(format!("{base}/notes"))
        .json(&json!({ "body": "   " }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);

    // List: newest first.
    let res = http.get(format!("{base}/notes")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let list: Vec<Value> = res.json().await.unwrap();
    let ids: Vec<i64> = list.iter().map(|n| n["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![second_id, first_id]);

    // Get one.
    let res = http
        .get(format!("{base}/notes/{first_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let got: Value = res.json().await.unwrap();
    assert_eq!(got, first);

    // Delete it; then it is gone.
    let res = http
        .delete(format!("{base}/notes/{first_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    let res = http
        .get(format!("{base}/notes/{first_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], json!(format!("note {first_id} not found")));
    let res = http
        .delete(format!("{base}/notes/{first_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    // A missing id that never existed.
    let res = http
        .get(format!("{base}/notes/999999"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);

    let res = http.get(format!("{base}/notes")).send().await.unwrap();
    let list: Vec<Value> = res.json().await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], json!(second_id));
}

/// With every session killed and logins refused (a revoked identity), `/healthz` must
/// answer 503 with `healthy: false`, and recover to 200 once logins work again.
pub async fn healthz_is_503_when_the_database_refuses_logins(base: &str, emulator: &Emulator) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .expect("http client");
    emulator.faults().set_refuse_logins(true);
    emulator.faults().kill_all_sessions();
    let res = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 503);
    let report: Value = res.json().await.unwrap();
    assert_eq!(report["healthy"], json!(false), "report: {report}");

    emulator.faults().clear();
    let res = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
}
