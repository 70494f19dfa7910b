//! What the hooks, the watcher and the pool handle share.

use deadpool_entra::RetirePolicy;
use entra_pg_token::{TokenProvider, retire::health::LoginHealth};
use sqlx::postgres::PgConnectOptions;
use tokio::time::Instant;

use crate::{counters::Counters, proof::Proof, switches::Switches};

pub(crate) struct Shared {
    pub(crate) tokens: TokenProvider,
    pub(crate) policy: RetirePolicy,
    /// The connect options without a password.
    pub(crate) base: PgConnectOptions,
    pub(crate) switches: Switches,
    pub(crate) health: LoginHealth,
    pub(crate) counters: Counters,
    /// The origin of the times below, and of each session's place in its spread window.
    pub(crate) epoch: Instant,
    /// A random offset for those places, per pool.
    pub(crate) seed: f64,
    /// One retirement at a time until a login follows it.
    pub(crate) proof: Proof,
    /// How long a probe login may take.
    pub(crate) login_limit: std::time::Duration,
}

impl Shared {
    /// `at` as nanoseconds since the epoch (0 before it).
    pub(crate) fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// A login succeeded at `at`.
    pub(crate) fn login_ok(&self, at: Instant) {
        self.health.succeeded(at);
        self.proof.login_ok(self.nanos(at));
    }
}
