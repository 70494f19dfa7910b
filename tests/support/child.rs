//! Scenarios that need a real process environment run the application part in a child
//! process: this same test binary, started with the emulator's environment, running one
//! `#[ignore]`d "app" test.
//!
//! Why: `azure_identity::ManagedIdentityCredential` reads `IDENTITY_ENDPOINT` and
//! `IDENTITY_HEADER` from the process environment (at construction and at every token
//! request) and has no way to be given them; `Pool::from_env()` reads `PG*`/`AZURE_*`.
//! Setting the environment of this multi-threaded test process is `unsafe` (forbidden in
//! the workspace) and would race with the scenarios running next to it, each with its own
//! emulator. A child process gets its own environment, exactly as a deployed application
//! does, and the parent keeps the emulator (faults, counters).
//!
//! Protocol: the child prints lines `CHILD <tag> <json>` on stdout; the parent reads them
//! as they come (so it can inject a fault when the child says it is ready).

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout};

/// Set in the child's environment to the name of the app test it must run.
pub const CHILD_VAR: &str = "DEADPOOL_ENTRA_TESTS_CHILD";

/// Variables that could point a credential somewhere else than the emulator; removed from
/// the child's environment before the emulator's are added.
const SCRUB: &[&str] = &[
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTH_METHOD",
    "AZURE_POSTGRESQL_HOST",
    "AZURE_POSTGRESQL_PORT",
    "AZURE_POSTGRESQL_NAME",
    "AZURE_POSTGRESQL_USER",
    "AZURE_POSTGRESQL_CLIENTID",
    "AZURE_POSTGRESQL_PASSWORD",
    "PGHOST",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGPASSWORD",
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "DATABASE_URL",
    "RUST_LOG",
];

/// Is this process the child started for `app`? App tests return at once otherwise (so
/// that `cargo test -- --ignored` does not fail on them).
pub fn is_child(app: &str) -> bool {
    std::env::var(CHILD_VAR).is_ok_and(|v| v == app)
}

/// Prints one protocol line (child side).
pub fn emit(tag: &str, value: &serde_json::Value) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    // A leading newline: libtest may have printed "test name ... " on this line.
    let _ = writeln!(out, "\nCHILD {tag} {value}");
    let _ = out.flush();
}

/// A running child app.
pub struct ChildApp {
    child: Child,
    lines: tokio::io::Lines<BufReader<ChildStdout>>,
    /// Every protocol message received, in order.
    pub messages: Vec<(String, serde_json::Value)>,
    stderr_task: tokio::task::JoinHandle<String>,
}

/// What a finished child did.
#[derive(Debug)]
pub struct ChildOutcome {
    pub success: bool,
    pub messages: Vec<(String, serde_json::Value)>,
    /// The child's stderr (its panic message, if any), for the failure message.
    pub stderr: String,
}

impl ChildOutcome {
    /// The last message with this tag.
    pub fn last(&self, tag: &str) -> Option<&serde_json::Value> {
        self.messages
            .iter()
            .rev()
            .find(|(t, _)| t == tag)
            .map(|(_, v)| v)
    }
}

impl ChildApp {
    /// Starts this test binary running only `app` (an `#[ignore]`d test named by its full
    /// path, e.g. `auth_methods::app_from_env`), with `env` on top of a scrubbed copy of
    /// this process's environment.
    pub fn spawn(app: &str, env: &[(String, String)]) -> ChildApp {
        let exe = std::env::current_exe().expect("current_exe");
        let mut cmd = tokio::process::Command::new(exe);
        cmd.args([
            app,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        for k in SCRUB {
            cmd.env_remove(k);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.env(CHILD_VAR, app);
        // A failing child's panic message is enough; its backtrace only buries it.
        cmd.env("RUST_BACKTRACE", "0");
        let mut child = cmd.spawn().expect("spawn the child test process");
        let stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let stderr_task = tokio::spawn(async move {
            let mut s = String::new();
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut s).await;
            s
        });
        ChildApp {
            child,
            lines: BufReader::new(stdout).lines(),
            messages: Vec::new(),
            stderr_task,
        }
    }

    /// Waits (at most `within`) for the next protocol message with `tag`; `None` if the
    /// child ended or the time passed first.
    pub async fn wait_for(&mut self, tag: &str, within: Duration) -> Option<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let line = match tokio::time::timeout_at(deadline, self.lines.next_line()).await {
                Ok(Ok(Some(line))) => line,
                _ => return None,
            };
            if let Some(rest) = line.find("CHILD ").map(|i| &line[i + 6..]) {
                let (t, json) = rest.split_once(' ').unwrap_or((rest, "null"));
                let v: serde_json::Value =
                    serde_json::from_str(json).unwrap_or(serde_json::Value::Null);
                self.messages.push((t.to_owned(), v.clone()));
                if t == tag {
                    return Some(v);
                }
            }
        }
    }

    /// Waits (at most `within`, then kills it) for the child to end.
    pub async fn finish(mut self, within: Duration) -> ChildOutcome {
        let deadline = tokio::time::Instant::now() + within;
        // Drain the remaining protocol lines.
        while let Ok(Ok(Some(line))) =
            tokio::time::timeout_at(deadline, self.lines.next_line()).await
        {
            if let Some(rest) = line.find("CHILD ").map(|i| &line[i + 6..]) {
                let (t, json) = rest.split_once(' ').unwrap_or((rest, "null"));
                let v = serde_json::from_str(json).unwrap_or(serde_json::Value::Null);
                self.messages.push((t.to_owned(), v));
            }
        }
        let success = match tokio::time::timeout_at(deadline, self.child.wait()).await {
            Ok(Ok(status)) => status.success(),
            _ => {
                let _ = self.child.kill().await;
                false
            }
        };
        let stderr = tokio::time::timeout(Duration::from_secs(5), self.stderr_task)
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_default();
        ChildOutcome {
            success,
            messages: self.messages,
            stderr,
        }
    }
}

/// Runs an app child to completion (at most `within`).
pub async fn run_child(app: &str, env: &[(String, String)], within: Duration) -> ChildOutcome {
    ChildApp::spawn(app, env).finish(within).await
}
