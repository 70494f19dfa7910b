//! What the network and its faults have done, for tests to assert on.

#[cfg(doc)]
use super::Network;

/// What the network and its faults have done so far ([`Network::counters`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct NetworkCounters {
    /// Times the names were pointed at another node ([`Network::dns_flip`]).
    pub dns_flips: u64,
    /// Sessions cut by [`Network::vanish`].
    pub sessions_vanished: u64,
    /// Partitions started ([`Network::partition`], [`Network::partition_start`]).
    pub partitions: u64,
    /// Logins accepted by the primary's front.
    pub logins_primary: u64,
    /// Logins accepted by the standby's front.
    pub logins_standby: u64,
    /// Logins accepted by the read-only standby's front.
    pub logins_read_only_standby: u64,
}
