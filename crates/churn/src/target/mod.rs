//! Builds the pools under test against the chosen target (the in-process emulator, or
//! a server the environment describes), and the settings `churn` gives our pool.

mod emulator;
mod env;

use std::sync::Arc;
use std::time::Duration;

use crate::cli::{Args, Target};
use crate::fault::FaultSink;
use crate::pools::PoolKind;
use crate::pools::PoolUnderTest;
use crate::run::ServerProbe;

pub use emulator::EmulatorServer;

/// The pools under test and the server's probes.
pub struct Setup {
    /// Pools in round order.
    pub pools: Vec<Arc<dyn PoolUnderTest>>,
    /// Server counters.
    pub probe: Option<Arc<dyn ServerProbe>>,
    /// Fault injection.
    pub sink: Option<Arc<dyn FaultSink>>,
    /// Details for the JSON output.
    pub details: serde_json::Value,
    emulator: Option<Arc<emulator::EmuHandle>>,
}

impl Setup {
    /// Stops what the setup started (the emulator, if any).
    pub async fn shutdown(self) {
        let Setup {
            pools,
            probe,
            sink,
            emulator,
            ..
        } = self;
        drop((pools, probe, sink));
        if let Some(e) = emulator
            && let Ok(h) = Arc::try_unwrap(e)
        {
            h.shutdown().await;
        }
    }
}

/// Builds the pools of `kinds` on `args.target`.
pub async fn setup(args: &Args, kinds: &[PoolKind]) -> Result<Setup, String> {
    match args.target {
        Target::Emulator => emulator::setup(args, kinds).await,
        Target::Env => env::setup(args, kinds).await,
    }
}

/// The settings `churn` gives our pool, whatever the target.
fn with_ours_settings(
    builder: deadpool_entra::PoolBuilder,
    args: &Args,
) -> deadpool_entra::PoolBuilder {
    let builder = builder
        .max_size(args.max_size)
        .min_connections(args.min_connections)
        .wait_timeout(Some(args.wait_timeout))
        .retire_policy(deadpool_entra::RetirePolicy {
            retire_without_replacement: args.retire_without_replacement,
            ..retire_timings(args)
        })
        .lazy(args.cold);
    match azure_scale(args) {
        Some(_) => builder.refresh_policy(refresh_timings(args)),
        None => builder,
    }
}

/// The fraction of an hour that `--token-lifetime` is, with `--azure-proportions`.
fn azure_scale(args: &Args) -> Option<f64> {
    let hour = Duration::from_secs(3600);
    args.azure_proportions
        .then(|| args.token_lifetime.as_secs_f64() / hour.as_secs_f64())
}

/// The default recycle timings, scaled by [`azure_scale`].
fn retire_timings(args: &Args) -> deadpool_entra::RetirePolicy {
    let d = deadpool_entra::RetirePolicy::default();
    match azure_scale(args) {
        Some(k) => deadpool_entra::RetirePolicy {
            token_margin: d.token_margin.mul_f64(k),
            token_spread: d.token_spread.mul_f64(k),
            sweep_interval: d.sweep_interval.mul_f64(k),
            ..d
        },
        None => d,
    }
}

/// The default refresh timings, scaled by [`azure_scale`].
fn refresh_timings(args: &Args) -> deadpool_entra::RefreshPolicy {
    let d = deadpool_entra::RefreshPolicy::default();
    match azure_scale(args) {
        Some(k) => deadpool_entra::RefreshPolicy {
            refresh_before_expiry: d.refresh_before_expiry.mul_f64(k),
            ..d
        },
        None => d,
    }
}
