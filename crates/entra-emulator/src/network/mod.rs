//! Azure's network, for real: the server's Azure-shaped names in a private `/etc/hosts`,
//! three nodes behind them (primary, standby, read-only standby) and the faults Azure's
//! network has (a failover's DNS flip, a vanished server, a partition, a middlebox that
//! forgets idle connections), made by the kernel's packet filter inside a private network
//! namespace.
//!
//! Packets are dropped by `iptables`, never by a userspace proxy: a proxy that stops
//! forwarding still acknowledges the bytes it receives, so the client's TCP timeouts
//! (`tcp_user_timeout`, keepalives, retransmissions) never fire behind one, which is
//! kinder than Azure. Everything here refuses to run outside a private network and mount
//! namespace (see [`netns`]): a rule or a hosts line must never reach the host.

mod addresses;
mod command;
mod counters;
mod faults;
mod hosts;
mod iptables;
pub mod netns;
mod sockets;

pub(crate) use addresses::check_server_name;
pub use addresses::{AZURE_DOMAINS, Node};
pub use counters::NetworkCounters;
pub use faults::Network;
