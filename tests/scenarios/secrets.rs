//! Secret hygiene: no token the emulator issued (nor a static password) appears in any
//! `tracing` output at TRACE, nor in any error's `Display` or `Debug`.
//!
//! Every scenario in this binary writes into one process-wide TRACE capture
//! (`support/secrets.rs`) and records every token its credential received. This test runs
//! a full lifecycle of its own (start-up, rotations, refresh failures, login refusals of
//! every kind, an expired token, a password role), so it proves the property by itself;
//! it also scans whatever the scenarios running next to it have captured so far.

use std::time::Duration;

use deadpool_entra::{FnSource, Pool, Token, TokenSourceError};
use deadpool_entra_tests::secrets::{
    captured_bytes, captured_contains, scan_for_leaks, secrets_recorded,
};
use deadpool_entra_tests::{
    Explain, SCOPE, builder_for, cli_credential, note_error, note_text, record_secret, run_load,
    short_token_policies, start_emulator,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_or_password_ever_reaches_logs_or_error_messages() {
    const LIFETIME: Duration = Duration::from_secs(3);
    let emu = start_emulator(LIFETIME).await;
    let explain = Explain::new("secret_hygiene", &emu);
    let credential = cli_credential(&emu);

    // 1. A healthy pool through several rotations.
    let pool = short_token_policies(builder_for(&emu, credential.clone()), LIFETIME)
        .max_size(4)
        .wait_timeout(Some(Duration::from_secs(10)))
        .build()
        .await
        .expect("pool builds");
    explain.pool(&pool);
    let report = run_load(
        &pool,
        8,
        Duration::from_secs(7),
        Duration::from_millis(10),
        100_000,
    )
    .await;
    assert_eq!(report.failed, 0, "{:?}", report.first_errors);
    note_text(&format!("{:?}", pool.stats()));
    note_text(&serde_json::to_string(&pool.stats()).expect("stats serialize"));
    note_text(&format!("{:?}", pool.health().await));

    // 2. Refresh failures (identity endpoint down for a while), then recovery.
    emu.faults().set_identity_outage(true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    emu.faults().set_identity_outage(false);
    let _ = run_load(
        &pool,
        4,
        Duration::from_secs(3),
        Duration::from_millis(10),
        100_000,
    )
    .await;

    // 3. A refused login (revoked), with its forced refresh and retry.
    pool.inner().retain(|_, _| false);
    emu.faults().set_refuse_logins(true);
    if let Err(e) = pool.get().await {
        note_error(&e);
    }
    emu.faults().set_refuse_logins(false);
    pool.close();

    // 4. Wrong audience and unknown role: real tokens sent and refused.
    for b in [
        builder_for(&emu, credential.clone()).scope("https://management.azure.com/.default"),
        builder_for(&emu, credential.clone()).user("no_such_role"),
    ] {
        match b.max_size(1).build().await {
            Err(e) => {
                note_error(&e);
            }
            Ok(p) => {
                if let Err(e) = p.get().await {
                    note_error(&e);
                }
                p.close();
            }
        }
    }

    // 5. A token source that lies about expiry and hands over an expired token: the
    //    server's refusal travels through the error path.
    let expired = emu.issue_expired_token(emu.default_user());
    record_secret(&expired);
    let lying = {
        let expired = expired.clone();
        FnSource::new("lying-source", move |_scope: String| {
            let t = expired.clone();
            async move { Ok::<_, TokenSourceError>(Token::expiring_in(t, Duration::from_secs(600))) }
        })
    };
    let p = builder_for(&emu, credential.clone())
        .token_source(lying)
        .max_size(1)
        .build()
        .await;
    match p {
        Err(e) => {
            note_error(&e);
        }
        Ok(p) => {
            if let Err(e) = p.get().await {
                note_error(&e);
            }
            note_text(&format!("{:?}", p.stats()));
            p.close();
        }
    }

    // 6. A token issued for this test, used through a closure source, and a wrong password.
    let issued = emu.issue_token(
        emu.default_user(),
        SCOPE.trim_end_matches("/.default"),
        Duration::from_secs(600),
    );
    record_secret(&issued);
    let source = FnSource::new("issued", move |_scope: String| {
        let t = issued.clone();
        async move { Ok::<_, TokenSourceError>(Token::expiring_in(t, Duration::from_secs(590))) }
    });
    let p = builder_for(&emu, credential.clone())
        .token_source(source)
        .max_size(1)
        .build()
        .await
        .expect("builds");
    deadpool_entra_tests::one_request(&p)
        .await
        .expect("an issued token works");
    p.close();
    const PASSWORD: &str = "hygiene-password-7f3a9c";
    record_secret(PASSWORD);
    emu.add_password_role("hygiene_pw", PASSWORD)
        .await
        .expect("password role");
    let wrong = "hygiene-wrong-password-1b2c";
    record_secret(wrong);
    for pw in [PASSWORD, wrong] {
        let b = Pool::builder()
            .host(emu.pg_host())
            .port(emu.pg_port())
            .dbname(emu.database())
            .user("hygiene_pw")
            .ssl_root_cert(emu.ca_cert_path())
            .password(pw)
            .max_size(1);
        note_text(&format!("{b:?}"));
        match b.build().await {
            Err(e) => {
                note_error(&e);
            }
            Ok(p) => {
                match p.get().await {
                    Err(e) => {
                        note_error(&e);
                    }
                    Ok(c) => drop(c),
                }
                p.close();
            }
        }
    }

    // The capture is live and holds the library's events at every level.
    assert!(
        captured_contains("deadpool_entra"),
        "the capture holds the library's events"
    );
    assert!(
        captured_contains("token acquired"),
        "token events are logged"
    );
    assert!(
        captured_contains("TRACE") || captured_contains("DEBUG"),
        "verbose levels are captured"
    );
    assert!(
        credential.tokens() >= 3,
        "the credential issued tokens: {}",
        credential.tokens()
    );

    let leaks = scan_for_leaks();
    explain.note(format!(
        "scanned {} bytes for {} secrets (recorded so far: {}), truncated: {}",
        leaks.bytes_scanned,
        leaks.secrets_checked,
        secrets_recorded(),
        leaks.truncated
    ));
    assert!(
        leaks.bytes_scanned > 10_000,
        "captured {} bytes",
        captured_bytes()
    );
    assert!(
        leaks.leaks.is_empty(),
        "secrets found in logs or errors: {:#?}",
        leaks.leaks
    );
}
