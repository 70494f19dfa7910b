//! Metrics through the [`metrics`](https://docs.rs/metrics) facade, behind the `metrics`
//! cargo feature: OpenTelemetry's database client connection-pool metrics and the
//! token's own. A pool's handles are registered once, when it is built, with the recorder
//! installed then (a token source's when a fetch from it first ends, see
//! `token::metrics`); the checkout path only records into them. Without the feature every
//! type here is empty and every call compiles to nothing.
//!
//! The pool name is [`pool_name`](crate::builder::PoolBuilder::pool_name), by default
//! `host:port/database`. When the pool closes (or is dropped) its gauges are set to 0 and
//! no longer sampled: a closed pool reports no connections, waiters or token.
//!
//! The metrics, with their kind, unit and attributes, are listed in the guide
//! (docs/guide.md, "Metrics reference"), the one place they are written down.
//!
//! `db.client.connection.use_time` is not exported: deadpool has no hook when a client
//! goes back to the pool.
//!
//! Public but hidden from the docs: sqlx-entra's pool records into the same handles, so
//! that both pools write the same names. It is not a stable API of its own.

use std::time::Duration;

use entra_pg_token::token::cache::CachedToken;
use tokio::time::Instant;

#[cfg(feature = "metrics")]
use crate::otel::POOL_NAME;

pub use entra_pg_token::stopwatch::Stopwatch;

/// Who made a login, for the `origin` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginOrigin {
    /// A checkout logged in (its caller waited for the login).
    Checkout = 0,
    /// The pool logged in ahead of need (spares, `min_connections`).
    Background = 1,
    /// A login made only to learn whether logins work.
    Probe = 2,
}

/// What the sweeper samples into the gauges.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
#[derive(Debug, Default)]
pub struct Sample {
    /// Connections open.
    pub size: usize,
    /// Of which idle.
    pub idle: usize,
    /// The most the pool may open.
    pub max: usize,
    /// The floor it keeps (`min_connections`).
    pub min: usize,
    /// Checkouts waiting (`None`: the pool cannot tell; the gauge is left alone).
    pub waiting: Option<usize>,
    /// Spares logged in ahead of need.
    pub spares: usize,
    /// Time until the token expires.
    pub token_expires_in: Option<Duration>,
    /// Time since the token was fetched.
    pub token_age: Option<Duration>,
}

impl Sample {
    /// Sets the token's gauges from `token` at `now`.
    pub fn with_token(mut self, token: Option<&CachedToken>, now: Instant) -> Self {
        self.token_expires_in = token
            .and_then(|t| t.deadline)
            .map(|d| d.saturating_duration_since(now));
        self.token_age = token.map(|t| now.saturating_duration_since(t.fetched_at));
        self
    }
}

/// One pool's metric handles.
#[derive(Default)]
pub struct PoolMetrics {
    #[cfg(feature = "metrics")]
    h: Option<enabled::PoolHandles>,
    /// Set when the pool closed; under this lock a sweep that samples while the pool
    /// closes writes either before the gauges are zeroed or not at all.
    #[cfg(feature = "metrics")]
    closed: std::sync::Mutex<bool>,
}

impl PoolMetrics {
    /// Registers the handles of the pool named `name` with the installed recorder.
    pub fn new(name: &str) -> Self {
        #[cfg(feature = "metrics")]
        return Self {
            h: Some(enabled::PoolHandles::new(name)),
            closed: std::sync::Mutex::new(false),
        };
        #[cfg(not(feature = "metrics"))]
        {
            let _ = name;
            Self {}
        }
    }

    /// A checkout that got a connection after `waited`.
    #[inline]
    pub fn checkout(&self, waited: &Stopwatch) {
        #[cfg(feature = "metrics")]
        if let Some(h) = &self.h {
            h.wait_time.record(waited.secs());
        }
        #[cfg(not(feature = "metrics"))]
        let _ = waited;
    }

    /// A checkout that timed out.
    #[inline]
    pub fn timeout(&self) {
        #[cfg(feature = "metrics")]
        if let Some(h) = &self.h {
            h.timeouts.increment(1);
        }
    }

    /// A login that ended, timed from `took`.
    #[inline]
    pub fn login(&self, took: &Stopwatch, ok: bool, origin: LoginOrigin) {
        self.counted_login(ok, origin);
        #[cfg(feature = "metrics")]
        if let Some(h) = &self.h
            && ok
        {
            h.create_time.record(took.secs());
        }
        #[cfg(not(feature = "metrics"))]
        let _ = took;
    }

    /// A login that ended, counted only (its duration unknown: sqlx's `after_connect`).
    #[inline]
    pub fn counted_login(&self, ok: bool, origin: LoginOrigin) {
        #[cfg(feature = "metrics")]
        if let Some(h) = &self.h {
            h.logins[usize::from(!ok)][origin as usize].increment(1);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (ok, origin);
    }

    /// `n` connections retired for `reason`.
    #[inline]
    pub fn retired(&self, reason: crate::retire::RetireReason, n: u64) {
        #[cfg(feature = "metrics")]
        if let Some(h) = &self.h {
            use crate::retire::RetireReason::*;
            let i = match reason {
                TokenAge => 0,
                MaxLifetime => 1,
                Broken => 2,
                AddressChanged => 3,
            };
            h.retired[i].increment(n);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (reason, n);
    }

    /// A spare handed to a checkout.
    #[inline]
    pub fn spare_used(&self) {
        #[cfg(feature = "metrics")]
        if let Some(h) = &self.h {
            h.spares_used.increment(1);
        }
    }

    /// The gauges, as the sweeper sees them (nothing once the pool closed).
    pub fn sample(&self, s: &Sample) {
        #[cfg(feature = "metrics")]
        if let Some(h) = &self.h {
            let closed = self.closed.lock().unwrap_or_else(|e| e.into_inner());
            if *closed {
                return;
            }
            h.idle.set(s.idle as f64);
            h.used.set(s.size.saturating_sub(s.idle) as f64);
            h.max.set(s.max as f64);
            h.idle_min.set(s.min as f64);
            if let Some(w) = s.waiting {
                h.pending.set(w as f64);
            }
            h.spares.set(s.spares as f64);
            if let Some(d) = s.token_expires_in {
                h.token_ttl.set(d.as_secs_f64());
            }
            if let Some(d) = s.token_age {
                h.token_age.set(d.as_secs_f64());
            }
        }
        #[cfg(not(feature = "metrics"))]
        let _ = s;
    }

    /// The pool closed (or is gone): every gauge reads 0 and the sweeper samples no more,
    /// so a closed pool reports no connections, waiters or token.
    pub fn close(&self) {
        #[cfg(feature = "metrics")]
        if let Some(h) = &self.h {
            let mut closed = self.closed.lock().unwrap_or_else(|e| e.into_inner());
            *closed = true;
            for g in [
                &h.idle,
                &h.used,
                &h.max,
                &h.idle_min,
                &h.pending,
                &h.spares,
                &h.token_ttl,
                &h.token_age,
            ] {
                g.set(0.0);
            }
        }
    }
}

impl Drop for PoolMetrics {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(feature = "metrics")]
mod enabled {
    use std::sync::Once;

    use metrics::{
        Counter, Gauge, Histogram, Unit, counter, describe_counter, describe_gauge,
        describe_histogram, gauge, histogram,
    };

    use super::POOL_NAME;

    pub(super) struct PoolHandles {
        pub(super) wait_time: Histogram,
        pub(super) create_time: Histogram,
        pub(super) timeouts: Counter,
        /// `[ok, failed][checkout, background, probe]`.
        pub(super) logins: [[Counter; 3]; 2],
        /// `[token_age, max_lifetime, broken, address_changed]`.
        pub(super) retired: [Counter; 4],
        pub(super) spares_used: Counter,
        pub(super) idle: Gauge,
        pub(super) used: Gauge,
        pub(super) max: Gauge,
        pub(super) idle_min: Gauge,
        pub(super) pending: Gauge,
        pub(super) spares: Gauge,
        pub(super) token_ttl: Gauge,
        pub(super) token_age: Gauge,
    }

    impl PoolHandles {
        pub(super) fn new(name: &str) -> Self {
            describe();
            let n = name.to_owned();
            let login = |outcome: &'static str, origin: &'static str| counter!("deadpool_entra.logins", POOL_NAME => n.clone(), "outcome" => outcome, "origin" => origin);
            let retired = |reason: &'static str| counter!("deadpool_entra.retirements", POOL_NAME => n.clone(), "reason" => reason);
            let state = |state: &'static str| gauge!("db.client.connection.count", POOL_NAME => n.clone(), "db.client.connection.state" => state);
            Self {
                wait_time: histogram!("db.client.connection.wait_time", POOL_NAME => n.clone()),
                create_time: histogram!("db.client.connection.create_time", POOL_NAME => n.clone()),
                timeouts: counter!("db.client.connection.timeouts", POOL_NAME => n.clone()),
                logins: [
                    [
                        login("ok", "checkout"),
                        login("ok", "background"),
                        login("ok", "probe"),
                    ],
                    [
                        login("failed", "checkout"),
                        login("failed", "background"),
                        login("failed", "probe"),
                    ],
                ],
                retired: [
                    retired("token_age"),
                    retired("max_lifetime"),
                    retired("broken"),
                    retired("address_changed"),
                ],
                spares_used: counter!("deadpool_entra.spares_used", POOL_NAME => n.clone()),
                idle: state("idle"),
                used: state("used"),
                max: gauge!("db.client.connection.max", POOL_NAME => n.clone()),
                idle_min: gauge!("db.client.connection.idle.min", POOL_NAME => n.clone()),
                pending: gauge!("db.client.connection.pending_requests", POOL_NAME => n.clone()),
                spares: gauge!("deadpool_entra.connection.spares", POOL_NAME => n.clone()),
                token_ttl: gauge!("deadpool_entra.token.time_to_expiry", POOL_NAME => n.clone()),
                token_age: gauge!("deadpool_entra.token.age", POOL_NAME => n),
            }
        }
    }

    /// Names, units and descriptions, once per process.
    fn describe() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| {
            let conn = Unit::Count;
            describe_gauge!(
                "db.client.connection.count",
                conn,
                "Connections open, by state (idle, used)"
            );
            describe_gauge!(
                "db.client.connection.max",
                conn,
                "Most connections the pool may open"
            );
            describe_gauge!(
                "db.client.connection.idle.min",
                conn,
                "Connections the pool keeps open (min_connections)"
            );
            describe_gauge!(
                "db.client.connection.pending_requests",
                conn,
                "Checkouts waiting for a connection"
            );
            describe_counter!(
                "db.client.connection.timeouts",
                conn,
                "Checkouts that timed out"
            );
            describe_histogram!(
                "db.client.connection.create_time",
                Unit::Seconds,
                "Time a login took"
            );
            describe_histogram!(
                "db.client.connection.wait_time",
                Unit::Seconds,
                "Time a checkout took"
            );
            describe_gauge!(
                "deadpool_entra.connection.spares",
                conn,
                "Connections logged in by the background, not yet handed to a checkout"
            );
            describe_counter!(
                "deadpool_entra.logins",
                conn,
                "Logins, by outcome and by who made them"
            );
            describe_counter!(
                "deadpool_entra.retirements",
                conn,
                "Connections retired, by reason"
            );
            describe_counter!(
                "deadpool_entra.spares_used",
                conn,
                "Checkouts that took a spare instead of logging in"
            );
            describe_gauge!(
                "deadpool_entra.token.time_to_expiry",
                Unit::Seconds,
                "Time until the cached token expires"
            );
            describe_gauge!(
                "deadpool_entra.token.age",
                Unit::Seconds,
                "Time since the cached token was fetched"
            );
        });
    }
}
