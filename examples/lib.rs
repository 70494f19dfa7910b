//! Shared code for the `deadpool-entra` example programs.
//!
//! The programs themselves (`quickstart.rs`, `axum.rs`, `actix.rs`, `worker.rs`) stay short
//! and read top to bottom; what they have in common lives here, so that the integration
//! tests in `tests/` can start the very same applications on `127.0.0.1:0`:
//!
//! - [`backend`]: connect to the server the environment names, or start the emulator
//!   in-process when nothing is configured;
//! - [`notes`]: the small `notes` resource (schema and queries) served by both web examples;
//! - [`notes_axum`] and [`notes_actix`]: the same HTTP service written for axum and for
//!   actix-web;
//! - [`jobs`]: the job queue the worker consumes (`FOR UPDATE SKIP LOCKED`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod backend;
pub mod doctor_axum;
pub mod jobs;
pub mod notes;
pub mod notes_actix;
pub mod notes_axum;
pub mod sqlx_notes_axum;

/// The error type of the example `main` functions: anything, with a readable `Display`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Installs a `tracing` subscriber that honours `RUST_LOG` (default: `info`).
///
/// The library logs token refreshes, failed refreshes and retirements at `info`/`warn`
/// and never prints a token, whatever the level.
pub fn init_tracing(default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // `try_init`: the tests call this once per test in the same process.
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

/// Turns `main`'s result into the process's exit code, printing an error with its
/// causes (`Display`, one line) rather than `Debug`, which is what a `main` returning
/// `Result` would print.
pub fn report(result: Result<(), BoxError>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&*e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// Reads a whole number of seconds from the environment variable `name`.
///
/// Returns `default` when the variable is unset; an unparsable value is an error rather
/// than silently ignored.
pub fn seconds_from_env(
    name: &str,
    default: Option<u64>,
) -> Result<Option<std::time::Duration>, BoxError> {
    match std::env::var(name) {
        Ok(v) => {
            let secs: u64 = v
                .trim()
                .parse()
                .map_err(|_| format!("{name}={v:?} is not a whole number of seconds"))?;
            Ok(Some(std::time::Duration::from_secs(secs)))
        }
        Err(_) => Ok(default.map(std::time::Duration::from_secs)),
    }
}

/// Resolves when the process receives Ctrl-C (SIGINT) or, on Unix, SIGTERM (what
/// Kubernetes, Container Apps and App Service send before stopping a container).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Formats an error with its chain of sources: `db error: ERROR: relation "x" does not
/// exist`. tokio-postgres's own `Display` says only "db error"; the server's message is
/// in the source.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The top-level README's Rust snippet, compiled as a doctest so that it stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// docs/configuration.md's Rust snippet, compiled as a doctest.
#[doc = include_str!("../docs/configuration.md")]
#[cfg(doctest)]
pub struct ConfigurationDoctests;
