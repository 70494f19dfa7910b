//! Placeholder until the emulator and the library land.

use std::sync::Arc;

use crate::cli::{Args, PoolKind};
use crate::fault::FaultSink;
use crate::pools::PoolUnderTest;
use crate::run::ServerProbe;

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
}

impl Setup {
    /// Stops what the setup started.
    pub async fn shutdown(self) {}
}

/// Builds the pools.
pub async fn setup(_args: &Args, _kinds: &[PoolKind]) -> Result<Setup, String> {
    Err("the emulator and deadpool-entra are not wired in yet".into())
}
