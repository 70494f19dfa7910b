//! The network events in the `metrics` facade (feature `metrics`):
//! `deadpool_entra.connections.dead{cause}` and `deadpool_entra.dns_changes`, by pool name.

use super::DeadCause;

/// One pool's network metric handles (nothing without the feature).
#[derive(Default)]
pub(crate) struct NetMetrics {
    #[cfg(feature = "metrics")]
    h: Option<enabled::Handles>,
}

impl NetMetrics {
    /// Registers the handles of the pool named `name` with the installed recorder.
    pub(crate) fn new(name: &str) -> Self {
        #[cfg(feature = "metrics")]
        return Self {
            h: Some(enabled::Handles::new(name)),
        };
        #[cfg(not(feature = "metrics"))]
        {
            let _ = name;
            Self {}
        }
    }

    /// A session found dead (or an unreachable login) for `cause`.
    pub(crate) fn dead(&self, cause: DeadCause) {
        #[cfg(feature = "metrics")]
        if let Some(h) = &self.h {
            h.dead[enabled::index(cause)].increment(1);
        }
        #[cfg(not(feature = "metrics"))]
        let _ = cause;
    }

    /// The server's name resolved to other addresses.
    pub(crate) fn dns_change(&self) {
        #[cfg(feature = "metrics")]
        if let Some(h) = &self.h {
            h.dns_changes.increment(1);
        }
    }
}

#[cfg(feature = "metrics")]
mod enabled {
    use metrics::{Counter, Unit, counter, describe_counter};

    use super::DeadCause;
    use crate::otel::POOL_NAME;

    const CAUSES: [DeadCause; 5] = [
        DeadCause::Timeout,
        DeadCause::Reset,
        DeadCause::LivenessCheck,
        DeadCause::ReadOnly,
        DeadCause::Other,
    ];

    pub(super) fn index(cause: DeadCause) -> usize {
        CAUSES.iter().position(|c| *c == cause).unwrap_or(4)
    }

    pub(super) struct Handles {
        pub(super) dead: [Counter; 5],
        pub(super) dns_changes: Counter,
    }

    impl Handles {
        pub(super) fn new(name: &str) -> Self {
            static ONCE: std::sync::Once = std::sync::Once::new();
            ONCE.call_once(|| {
                describe_counter!(
                    "deadpool_entra.connections.dead",
                    Unit::Count,
                    "Sessions found dead by a network error, and logins that could not reach a usable server, by cause"
                );
                describe_counter!(
                    "deadpool_entra.dns_changes",
                    Unit::Count,
                    "Times the server's name resolved to another set of addresses"
                );
            });
            let n = name.to_owned();
            let dead = |c: DeadCause| counter!("deadpool_entra.connections.dead", POOL_NAME => n.clone(), "cause" => c.as_str());
            Self {
                dead: CAUSES.map(dead),
                dns_changes: counter!("deadpool_entra.dns_changes", POOL_NAME => n.clone()),
            }
        }
    }
}
