//! "Connect to the configured server, or start the emulator": the one decision every
//! example makes first.
//!
//! A server is configured when any of `AZURE_POSTGRESQL_HOST`, `PGHOST` or `DATABASE_URL`
//! is set; the pool is then built from the environment by [`deadpool_entra::Config::from_env`]
//! (what [`deadpool_entra::Pool::from_env`] does in one call), exactly as an application
//! deployed on Azure builds it.
//!
//! When none is set, the example starts [`entra_emulator::Emulator`] in-process (a
//! throwaway PostgreSQL cluster behind an Azure-like TLS front, and Entra ID's App Service
//! managed identity endpoint on loopback) and runs **itself again as a child process**
//! with the environment the emulator hands out (`IDENTITY_ENDPOINT`, `IDENTITY_HEADER`,
//! `AZURE_POSTGRESQL_HOST`, `PGSSLROOTCERT`, ...), the way App Service or Container Apps
//! start your application with that environment. The child then takes the configured-server
//! path above, so the examples run the production code path even against the emulator.
//!
//! Why a child process: `azure_identity::ManagedIdentityCredential` reads
//! `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` from the process environment and cannot be
//! given them any other way, and the emulator only knows its ports once it has started.
//! Changing the environment of a running multi-threaded process is `unsafe` in Rust 2024
//! (and forbidden in this workspace), so the environment is given to a new process instead.

use std::time::{Duration, Instant};

use deadpool_entra::{Config, Pool, TokenProvider};
use entra_emulator::Emulator;

use crate::BoxError;

/// The environment variables that name a real server, in the order they are checked.
pub const SERVER_VARS: [&str; 3] = ["AZURE_POSTGRESQL_HOST", "PGHOST", "DATABASE_URL"];

/// Set in the child's environment when it runs against an emulator started by its parent.
pub const EMULATED_VAR: &str = "DEADPOOL_ENTRA_EXAMPLES_EMULATED";

/// Variables that could point a credential or the pool somewhere else than the emulator:
/// removed from the child's environment before the emulator's are added.
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
];

/// Returns the first of [`SERVER_VARS`] that is set (and not empty), if any.
pub fn configured_server_var() -> Option<&'static str> {
    SERVER_VARS
        .into_iter()
        .find(|v| std::env::var(v).is_ok_and(|s| !s.trim().is_empty()))
}

/// Whether this process is the child started against an emulator by [`connect`].
pub fn is_emulated() -> bool {
    std::env::var(EMULATED_VAR).is_ok_and(|v| v == "1")
}

/// What the example connects to.
pub struct Backend {
    /// The pool, built from the environment.
    pub pool: Pool,
    /// The pool's token provider, for more pools on the same token (a read replica,
    /// another database): one identity call per refresh for all of them.
    pub tokens: TokenProvider,
    /// One line saying what the pool talks to and with which credential, for banners.
    pub description: String,
}

/// What an example asks of [`connect`].
#[derive(Clone, Debug)]
pub struct ConnectOptions {
    /// Lifetime of the tokens the emulator issues, when no server is configured. Azure's
    /// are 1 to 24 hours; the examples use seconds so that refreshes and retirements show
    /// up while you watch.
    pub token_lifetime: Duration,
    /// Largest number of connections in the pool (`None`: the library's default,
    /// deadpool's `2 × CPUs`).
    pub max_size: Option<usize>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            token_lifetime: Duration::from_secs(3600),
            max_size: None,
        }
    }
}

/// Builds the pool from the environment when a server is configured there.
///
/// Otherwise starts the emulator, runs this program again as a child process with the
/// emulator's environment, waits for it and returns `Ok(None)`: the caller's `main` then
/// has nothing left to do. Ctrl-C reaches both processes; the child stops gracefully and
/// the parent then stops the emulator.
pub async fn connect(options: ConnectOptions) -> Result<Option<Backend>, BoxError> {
    match configured_server_var() {
        Some(var) => Ok(Some(from_env(var, options.max_size).await?)),
        None => {
            host_emulator(options).await?;
            Ok(None)
        }
    }
}

/// The production path: the same call an application on Azure makes.
async fn from_env(var: &str, max_size: Option<usize>) -> Result<Backend, BoxError> {
    // `Pool::from_env()` in one call; here in two steps to set the pool size. The library
    // reads AZURE_POSTGRESQL_*/PG*/DATABASE_URL and AZURE_AUTH_METHOD, picks a
    // credential (environment service principal, workload identity, managed identity,
    // Azure CLI, Azure Developer CLI) and fetches the first token before returning, so a
    // misconfiguration fails here, at startup, with an error that says what to fix.
    let config = Config::from_env()?;
    let tokens = TokenProvider::from_config(&config)?;
    let mut builder = config.builder().token_provider(&tokens);
    if let Some(n) = max_size {
        builder = builder.max_size(n);
    }
    let pool = builder.build().await?;
    let target = if is_emulated() {
        "the emulator, with the environment App Service would give this app".to_string()
    } else {
        format!("the server named by {var}")
    };
    let description = format!("{target}; credential {}", pool.credential_name());
    Ok(Backend {
        pool,
        tokens,
        description,
    })
}

/// Starts the emulator, runs this program again as a child process with the emulator's
/// environment (as App Service would give it), and waits for it. For examples that build
/// their own pool (the sqlx one).
pub async fn host_emulator(options: ConnectOptions) -> Result<(), BoxError> {
    // Registered before the child starts: Ctrl-C goes to the whole foreground process
    // group, and this process must outlive its child to stop the emulator afterwards.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;

    let started = Instant::now();
    // The identity endpoint serves its cached token as Azure's does, with the window
    // scaled to these seconds-long tokens as the pool's schedule is: on Azure the pool
    // asks 270 s before expiry, inside the endpoint's 5-minute window; here it asks at
    // half-life, so the window is 60 % of the life (the default, a twelfth, would hand
    // out the next token only after the pool's retirement window has closed).
    let emulator = Emulator::builder()
        .token_lifetime(options.token_lifetime)
        .token_cache_window(options.token_lifetime * 6 / 10)
        .start()
        .await?;
    println!(
        "emulator started in {} ms: managed identity endpoint {}, PostgreSQL (TLS) on {}:{}, \
         tokens live {} s",
        started.elapsed().as_millis(),
        emulator.identity_endpoint(),
        emulator.pg_host(),
        emulator.pg_port(),
        options.token_lifetime.as_secs()
    );
    println!(
        "running this example again with the emulator's environment \
         (IDENTITY_ENDPOINT, AZURE_POSTGRESQL_HOST, PGSSLROOTCERT, ...)\n"
    );

    let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
    cmd.args(std::env::args_os().skip(1)).kill_on_drop(true);
    for k in SCRUB {
        cmd.env_remove(k);
    }
    cmd.envs(emulator.env()).env(EMULATED_VAR, "1");
    let mut child = cmd.spawn()?;

    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            // The child received the same Ctrl-C and is shutting down: keep waiting.
            _ = interrupt.recv() => {},
            // SIGTERM is sent to this process only: pass it on as a Ctrl-C would be.
            _ = terminate.recv() => {
                if let Some(pid) = child.id() {
                    let _ = tokio::process::Command::new("kill")
                        .args(["-TERM", &pid.to_string()])
                        .status()
                        .await;
                }
            }
        }
    };

    let c = emulator.counters();
    println!(
        "\nthe emulator's view: {} tokens issued, {} logins accepted, {} refused, \
         {} logins with an expired token",
        c.tokens_issued_app_service + c.tokens_issued_cli,
        c.logins_accepted,
        c.logins_refused_expired
            + c.logins_refused_audience
            + c.logins_refused_signature
            + c.logins_refused_unknown_role
            + c.logins_refused_plaintext
            + c.logins_refused_bad_password
            + c.logins_refused_revoked,
        c.expired_token_logins
    );
    emulator.shutdown().await;
    if status.success() {
        Ok(())
    } else {
        Err(format!("the example exited with {status}").into())
    }
}
