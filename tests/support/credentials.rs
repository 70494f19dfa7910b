//! Real `azure_identity` credentials pointed at one emulator, without touching the
//! process environment.
//!
//! Why not the process environment: `ManagedIdentityCredential` reads `IDENTITY_ENDPOINT`
//! and `IDENTITY_HEADER`, and `AzureCliCredential` finds `az` through `PATH`, in the
//! process environment. Scenarios run in parallel, each with its own emulator (its own
//! ports, header and `az`), and changing the environment of a multi-threaded process is
//! `unsafe` (forbidden in this workspace) and racy. `AzureCliCredential` accepts an
//! `Executor`: ours runs the same `/bin/sh -c "az ..."` command the credential builds, with
//! the emulator's environment given to that child process only.

use std::ffi::{OsStr, OsString};
use std::io;
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_identity::{AzureCliCredential, AzureCliCredentialOptions, Executor};
use entra_emulator::Emulator;

/// Runs the Azure CLI credential's command with one emulator's environment (its `PATH`
/// finds the emulator's `az` stand-in first).
#[derive(Debug)]
pub struct EmulatorEnvExecutor {
    env: Vec<(String, String)>,
}

impl EmulatorEnvExecutor {
    pub fn new(env: Vec<(String, String)>) -> Self {
        Self { env }
    }
}

#[async_trait::async_trait]
impl Executor for EmulatorEnvExecutor {
    async fn run(&self, program: &OsStr, args: &[&OsStr]) -> io::Result<Output> {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args).kill_on_drop(true);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        // Bounded: a hung child must not hang a scenario.
        match tokio::time::timeout(std::time::Duration::from_secs(30), cmd.output()).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "az did not answer within 30 s",
            )),
        }
    }
}

/// The environment for the emulator's `az`, with the rest of `PATH` kept after it.
pub fn az_env(emu: &Emulator) -> Vec<(String, String)> {
    let mut env = emu.env();
    if !env.iter().any(|(k, _)| k == "PATH") {
        let mut path = OsString::from(emu.az_bin_dir());
        if let Some(rest) = std::env::var_os("PATH") {
            path.push(":");
            path.push(rest);
        }
        env.push(("PATH".into(), path.to_string_lossy().into_owned()));
    }
    env
}

/// A real `AzureCliCredential` that runs the emulator's `az` (logged in as the emulator's
/// default user), wrapped so that every token it returns is recorded for the secret scan.
pub fn cli_credential(emu: &Emulator) -> Arc<Recording> {
    cli_credential_with_env(az_env(emu))
}

/// The same with an explicit environment for `az`.
pub fn cli_credential_with_env(env: Vec<(String, String)>) -> Arc<Recording> {
    Arc::new(Recording::new(cli_credential_inner(env)))
}

/// The same credential, counting calls but keeping no token: for a measurement of the
/// process's heap, which the secret scan's list of every token would grow.
pub fn cli_credential_unrecorded(emu: &Emulator) -> Arc<Recording> {
    Arc::new(Recording {
        record: false,
        ..Recording::new(cli_credential_inner(az_env(emu)))
    })
}

fn cli_credential_inner(env: Vec<(String, String)>) -> Arc<dyn TokenCredential> {
    let options = AzureCliCredentialOptions {
        executor: Some(Arc::new(EmulatorEnvExecutor::new(env))),
        ..Default::default()
    };
    AzureCliCredential::new(Some(options)).expect("AzureCliCredential::new")
}

/// A credential wrapper that records every token it hands out (for the secret scan) and
/// counts calls. It changes nothing else: its `Debug` is the wrapped credential's, so the
/// pool names it (and hints at `az login`) as it would the real one.
pub struct Recording {
    inner: Arc<dyn TokenCredential>,
    calls: AtomicU64,
    tokens: AtomicU64,
    /// Whether tokens go to the secret scan's list.
    record: bool,
}

impl Recording {
    pub fn new(inner: Arc<dyn TokenCredential>) -> Self {
        Self {
            inner,
            calls: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            record: true,
        }
    }
    /// `get_token` calls made by the pool.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
    /// Tokens returned.
    pub fn tokens(&self) -> u64 {
        self.tokens.load(Ordering::SeqCst)
    }
}

impl std::fmt::Debug for Recording {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

#[async_trait::async_trait]
impl TokenCredential for Recording {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let token = self.inner.get_token(scopes, options).await?;
        if self.record {
            crate::secrets::record_secret(token.token.secret());
        }
        self.tokens.fetch_add(1, Ordering::SeqCst);
        Ok(token)
    }
}
