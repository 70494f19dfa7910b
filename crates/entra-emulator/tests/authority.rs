//! The Entra authority on loopback HTTPS, by raw requests as `ClientSecretCredential`,
//! `ClientCertificateCredential` and `WorkloadIdentityCredential` send them: tokens for a
//! service principal's secret, for an assertion signed with its certificate and for a
//! federated token, and Entra's refusals with their `AADSTS` codes. (The real
//! credentials, which read the process environment, run against it in the scenarios of
//! `tests/`, through the library's pool.)

use std::time::Duration;

use entra_emulator::{Emulator, IdentitySpec, OSSRDBMS_RESOURCE, OSSRDBMS_SCOPE, TENANT_ID};
use serde_json::Value;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const SUBJECT: &str = "system:serviceaccount:default:app";

/// An HTTPS client that trusts the emulator's CA and nothing else.
fn https(emu: &Emulator) -> reqwest::Client {
    let pem = std::fs::read(emu.ca_cert_path()).unwrap();
    let ca = reqwest::Certificate::from_pem(&pem).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// POSTs `form` to the token endpoint of `tenant`; returns the status and the JSON body.
async fn token_request(emu: &Emulator, tenant: &str, form: &[(&str, String)]) -> (u16, Value) {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
        .finish();
    let r = https(emu)
        .post(format!(
            "{}/{tenant}/oauth2/v2.0/token",
            emu.authority_host()
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("the authority answers over HTTPS");
    (r.status().as_u16(), r.json().await.unwrap())
}

fn assert_refused(what: &str, (status, body): &(u16, Value), want_status: u16, code: u32) {
    assert_eq!(*status, want_status, "{what}: {body}");
    assert_eq!(body["error_codes"][0], code, "{what}: {body}");
    let text = body["error_description"].as_str().unwrap_or("");
    assert!(
        text.starts_with(&format!("AADSTS{code}: ")),
        "{what}: {body}"
    );
    assert!(body.get("access_token").is_none(), "{what}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_with_a_secret_and_with_a_federated_token() {
    let emu = Emulator::builder()
        .identity(IdentitySpec::user_assigned("aks-workload"))
        .token_lifetime(Duration::from_secs(600))
        .start()
        .await
        .expect("start");
    let sp = emu.add_service_principal("ci-deployer").await.unwrap();
    assert!(
        !format!("{sp:?}").contains(&sp.secret),
        "Debug hides the secret"
    );

    // The secret: a token for the service principal, minted on every request.
    let secret_form = |secret: &str| {
        vec![
            ("client_id", sp.client_id.clone()),
            ("grant_type", "client_credentials".to_owned()),
            ("scope", OSSRDBMS_SCOPE.to_owned()),
            ("client_secret", secret.to_owned()),
        ]
    };
    let form = secret_form(&sp.secret);
    let (status, body) = token_request(&emu, TENANT_ID, &form).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 600);
    let token = body["access_token"].as_str().unwrap().to_owned();
    let claims = entra_emulator::decode_claims(&token).unwrap();
    assert_eq!(claims["aud"], OSSRDBMS_RESOURCE);
    assert_eq!(claims["appid"], sp.client_id.as_str());
    assert_eq!(claims["oid"], sp.object_id.as_str());
    assert_eq!(claims["idtyp"], "app");
    assert!(claims.get("upn").is_none() && claims.get("xms_mirid").is_none());
    let (_, again) = token_request(&emu, TENANT_ID, &form).await;
    assert_ne!(
        again["access_token"],
        token.as_str(),
        "Entra mints per request"
    );
    assert_eq!(emu.counters().tokens_issued_authority, 2);

    // The tenant's OpenID configuration, which MSAL-based clients (Python's
    // azure-identity) read first, names this token endpoint.
    let url = |tenant: &str| {
        format!(
            "{}/{tenant}/v2.0/.well-known/openid-configuration",
            emu.authority_host()
        )
    };
    let config: Value = https(&emu)
        .get(url(TENANT_ID))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        config["token_endpoint"],
        format!("{}/{TENANT_ID}/oauth2/v2.0/token", emu.authority_host()),
        "{config}"
    );
    let r = https(&emu)
        .get(url("11111111-2222-3333-4444-555555555555"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert_refused(
        "discovery of another tenant",
        &(status, r.json().await.unwrap()),
        400,
        90002,
    );

    // Entra's refusals.
    let wrong = secret_form("not-the-secret");
    assert_refused(
        "wrong secret",
        &token_request(&emu, TENANT_ID, &wrong).await,
        401,
        7000215,
    );
    assert_refused(
        "an empty body",
        &token_request(&emu, TENANT_ID, &[]).await,
        400,
        900144,
    );
    let mut unknown = form.clone();
    unknown[0].1 = "00000000-0000-0000-0000-000000000bad".to_owned();
    assert_refused(
        "unknown client",
        &token_request(&emu, TENANT_ID, &unknown).await,
        400,
        700016,
    );
    let mut no_default = form.clone();
    no_default[2].1 = OSSRDBMS_RESOURCE.to_owned();
    assert_refused(
        "scope without /.default",
        &token_request(&emu, TENANT_ID, &no_default).await,
        400,
        1002012,
    );
    assert_refused(
        "another tenant",
        &token_request(&emu, "11111111-2222-3333-4444-555555555555", &form).await,
        400,
        90002,
    );

    // Workload identity: a federated credential on the user-assigned identity trusts the
    // emulator's OIDC issuer for one subject.
    let principals: Value = reqwest::get(format!("{}/principals", emu.admin_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mi_client_id = principals
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "aks-workload")
        .and_then(|p| p["client_id"].as_str())
        .unwrap()
        .to_owned();
    assert!(
        emu.add_federated_credential(&emu.default_identity().client_id, SUBJECT)
            .is_err(),
        "a system-assigned identity cannot have federated credentials"
    );
    emu.add_federated_credential(&mi_client_id, SUBJECT)
        .unwrap();
    let assertion_form = |assertion: String| {
        vec![
            ("client_assertion", assertion),
            ("client_assertion_type", ASSERTION_TYPE.to_owned()),
            ("client_id", mi_client_id.clone()),
            ("grant_type", "client_credentials".to_owned()),
            ("scope", OSSRDBMS_SCOPE.to_owned()),
        ]
    };
    let ask = |form: Vec<(&'static str, String)>| {
        let emu = &emu;
        async move { token_request(emu, TENANT_ID, &form).await }
    };
    let file = emu.write_federated_token_file(SUBJECT).unwrap();
    let federated = std::fs::read_to_string(&file).unwrap();
    let (status, body) = ask(assertion_form(federated.clone())).await;
    assert_eq!(status, 200, "{body}");
    let claims = entra_emulator::decode_claims(body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims["appid"], mi_client_id.as_str());
    assert!(
        claims["xms_mirid"]
            .as_str()
            .unwrap()
            .ends_with("/userAssignedIdentities/aks-workload"),
        "{claims:?}"
    );

    // Another subject, an expired token, an Entra access token (another issuer) and a
    // tampered signature are refused.
    let other = emu.federated_token(
        "system:serviceaccount:default:other",
        Duration::from_secs(60),
    );
    assert_refused(
        "another subject",
        &ask(assertion_form(other)).await,
        400,
        700213,
    );
    let entra_token = emu.issue_token("aks-workload", OSSRDBMS_RESOURCE, Duration::from_secs(60));
    assert_refused(
        "a token of another issuer",
        &ask(assertion_form(entra_token)).await,
        400,
        700211,
    );
    let mut tampered = federated.clone();
    tampered.truncate(tampered.len() - 4);
    tampered.push_str("AAAA");
    assert_refused(
        "a bad signature",
        &ask(assertion_form(tampered)).await,
        400,
        50027,
    );
    let wrong_audience =
        emu.federated_token_for(SUBJECT, "api://some-other-app", Duration::from_secs(60));
    assert_refused(
        "a federated token for another audience",
        &ask(assertion_form(wrong_audience)).await,
        400,
        700212,
    );
    let short = emu.federated_token(SUBJECT, Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_refused(
        "an expired federated token",
        &ask(assertion_form(short)).await,
        400,
        700024,
    );
    // A federated token is no secret: the service principal's client id with a federated
    // token of a subject it has no credential for.
    let mut sp_pairs = assertion_form(federated);
    sp_pairs[2].1 = sp.client_id.clone();
    assert_refused(
        "no credential on the app",
        &ask(sp_pairs).await,
        400,
        700211,
    );

    // Removing the identity removes its federated credentials: an identity registered
    // again with the same client id does not inherit them.
    let ok_form = assertion_form(emu.federated_token(SUBJECT, Duration::from_secs(60)));
    emu.remove_principal("aks-workload").await.unwrap();
    emu.add_identity(IdentitySpec {
        client_id: Some(mi_client_id.clone()),
        ..IdentitySpec::user_assigned("aks-workload-2")
    })
    .await
    .unwrap();
    assert_refused(
        "a credential of a removed identity",
        &ask(ok_form).await,
        400,
        700211,
    );

    let c = emu.counters();
    assert_eq!(c.tokens_issued_authority, 3, "{c:?}");
    assert_eq!(c.identity_requests_refused, 12, "{c:?}");

    // The identity outage fault closes the authority's connections too.
    emu.faults().set_identity_outage(true);
    let r = https(&emu)
        .post(format!(
            "{}/{TENANT_ID}/oauth2/v2.0/token",
            emu.authority_host()
        ))
        .body("")
        .send()
        .await;
    assert!(r.is_err(), "{r:?}");
    emu.faults().set_identity_outage(false);
    emu.shutdown().await;
}

/// A client assertion as `ClientCertificateCredential` makes it: RS256 with the key of the
/// PEM file at `pem`, `x5t` the certificate's SHA-1 in standard base64.
fn cert_assertion(pem: &std::path::Path, claims: &Value) -> String {
    cert_assertion_with(pem, claims, false)
}

/// The same, or (`s256`) as recent MSALs name the certificate: `x5t#S256`, its SHA-256
/// in base64url.
fn cert_assertion_with(pem: &std::path::Path, claims: &Value, s256: bool) -> String {
    use aws_lc_rs::signature::RSA_PKCS1_SHA256;
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivatePkcs8KeyDer};
    let cert = CertificateDer::from_pem_file(pem).unwrap();
    let key = PrivatePkcs8KeyDer::from_pem_file(pem).unwrap();
    let key = aws_lc_rs::rsa::KeyPair::from_pkcs8(key.secret_pkcs8_der()).unwrap();
    let header = if s256 {
        let t = B64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &cert));
        serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t#S256": t})
    } else {
        let t = STANDARD.encode(aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
            &cert,
        ));
        serde_json::json!({"alg": "RS256", "typ": "JWT", "x5t": t})
    };
    let mut jwt = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let mut sig = vec![0; key.public_modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        jwt.as_bytes(),
        &mut sig,
    )
    .unwrap();
    jwt.push('.');
    jwt.push_str(&B64.encode(sig));
    jwt
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_with_a_certificate() {
    let emu = Emulator::builder()
        .token_lifetime(Duration::from_secs(600))
        .start()
        .await
        .expect("start");
    let sp = emu.add_service_principal("cert-app").await.unwrap();
    let cert = emu.add_client_certificate(&sp).unwrap();
    let pem = std::fs::read_to_string(&cert.path).unwrap();
    assert!(pem.contains("BEGIN PRIVATE KEY") && pem.contains("BEGIN CERTIFICATE"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&cert.path).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "the key file is the owner's only");
    assert_eq!(cert.thumbprint.len(), 40);
    let shown = format!("{cert:?}");
    assert!(
        shown.contains(&cert.thumbprint)
            && shown.contains(&sp.client_id)
            && !shown.contains("PRIVATE"),
        "{shown}"
    );
    let other_sp = emu.add_service_principal("other-app").await.unwrap();
    let other = emu.add_client_certificate(&other_sp).unwrap();

    let endpoint = format!("{}/{TENANT_ID}/oauth2/v2.0/token", emu.authority_host());
    let claims = |iss: &str, sub: &str, aud: &str, exp_offset: i64| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        serde_json::json!({
            "aud": aud, "iss": iss, "sub": sub, "jti": uuid_like(),
            "nbf": now - 5, "exp": now + exp_offset,
        })
    };
    let form = |assertion: String| {
        vec![
            ("client_assertion", assertion),
            ("client_assertion_type", ASSERTION_TYPE.to_owned()),
            ("client_id", sp.client_id.clone()),
            ("grant_type", "client_credentials".to_owned()),
            ("scope", OSSRDBMS_SCOPE.to_owned()),
        ]
    };
    let id = sp.client_id.as_str();
    let ok = cert_assertion(&cert.path, &claims(id, id, &endpoint, 600));
    let (status, body) = token_request(&emu, TENANT_ID, &form(ok.clone())).await;
    assert_eq!(status, 200, "{body}");
    let token = entra_emulator::decode_claims(body["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(token["appid"], id);
    assert_eq!(token["oid"], sp.object_id.as_str());

    // NumericDates with a fraction, as MSAL for Python sends them (`time.time() + 600`).
    let mut fractional = claims(id, id, &endpoint, 600);
    for k in ["nbf", "exp"] {
        fractional[k] = serde_json::json!(fractional[k].as_i64().unwrap() as f64 + 0.25);
    }
    let (status, body) = token_request(
        &emu,
        TENANT_ID,
        &form(cert_assertion(&cert.path, &fractional)),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Refused: another app's certificate, a tampered signature, an expired assertion,
    // another subject, another audience.
    let others = cert_assertion(&other.path, &claims(id, id, &endpoint, 600));
    let refused = token_request(&emu, TENANT_ID, &form(others)).await;
    assert_refused("another app's certificate", &refused, 401, 700027);
    let text = refused.1["error_description"].as_str().unwrap();
    assert!(
        text.contains("The key was not found") && text.contains(&other.thumbprint),
        "{text}"
    );
    let mut tampered = ok.clone();
    tampered.truncate(tampered.len() - 4);
    tampered.push_str("AAAA");
    let refused = token_request(&emu, TENANT_ID, &form(tampered)).await;
    assert_refused("a tampered signature", &refused, 401, 700027);
    assert!(
        refused.1["error_description"]
            .as_str()
            .unwrap()
            .contains("did not match")
    );
    let expired = cert_assertion(&cert.path, &claims(id, id, &endpoint, -10));
    assert_refused(
        "an expired assertion",
        &token_request(&emu, TENANT_ID, &form(expired)).await,
        401,
        700024,
    );
    let other_sub = cert_assertion(&cert.path, &claims(id, &other_sp.client_id, &endpoint, 600));
    assert_refused(
        "another subject",
        &token_request(&emu, TENANT_ID, &form(other_sub)).await,
        401,
        700021,
    );
    // The audience must be this authority's endpoint, not the same path on another host.
    let elsewhere = format!("https://evil.example/{TENANT_ID}/oauth2/v2.0/token");
    let other_aud = cert_assertion(&cert.path, &claims(id, id, &elsewhere, 600));
    assert_refused(
        "another authority's endpoint",
        &token_request(&emu, TENANT_ID, &form(other_aud)).await,
        401,
        700023,
    );
    let mut early = claims(id, id, &endpoint, 3600);
    early["nbf"] = serde_json::json!(early["nbf"].as_i64().unwrap() + 1200);
    assert_refused(
        "an assertion not valid for 20 minutes",
        &token_request(&emu, TENANT_ID, &form(cert_assertion(&cert.path, &early))).await,
        401,
        700024,
    );
    // Signed with the app's certificate, but issued in another app's name.
    let wrong_iss = cert_assertion(&cert.path, &claims(&other_sp.client_id, id, &endpoint, 600));
    assert_refused(
        "another issuer",
        &token_request(&emu, TENANT_ID, &form(wrong_iss)).await,
        401,
        700021,
    );
    // The v1 endpoint as audience and the SHA-256 thumbprint (`x5t#S256`) are accepted.
    let v1 = endpoint.replace("/oauth2/v2.0/token", "/oauth2/token");
    let msal_style = cert_assertion_with(&cert.path, &claims(id, id, &v1, 600), true);
    let (status, body) = token_request(&emu, TENANT_ID, &form(msal_style)).await;
    assert_eq!(status, 200, "{body}");

    // Removing the app removes its certificates: a principal registered later with the
    // same client id does not inherit them.
    emu.remove_principal("cert-app").await.unwrap();
    emu.add_identity(IdentitySpec {
        client_id: Some(sp.client_id.clone()),
        ..IdentitySpec::user_assigned("cert-app-2")
    })
    .await
    .unwrap();
    assert_refused(
        "a certificate of a removed app",
        &token_request(&emu, TENANT_ID, &form(ok)).await,
        401,
        700027,
    );
    let c = emu.counters();
    assert_eq!(
        (c.tokens_issued_authority, c.identity_requests_refused),
        (3, 8),
        "{c:?}"
    );
    emu.shutdown().await;
}

/// A fresh `jti`.
fn uuid_like() -> String {
    format!("{:032x}", rand_u128())
}

fn rand_u128() -> u128 {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    u128::from_le_bytes(b)
}
