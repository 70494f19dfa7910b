//! `deadpool-entra doctor` against the emulator: the command, as a user runs it, with the
//! environment the emulator prints; one broken setup at a time, each failing at its check
//! with its fix; and never a token in the output.

use std::{collections::HashMap, process::Stdio};

use entra_emulator::Emulator;
use serde_json::Value;

/// One run of the command: its exit code, its text output and its JSON report.
struct Run {
    code: i32,
    text: String,
    json: Value,
}

impl Run {
    fn check(&self, name: &str) -> &Value {
        self.json["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == name))
            .unwrap_or_else(|| panic!("no check {name} in {}", self.text))
    }

    fn verdict(&self, name: &str) -> &str {
        self.check(name)["verdict"].as_str().unwrap_or("")
    }

    fn fix(&self, name: &str) -> &str {
        self.check(name)["fix"].as_str().unwrap_or("")
    }

    fn found(&self, name: &str) -> &str {
        self.check(name)["found"].as_str().unwrap_or("")
    }

    fn fact(&self, check: &str, fact: &str) -> String {
        self.check(check)["evidence"]
            .as_array()
            .and_then(|e| e.iter().find(|f| f["name"] == fact))
            .and_then(|f| f["value"].as_str())
            .unwrap_or("")
            .to_owned()
    }

    fn warnings(&self, name: &str) -> String {
        self.check(name)["warnings"].to_string()
    }

    /// The first failed check's name.
    fn failed_at(&self) -> &str {
        self.json["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["verdict"] == "failed"))
            .and_then(|c| c["name"].as_str())
            .unwrap_or("none")
    }
}

/// Runs `deadpool-entra doctor` with exactly `env` (nothing inherited), in text and in
/// JSON. Asserts that neither output holds a token (every JWT starts with `eyJ`, the
/// encoding of `{"`).
async fn doctor(env: &HashMap<String, String>, args: &[&str]) -> Run {
    let run = |json: bool| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_deadpool-entra"));
        cmd.arg("doctor")
            .args(args)
            .env_clear()
            .envs(env)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if json {
            cmd.arg("--json");
        }
        cmd.output()
    };
    let text = run(false).await.expect("the command runs");
    let json = run(true).await.expect("the command runs");
    let out = String::from_utf8_lossy(&text.stdout).into_owned();
    let json_out = String::from_utf8_lossy(&json.stdout).into_owned();
    for (what, s) in [
        ("text", &out),
        ("json", &json_out),
        (
            "stderr",
            &String::from_utf8_lossy(&text.stderr).into_owned(),
        ),
    ] {
        assert!(!s.contains("eyJ"), "a token in the {what} output: {s}");
    }
    assert_eq!(text.status.code(), json.status.code(), "{out}");
    eprintln!("$ deadpool-entra doctor {}\n{out}", args.join(" "));
    Run {
        code: text.status.code().unwrap_or(-1),
        text: out,
        json: serde_json::from_str(&json_out)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {json_out}")),
    }
}

fn env_of(emu: &Emulator) -> HashMap<String, String> {
    emu.env().into_iter().collect()
}

fn with(
    env: &HashMap<String, String>,
    changes: &[(&str, Option<&str>)],
) -> HashMap<String, String> {
    let mut env = env.clone();
    for (k, v) in changes {
        match v {
            Some(v) => env.insert((*k).to_owned(), (*v).to_owned()),
            None => env.remove(*k),
        };
    }
    env
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_setup_passes_every_check_and_exits_0() {
    let emu = Emulator::start().await.expect("emulator starts");
    let run = doctor(&env_of(&emu), &[]).await;
    assert_eq!(run.code, 0, "{}", run.text);
    assert!(run.json["login_works"].as_bool().unwrap_or(false));
    for check in [
        "configuration",
        "credential",
        "token",
        "user",
        "dns",
        "tcp",
        "tls",
        "login",
    ] {
        assert_eq!(run.verdict(check), "ok", "{check}: {}", run.text);
    }
    assert_eq!(
        run.found("credential"),
        "ManagedIdentityCredential answered"
    );
    let identity = emu.default_identity();
    assert_eq!(run.fact("token", "oid"), identity.object_id);
    assert_eq!(run.fact("token", "appid"), identity.client_id);
    assert_eq!(
        run.fact("token", "aud"),
        "https://ossrdbms-aad.database.windows.net"
    );
    assert!(
        run.found("login")
            .starts_with(&format!("logged in as {}", identity.name))
    );
    assert_eq!(run.fact("login", "transaction_read_only"), "off");
    assert!(
        run.fact("tls", "names").contains("localhost"),
        "{}",
        run.text
    );
    assert!(run.text.ends_with("the login works\n"), "{}", run.text);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_broken_setup_fails_at_its_check_with_the_fix() {
    let emu = Emulator::start().await.expect("emulator starts");
    let good = env_of(&emu);
    let identity = emu.default_identity().clone();

    // The role is missing.
    let run = doctor(
        &with(&good, &[("AZURE_POSTGRESQL_USER", Some("nobody"))]),
        &[],
    )
    .await;
    assert_eq!(run.code, 1);
    assert_eq!(run.failed_at(), "login", "{}", run.text);
    assert!(
        run.fix("login").contains(&format!(
            "pgaadauth_create_principal_with_oid('nobody', '{}', 'service', false, false)",
            identity.object_id
        )),
        "{}",
        run.text
    );
    assert_eq!(run.verdict("user"), "warning");
    assert!(run.warnings("user").contains(&identity.name));

    // The role is bound to another object id (another principal's role).
    let other = emu.add_service_principal("other-app").await.expect("sp");
    let run = doctor(
        &with(&good, &[("AZURE_POSTGRESQL_USER", Some(&other.name))]),
        &[],
    )
    .await;
    assert_eq!(run.failed_at(), "login", "{}", run.text);
    assert!(run.found("login").contains("oid mismatch"), "{}", run.text);
    assert!(
        run.fix("login").contains("DROP ROLE \"other-app\""),
        "{}",
        run.text
    );
    assert!(
        run.fix("login").contains(&identity.object_id),
        "{}",
        run.text
    );

    // The token has the wrong audience.
    let run = doctor(
        &with(
            &good,
            &[(
                "AZURE_POSTGRESQL_SCOPE",
                Some("https://management.azure.com/.default"),
            )],
        ),
        &[],
    )
    .await;
    // `localhost` names no cloud (it could front a sovereign one): the token check warns
    // with the fix, and the server's refusal fails the login.
    assert_eq!(run.verdict("token"), "warning", "{}", run.text);
    assert!(
        run.fix("token")
            .contains("https://ossrdbms-aad.database.windows.net/.default"),
        "{}",
        run.text
    );
    assert_eq!(run.failed_at(), "login", "{}", run.text);
    assert!(
        run.found("login").contains("token-wrong-audience"),
        "{}",
        run.text
    );

    // No identity is available: no identity endpoint, no `az`.
    let run = doctor(
        &with(
            &good,
            &[
                ("IDENTITY_ENDPOINT", None),
                ("IDENTITY_HEADER", None),
                ("PATH", Some("/nonexistent")),
            ],
        ),
        &[],
    )
    .await;
    assert_eq!(run.failed_at(), "credential", "{}", run.text);
    assert!(
        run.fact("credential", "ManagedIdentityCredential")
            .starts_with("unavailable")
    );
    assert!(
        run.fact("credential", "AzureCliCredential")
            .starts_with("failed")
    );
    assert!(run.fix("credential").contains("az login"), "{}", run.text);
    assert_eq!(
        run.verdict("tls"),
        "ok",
        "the way to the server is still checked"
    );

    // The TLS root is wrong: the system store does not hold the emulator's CA.
    let run = doctor(&with(&good, &[("PGSSLROOTCERT", Some("system"))]), &[]).await;
    assert_eq!(run.failed_at(), "tls", "{}", run.text);
    assert!(
        run.found("tls").contains("does not chain to a root"),
        "{}",
        run.text
    );
    assert!(run.fix("tls").contains("sslrootcert"), "{}", run.text);

    // The host name does not match the certificate.
    let run = doctor(
        &with(
            &good,
            &[
                ("AZURE_POSTGRESQL_HOST", Some("db.example.net")),
                ("PGHOSTADDR", Some("127.0.0.1")),
            ],
        ),
        &[],
    )
    .await;
    assert_eq!(run.failed_at(), "tls", "{}", run.text);
    assert!(
        run.found("tls").contains("not for db.example.net"),
        "{}",
        run.text
    );
    assert!(run.fix("tls").contains("hostaddr"), "{}", run.text);

    // The port is closed.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let run = doctor(
        &with(
            &good,
            &[("AZURE_POSTGRESQL_PORT", Some(&closed.to_string()))],
        ),
        &[],
    )
    .await;
    assert_eq!(run.failed_at(), "tcp", "{}", run.text);
    assert!(run.fix("tcp").contains("nothing listens"), "{}", run.text);

    // A PGPASSWORD is left over: auto means password mode, said loudly.
    let run = doctor(&with(&good, &[("PGPASSWORD", Some("s3cret-pw-9f2"))]), &[]).await;
    assert_eq!(run.verdict("configuration"), "warning", "{}", run.text);
    assert!(
        run.warnings("configuration").contains("PGPASSWORD"),
        "{}",
        run.text
    );
    assert!(
        run.warnings("configuration")
            .contains("NOT with an Entra token")
    );
    assert_eq!(run.verdict("credential"), "skipped");
    assert_eq!(run.failed_at(), "login", "{}", run.text);
    assert!(
        run.fix("login").contains("unset the password"),
        "{}",
        run.text
    );
    assert!(
        !run.text.contains("s3cret-pw-9f2"),
        "the password is never printed"
    );

    // A sovereign cloud's name: the scope follows the suffix.
    let run = doctor(
        &with(
            &good,
            &[
                (
                    "AZURE_POSTGRESQL_HOST",
                    Some("db.postgres.database.chinacloudapi.cn"),
                ),
                ("PGHOSTADDR", Some("127.0.0.1")),
            ],
        ),
        &[],
    )
    .await;
    assert!(
        run.fact("configuration", "scope from").contains("21Vianet"),
        "{}",
        run.text
    );
    assert_eq!(
        run.fact("token", "aud"),
        "https://ossrdbms-aad.database.chinacloudapi.cn"
    );
    assert_eq!(run.verdict("token"), "ok", "{}", run.text);

    // A user's role, with an application's token (Azure: "Service principals cannot
    // generate AAD_AUTH_TOKENTYPE_APP_USER tokens").
    emu.add_user("alice@contoso.example").await.expect("user");
    let run = doctor(
        &with(
            &good,
            &[("AZURE_POSTGRESQL_USER", Some("alice@contoso.example"))],
        ),
        &[],
    )
    .await;
    assert_eq!(run.failed_at(), "login", "{}", run.text);
    assert!(
        run.found("login").contains("role-type-mismatch"),
        "{}",
        run.text
    );
    assert!(
        run.fix("login").contains("the identity's own role"),
        "{}",
        run.text
    );

    // AZURE_AUTH_METHOD=managed_identity: the managed identity alone, no other link.
    let run = doctor(
        &with(&good, &[("AZURE_AUTH_METHOD", Some("managed_identity"))]),
        &[],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.text);
    assert_eq!(
        run.fact("credential", "ManagedIdentityCredential"),
        "answered"
    );
    assert_eq!(
        run.fact("credential", "AzureCliCredential"),
        "",
        "{}",
        run.text
    );

    // A malformed URL is a configuration failure, and the rest is skipped.
    let run = doctor(&good, &["--url", "postgresql://[::1"]).await;
    assert_eq!(run.code, 1);
    assert_eq!(run.failed_at(), "configuration", "{}", run.text);
    assert_eq!(run.verdict("login"), "skipped");
    emu.shutdown().await;
}

#[tokio::test]
async fn a_usage_error_exits_2() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_deadpool-entra"))
        .args(["doctor", "--no-such-flag"])
        .output()
        .await
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
}
