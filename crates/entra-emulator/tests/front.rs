//! The PostgreSQL front: token logins, refusals with Azure's texts, sessions, cancel, faults.

mod common;

use std::time::{Duration, Instant};

use common::{bounded, db_error, login};
use entra_emulator::{Emulator, IdentitySpec, OSSRDBMS_RESOURCE, OSSRDBMS_SCOPE, messages};
use tokio_postgres::NoTls;

const HOUR: Duration = Duration::from_secs(3600);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_logins_and_refusals() {
    let emu = Emulator::builder()
        .identity(IdentitySpec::user_assigned("worker"))
        .password_role("bench", "s3cret")
        .start()
        .await
        .expect("start");
    bounded(async {
        let mi = emu.default_identity().clone();

        // A token for the default identity logs in as its role; a scope works as resource too.
        let token = emu.issue_token(&mi.name, OSSRDBMS_SCOPE, HOUR);
        let client = login(&emu, &mi.name, &token).await.expect("token login");
        let row = client
            .query_one("SELECT current_user::text", &[])
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), mi.name);
        // The principal can create tables (granted like pgaadauth_create_principal does).
        client
            .batch_execute("CREATE TABLE t (id int); INSERT INTO t VALUES (1)")
            .await
            .unwrap();
        assert_eq!(emu.counters().sessions_open, 1);
        drop(client);

        // The user-assigned identity and the user, each to its own role.
        let t = emu.issue_token("worker", OSSRDBMS_RESOURCE, HOUR);
        let c = login(&emu, "worker", &t).await.expect("worker login");
        assert_eq!(
            c.query_one("SELECT current_user::text", &[])
                .await
                .unwrap()
                .get::<_, String>(0),
            "worker"
        );
        let t = emu.issue_token(emu.default_user(), OSSRDBMS_RESOURCE, HOUR);
        let c = login(&emu, emu.default_user(), &t)
            .await
            .expect("user login");
        assert_eq!(
            c.query_one("SELECT current_user::text", &[])
                .await
                .unwrap()
                .get::<_, String>(0),
            emu.default_user()
        );
        // Static password role through the same front.
        let c = login(&emu, "bench", "s3cret")
            .await
            .expect("password login");
        assert_eq!(
            c.query_one("SELECT count(*) FROM t", &[])
                .await
                .unwrap()
                .get::<_, i64>(0),
            1
        );
        assert_eq!(emu.counters().logins_accepted, 4);

        // Expired.
        let before = emu.counters();
        let e = login(&emu, &mi.name, &emu.issue_expired_token(&mi.name))
            .await
            .unwrap_err();
        assert_eq!(
            db_error(&e),
            ("28000".into(), messages::TOKEN_EXPIRED.into())
        );
        let after = emu.counters();
        assert_eq!(
            after.logins_refused_expired,
            before.logins_refused_expired + 1
        );
        assert_eq!(after.expired_token_logins, before.expired_token_logins + 1);

        // Wrong audience.
        let t = emu.issue_token(&mi.name, "https://management.azure.com/.default", HOUR);
        let e = login(&emu, &mi.name, &t).await.unwrap_err();
        assert_eq!(
            db_error(&e),
            ("28000".into(), messages::WRONG_AUDIENCE.into())
        );
        assert_eq!(emu.counters().logins_refused_audience, 1);

        // Bad signature: a claim changed after signing.
        let t = emu.issue_token(&mi.name, OSSRDBMS_RESOURCE, HOUR);
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        let mut claims = entra_emulator::decode_claims(&t).unwrap();
        claims.insert("oid".into(), "00000000-0000-0000-0000-000000000000".into());
        use base64::Engine as _;
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&claims).unwrap());
        let e = login(&emu, &mi.name, &parts.join(".")).await.unwrap_err();
        let (code, msg) = db_error(&e);
        assert_eq!(code, "28000");
        assert!(msg.starts_with(messages::TOKEN_INVALID_PREFIX), "{msg}");
        assert!(msg.contains("signature"), "{msg}");
        // Garbage for a token role counts as an invalid token too.
        let e = login(&emu, &mi.name, "not.a.token").await.unwrap_err();
        assert!(db_error(&e).1.starts_with(messages::TOKEN_INVALID_PREFIX));
        assert_eq!(emu.counters().logins_refused_signature, 2);

        // Unknown role: a valid token for a principal the server does not know...
        let t = emu.issue_token("ghost@contoso.example", OSSRDBMS_RESOURCE, HOUR);
        let e = login(&emu, "ghost@contoso.example", &t).await.unwrap_err();
        let (code, msg) = db_error(&e);
        assert_eq!(code, "28000");
        assert!(
            msg.contains("role \"ghost@contoso.example\" does not exist"),
            "{msg}"
        );
        // ...and a principal removed while running.
        let t = emu.issue_token("worker", OSSRDBMS_RESOURCE, HOUR);
        emu.remove_principal("worker").await.unwrap();
        let e = login(&emu, "worker", &t).await.unwrap_err();
        assert_eq!(db_error(&e).0, "28000");
        assert_eq!(emu.counters().logins_refused_unknown_role, 2);

        // Wrong static password.
        let e = login(&emu, "bench", "wrong").await.unwrap_err();
        assert_eq!(
            db_error(&e),
            (
                "28P01".into(),
                "password authentication failed for user \"bench\"".into()
            )
        );
        assert_eq!(emu.counters().logins_refused_bad_password, 1);

        // Plaintext.
        let mut cfg = common::config(
            emu.pg_host(),
            emu.pg_port(),
            emu.database(),
            "bench",
            "s3cret",
        );
        cfg.ssl_mode(tokio_postgres::config::SslMode::Disable);
        let Err(e) = cfg.connect(NoTls).await else {
            panic!("plaintext login accepted")
        };
        assert_eq!(
            db_error(&e),
            ("28000".into(), messages::SSL_REQUIRED.into())
        );
        assert_eq!(emu.counters().logins_refused_plaintext, 1);

        // Revoked (fault), then cleared.
        emu.faults().set_refuse_logins(true);
        let t = emu.issue_token(&mi.name, OSSRDBMS_RESOURCE, HOUR);
        let e = login(&emu, &mi.name, &t).await.unwrap_err();
        assert_eq!(
            db_error(&e),
            ("28000".into(), messages::TOKEN_REVOKED.into())
        );
        assert_eq!(emu.counters().logins_refused_revoked, 1);
        // Static passwords are not affected.
        login(&emu, "bench", "s3cret")
            .await
            .expect("password login during refuse_logins");
        emu.faults().clear();
        login(&emu, &mi.name, &t).await.expect("login after clear");

        // No refusal was counted twice.
        let c = emu.counters();
        assert_eq!(c.logins_refused_expired, 1);
        assert_eq!(c.logins_accepted, 6);
    })
    .await;
    emu.shutdown().await;
}

/// A role records the object id and the type (user, service principal, group) it was
/// created for, and Azure refuses a token that does not fit it with its own texts, not
/// with "does not exist": the role exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_role_refuses_another_principal_s_token_with_azure_s_texts() {
    let emu = Emulator::builder()
        .identity(IdentitySpec::user_assigned("worker"))
        .start()
        .await
        .expect("start");
    bounded(async {
        let mi = emu.default_identity().clone();
        let claims = |t: &str| entra_emulator::decode_claims(t).expect("claims");

        // Another identity's token for this identity's role: the role's security label
        // holds another object id (as after the identity was deleted and recreated).
        let t = emu.issue_token("worker", OSSRDBMS_RESOURCE, HOUR);
        let c = claims(&t);
        let e = login(&emu, &mi.name, &t).await.unwrap_err();
        assert_eq!(
            db_error(&e),
            (
                "28000".into(),
                format!(
                    "Service principal oid mismatch for role \"The oid in the security label [{}] does not match the appid [{}] or oid [{}] in the token.\"",
                    mi.object_id,
                    c["appid"].as_str().unwrap(),
                    c["oid"].as_str().unwrap()
                )
            )
        );
        assert_eq!(
            db_error(&e).1,
            messages::oid_mismatch(
                &mi.object_id,
                c["appid"].as_str().unwrap(),
                c["oid"].as_str().unwrap()
            )
        );

        // An application's token (a managed identity's: `idtyp` app, no `upn`) for a
        // role created for a user.
        let user = emu.default_user().to_owned();
        let t = emu.issue_token(&mi.name, OSSRDBMS_RESOURCE, HOUR);
        let e = login(&emu, &user, &t).await.unwrap_err();
        assert_eq!(
            db_error(&e),
            (
                "28000".into(),
                format!(
                    "Microsoft Entra user token for role \"{user}\" is neither an AAD_AUTH_TOKENTYPE_APP_USER or an AAD_AUTH_TOKENTYPE_APP_OBO token."
                )
            )
        );

        // A user's token for a role created for a service principal (a managed identity).
        let t = emu.issue_token(&user, OSSRDBMS_RESOURCE, HOUR);
        let e = login(&emu, &mi.name, &t).await.unwrap_err();
        assert_eq!(
            db_error(&e),
            (
                "28000".into(),
                format!(
                    "Service principals cannot generate AAD_AUTH_TOKENTYPE_APP_USER tokens for role \"{}\".",
                    mi.name
                )
            )
        );

        let c = emu.counters();
        assert_eq!(c.logins_refused_oid_mismatch, 1);
        assert_eq!(c.logins_refused_token_type, 2);
        assert_eq!(c.logins_refused_unknown_role, 0, "the roles exist");
        assert_eq!(c.logins_accepted, 0);

        // Each principal's own token still logs in to its own role.
        let t = emu.issue_token(&mi.name, OSSRDBMS_RESOURCE, HOUR);
        login(&emu, &mi.name, &t).await.expect("own role");
        let t = emu.issue_token(&user, OSSRDBMS_RESOURCE, HOUR);
        login(&emu, &user, &t).await.expect("own role");
    })
    .await;
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_outlives_its_token_until_killed() {
    let emu = Emulator::builder()
        .token_lifetime(Duration::from_secs(2))
        .start()
        .await
        .expect("start");
    bounded(async {
        let mi = emu.default_identity().name.clone();
        let token = emu.issue_token(&mi, OSSRDBMS_RESOURCE, Duration::from_secs(2));
        let client = login(&emu, &mi, &token).await.expect("login");
        // The one place real time is used: let the token expire.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let v: i32 = client.query_one("SELECT 41 + 1", &[]).await.unwrap().get(0);
        assert_eq!(v, 42, "an open session outlives its token");
        // The same token can no longer log in.
        let e = login(&emu, &mi, &token).await.unwrap_err();
        assert_eq!(db_error(&e).1, messages::TOKEN_EXPIRED);
        assert_eq!(emu.counters().expired_token_logins, 1);

        // A failover ends it.
        assert_eq!(emu.counters().sessions_open, 1);
        assert_eq!(emu.faults().kill_all_sessions(), 1);
        let e = client.query_one("SELECT 1", &[]).await.unwrap_err();
        assert!(e.is_closed() || e.as_db_error().is_none(), "{e}");
        let c = emu.counters();
        assert_eq!(c.sessions_killed, 1);
        assert_eq!(c.sessions_open, 0);
        // New logins work after the failover.
        let fresh = emu.issue_token(&mi, OSSRDBMS_RESOURCE, Duration::from_secs(60));
        let client = login(&emu, &mi, &fresh)
            .await
            .expect("login after failover");
        client.query_one("SELECT 1", &[]).await.unwrap();
    })
    .await;
    emu.shutdown().await;
}

// A current-thread runtime on purpose: the emulator serves from its own runtime.
#[tokio::test]
async fn cancel_passes_through_and_login_latency_applies() {
    let emu = Emulator::builder()
        .password_role("bench", "pw")
        .start()
        .await
        .expect("start");
    bounded(async {
        let client = login(&emu, "bench", "pw").await.expect("login");
        let cancel = client.cancel_token();
        let mut sleeper = tokio::spawn(async move {
            client
                .query_one("SELECT pg_sleep(30)", &[])
                .await
                .map(|_| ())
        });
        // A cancel that arrives before the query is a no-op: retry until the query ends.
        let outcome = loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            cancel
                .cancel_query(common::tls(emu.ca_cert_path()))
                .await
                .expect("cancel through the front");
            if let Ok(r) = tokio::time::timeout(Duration::from_secs(2), &mut sleeper).await {
                break r.unwrap();
            }
        };
        let e = outcome.expect_err("query was cancelled");
        assert_eq!(db_error(&e).0, "57014", "{e}");

        emu.faults().set_login_latency(Duration::from_millis(400));
        let start = Instant::now();
        login(&emu, "bench", "pw").await.expect("slow login");
        assert!(start.elapsed() >= Duration::from_millis(400));

        // A failover while a login is in flight ends that login too.
        emu.faults().set_login_latency(Duration::from_secs(2));
        let killed_before = emu.counters().sessions_killed;
        let (res, _) = tokio::join!(login(&emu, "bench", "pw"), async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            emu.faults().kill_all_sessions()
        });
        assert!(
            res.is_err(),
            "a login in flight during a failover must fail"
        );
        assert!(emu.counters().sessions_killed > killed_before);
        emu.faults().clear();
        login(&emu, "bench", "pw")
            .await
            .expect("login after the failover");
    })
    .await;
    emu.shutdown().await;
}

#[test]
fn handles_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Emulator>();
    check::<entra_emulator::Faults>();
    check::<entra_emulator::Counters>();
    check::<entra_emulator::Error>();
}

/// libpq (`psql` from the cluster's binaries) with `PGSSLMODE=verify-full`, the environment
/// from `Emulator::env()` and a token as `PGPASSWORD`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_logs_in_with_verify_full() {
    let emu = Emulator::start().await.expect("start");
    let psql = emu.cluster().bin_dir().join("psql");
    let token = emu.issue_token(emu.default_user(), OSSRDBMS_SCOPE, HOUR);
    let run = |extra: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(&psql);
        cmd.args(["-X", "-tA", "-c", "SELECT current_user"])
            .envs(emu.env())
            .env("PGUSER", emu.default_user())
            .env("PGPASSWORD", &token)
            .env("PGCONNECT_TIMEOUT", "10");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd.output().expect("run psql")
    };
    let out = tokio::task::block_in_place(|| run(&[]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        emu.default_user()
    );
    // By IP address too (the certificate names 127.0.0.1).
    let out = tokio::task::block_in_place(|| run(&[("PGHOST", "127.0.0.1")]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Plaintext is refused with Azure's text.
    let out = tokio::task::block_in_place(|| run(&[("PGSSLMODE", "disable")]));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(messages::SSL_REQUIRED));
    emu.shutdown().await;
}
