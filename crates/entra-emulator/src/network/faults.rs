//! [`Network`]: the server's names and the faults of Azure's network, made by the kernel.

use std::collections::HashMap;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use super::addresses::server_names;
use super::iptables::{self, CT_TCP_LOOSE, CT_TIMEOUT_ESTABLISHED, Rule};
use super::{NetworkCounters, Node, hosts, netns, sockets};
use crate::error::Error;

/// The network of an emulated Azure server with high availability: its names (in a
/// private `/etc/hosts`), its three nodes on one port (see [`Node`]), and Azure's network
/// faults, dropped by the kernel's packet filter so that the client's TCP timeouts really
/// fire. From [`crate::emulator::Emulator::network`], when the emulator was built with
/// [`crate::builder::EmulatorBuilder::azure_network`].
///
/// Cheap to clone. Every method refuses to run outside the private network namespace
/// ([`netns::in_private_namespace`]). The rules it added are removed by [`Network::clear`]
/// and when the last clone is dropped (the namespace ends with the process anyway).
///
/// ```no_run
/// # async fn demo(emu: &entra_emulator::Emulator) -> Result<(), entra_emulator::Error> {
/// use entra_emulator::Node;
/// let net = emu.network().expect("built with azure_network");
/// // An unplanned failover: the primary's sessions are half-open, the name moves.
/// let cut = net.vanish(Node::Primary)?;
/// net.dns_flip(Node::Standby)?;
/// println!("{cut} sessions cut; {:?}", net.counters());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Network {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("server", &self.inner.names[0])
            .field("port", &self.inner.port)
            .field("current", &self.current())
            .finish_non_exhaustive()
    }
}

struct Inner {
    server: String,
    /// Tells this network's hosts lines from another's of the same name.
    owner: String,
    names: Vec<String>,
    port: u16,
    /// The emulator's runtime, for timed heals.
    runtime: tokio::runtime::Handle,
    /// Held while rules and the hosts file change: one fault at a time.
    state: Mutex<State>,
    dns_flips: AtomicU64,
    sessions_vanished: AtomicU64,
    partitions: AtomicU64,
    logins: [AtomicU64; 3],
    /// The spliced sessions per node and client address, to end them when their node
    /// vanishes.
    sessions: Mutex<HashMap<(Node, SocketAddrV4), tokio::task::AbortHandle>>,
}

struct State {
    current: Node,
    vanished: Vec<Rule>,
    /// Per node: the partition's rules and the partition's number (a timed heal heals only
    /// the partition it was started for).
    partitioned: [Option<(u64, [Rule; 2])>; 3],
    idle_drop: [Option<[Rule; 2]>; 3],
    /// The conntrack settings before [`Network::idle_drop`] changed them.
    saved_sysctls: Option<(String, String)>,
}

impl Network {
    /// The network of server `server` (a valid name) whose nodes listen on `port`; its names
    /// point at the primary.
    pub(crate) fn new(
        server: &str,
        port: u16,
        runtime: tokio::runtime::Handle,
    ) -> Result<Network, Error> {
        netns::require()?;
        let names = server_names(server);
        static NETWORKS: AtomicU64 = AtomicU64::new(0);
        let owner = format!(
            "{}.{}",
            std::process::id(),
            NETWORKS.fetch_add(1, Ordering::Relaxed)
        );
        hosts::set(server, &owner, Node::Primary.ip(), &names)?;
        Ok(Network {
            inner: Arc::new(Inner {
                server: server.to_string(),
                owner,
                names,
                port,
                runtime,
                state: Mutex::new(State {
                    current: Node::Primary,
                    vanished: Vec::new(),
                    partitioned: [None, None, None],
                    idle_drop: [None, None, None],
                    saved_sysctls: None,
                }),
                dns_flips: AtomicU64::new(0),
                sessions_vanished: AtomicU64::new(0),
                partitions: AtomicU64::new(0),
                logins: Default::default(),
                sessions: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The server's name in the public cloud, `NAME.postgres.database.azure.com`.
    pub fn server_host(&self) -> &str {
        &self.inner.names[0]
    }
    /// The server's names in the public cloud, Azure China and Azure US Government (see
    /// [`super::AZURE_DOMAINS`]); all point at the same node.
    pub fn server_hosts(&self) -> &[String] {
        &self.inner.names
    }
    /// The port every node listens on (the emulator's [`crate::emulator::Emulator::pg_port`]).
    pub fn port(&self) -> u16 {
        self.inner.port
    }
    /// The address `node` listens on.
    pub fn address(&self, node: Node) -> SocketAddrV4 {
        SocketAddrV4::new(node.ip(), self.inner.port)
    }
    /// The node the names point at.
    pub fn current(&self) -> Node {
        self.state().current
    }

    /// Point the server's names at `to`, as a failover repoints the server's DNS name: new
    /// logins go there (glibc reads `/etc/hosts` on every lookup); open sessions stay
    /// where they are.
    pub fn dns_flip(&self, to: Node) -> Result<(), Error> {
        netns::require()?;
        let mut st = self.state();
        hosts::set(
            &self.inner.server,
            &self.inner.owner,
            to.ip(),
            &self.inner.names,
        )?;
        let from = std::mem::replace(&mut st.current, to);
        self.inner.dns_flips.fetch_add(1, Ordering::Relaxed);
        tracing::info!(server = %self.inner.names[0], ?from, ?to, address = %to.ip(), "network fault: DNS flip");
        Ok(())
    }

    /// The node vanishes for every session open to it now, as an unplanned failover leaves
    /// the old primary's sessions: every packet of those connections is dropped in both
    /// directions, for good, with no RST and no FIN, so the client learns of it only from
    /// its own TCP timeouts. The node's side of those sessions ends behind the dropped
    /// packets (their backends close and release their locks, as a dead server's do).
    /// New connections to the node still go through. Returns how many sessions were cut.
    pub fn vanish(&self, node: Node) -> Result<usize, Error> {
        netns::require()?;
        let mut st = self.state();
        let server = self.address(node);
        let clients = sockets::established_clients(server)?;
        let rules: Vec<Rule> = clients
            .iter()
            .flat_map(|c| Rule::drop_connection(*c, server))
            .collect();
        iptables::insert(&rules)?;
        st.vanished.extend(rules);
        drop(st);
        let mut sessions = self.sessions();
        for c in &clients {
            if let Some(h) = sessions.remove(&(node, *c)) {
                h.abort();
            }
        }
        drop(sessions);
        let n = clients.len();
        self.inner
            .sessions_vanished
            .fetch_add(n as u64, Ordering::Relaxed);
        tracing::info!(?node, %server, sessions = n, "network fault: node vanished for its open sessions");
        Ok(n)
    }

    /// Drop every packet to and from `node` (open sessions and new connections) for
    /// `duration`, then heal, from a task on the emulator's runtime. Open sessions resume after the
    /// heal if their TCP has not given up (retransmissions carry the data).
    pub fn partition(&self, node: Node, duration: Duration) -> Result<(), Error> {
        let number = self.partition_start(node)?;
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        self.inner.runtime.spawn(async move {
            tokio::time::sleep(duration).await;
            if let Some(inner) = weak.upgrade() {
                let net = Network { inner };
                // Runs `iptables-restore`: off the runtime's workers.
                let healed =
                    tokio::task::spawn_blocking(move || net.heal_partition(node, Some(number)))
                        .await;
                if let Ok(Err(e)) = healed {
                    tracing::warn!(?node, error = %e, "could not heal a partition");
                }
            }
        });
        Ok(())
    }

    /// Start a partition of `node` (as [`Network::partition`]) until [`Network::heal`].
    /// Returns the partition's number; starting one while one is on changes nothing.
    pub fn partition_start(&self, node: Node) -> Result<u64, Error> {
        netns::require()?;
        let mut st = self.state();
        if let Some((number, _)) = &st.partitioned[node.index()] {
            return Ok(*number);
        }
        let server = self.address(node);
        let rules = Rule::drop_endpoint(server);
        iptables::insert(&rules)?;
        let number = self.inner.partitions.fetch_add(1, Ordering::Relaxed) + 1;
        st.partitioned[node.index()] = Some((number, rules));
        tracing::info!(?node, %server, "network fault: partition");
        Ok(number)
    }

    /// End the partition of `node`, if any: packets flow again.
    pub fn heal(&self, node: Node) -> Result<(), Error> {
        self.heal_partition(node, None)
    }

    fn heal_partition(&self, node: Node, only: Option<u64>) -> Result<(), Error> {
        netns::require()?;
        let mut st = self.state();
        let slot = &mut st.partitioned[node.index()];
        match slot {
            Some((number, _)) if only.is_none_or(|n| n == *number) => {}
            _ => return Ok(()),
        }
        if let Some((_, rules)) = slot.take() {
            iptables::delete(&rules)?;
            tracing::info!(?node, "network fault healed: partition");
        }
        Ok(())
    }

    /// A middlebox in front of `node` that forgets connections idle for longer than `idle`
    /// (rounded up to whole seconds, at least 1) and silently drops their later packets,
    /// like Azure's load balancers and NAT gateways (4 minutes by default). Packets of any
    /// kind, TCP keepalives included, keep a connection remembered.
    ///
    /// Made with the kernel's connection tracking: `nf_conntrack_tcp_timeout_established`
    /// set to `idle`, `nf_conntrack_tcp_loose=0` (a mid-stream packet of a forgotten
    /// connection is then INVALID, not tracked anew) and rules that drop the node's
    /// INVALID packets. The namespace tracks every connection from its setup on, so
    /// sessions opened before this call are covered too, but the new timeout applies to a
    /// connection from its next packet: one idle since before the call is forgotten only
    /// once it has sent or received again and then idled for `idle`. Install it before
    /// the clients connect to have every connection forgotten on time. The timeout is the
    /// namespace's: the last `idle` given holds for every node. Until [`Network::clear`].
    pub fn idle_drop(&self, node: Node, idle: Duration) -> Result<(), Error> {
        netns::require()?;
        let mut st = self.state();
        let secs = idle.as_secs() + u64::from(idle.subsec_nanos() > 0);
        let secs = secs.max(1);
        if st.saved_sysctls.is_none() {
            st.saved_sysctls = Some((
                iptables::sysctl(CT_TIMEOUT_ESTABLISHED)?,
                iptables::sysctl(CT_TCP_LOOSE)?,
            ));
        }
        iptables::set_sysctl(CT_TIMEOUT_ESTABLISHED, &secs.to_string())?;
        iptables::set_sysctl(CT_TCP_LOOSE, "0")?;
        if st.idle_drop[node.index()].is_none() {
            let rules = Rule::drop_forgotten(self.address(node));
            iptables::insert(&rules)?;
            st.idle_drop[node.index()] = Some(rules);
        }
        tracing::info!(
            ?node,
            idle_secs = secs,
            "network fault: a middlebox forgets idle connections"
        );
        Ok(())
    }

    /// Remove every rule this network added (vanished sessions stay ended, but their
    /// addresses may be used again; partitions heal; the middlebox goes) and restore the
    /// conntrack settings. The names keep pointing where they point.
    pub fn clear(&self) -> Result<(), Error> {
        netns::require()?;
        let mut st = self.state();
        let (rules, sysctls) = st.take_all();
        let deleted = iptables::delete(&rules);
        if let Some((timeout, loose)) = sysctls {
            iptables::set_sysctl(CT_TIMEOUT_ESTABLISHED, &timeout)?;
            iptables::set_sysctl(CT_TCP_LOOSE, &loose)?;
        }
        tracing::info!(rules = rules.len(), "network faults cleared");
        deleted
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> NetworkCounters {
        let i = &self.inner;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        NetworkCounters {
            dns_flips: l(&i.dns_flips),
            sessions_vanished: l(&i.sessions_vanished),
            partitions: l(&i.partitions),
            logins_primary: l(&i.logins[0]),
            logins_standby: l(&i.logins[1]),
            logins_read_only_standby: l(&i.logins[2]),
        }
    }
    /// Sessions cut by [`Network::vanish`] so far.
    pub fn sessions_vanished(&self) -> u64 {
        self.inner.sessions_vanished.load(Ordering::Relaxed)
    }
    /// Logins accepted by `node`'s front so far.
    pub fn logins(&self, node: Node) -> u64 {
        self.inner.logins[node.index()].load(Ordering::Relaxed)
    }

    /// Count a login accepted by `node`'s front.
    pub(crate) fn count_login(&self, node: Node) {
        self.inner.logins[node.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Remember the session of `client` on `node` until the guard drops, so that
    /// [`Network::vanish`] can end it.
    pub(crate) fn track_session(
        &self,
        node: Node,
        client: SocketAddrV4,
        handle: tokio::task::AbortHandle,
    ) -> TrackedSession {
        self.sessions().insert((node, client), handle);
        TrackedSession {
            network: self.clone(),
            key: (node, client),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }
    fn sessions(&self) -> MutexGuard<'_, HashMap<(Node, SocketAddrV4), tokio::task::AbortHandle>> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

/// A session [`Network::vanish`] can end; forgotten when dropped.
pub(crate) struct TrackedSession {
    network: Network,
    key: (Node, SocketAddrV4),
}

impl Drop for TrackedSession {
    fn drop(&mut self) {
        self.network.sessions().remove(&self.key);
    }
}

impl State {
    /// Every rule added and the conntrack settings to restore, forgotten here.
    fn take_all(&mut self) -> (Vec<Rule>, Option<(String, String)>) {
        let mut rules = std::mem::take(&mut self.vanished);
        for slot in &mut self.partitioned {
            rules.extend(slot.take().into_iter().flat_map(|(_, r)| r));
        }
        for slot in &mut self.idle_drop {
            rules.extend(slot.take().into_iter().flatten());
        }
        (rules, self.saved_sysctls.take())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Best effort: the namespace, its rules and its hosts file end with the process.
        let st = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        let (rules, sysctls) = st.take_all();
        let _ = iptables::delete(&rules);
        if let Some((timeout, loose)) = sysctls {
            let _ = iptables::set_sysctl(CT_TIMEOUT_ESTABLISHED, &timeout);
            let _ = iptables::set_sysctl(CT_TCP_LOOSE, &loose);
        }
        let _ = hosts::remove(&self.server, &self.owner);
    }
}
