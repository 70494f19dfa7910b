//! The kernel's packet filter and connection tracking: the rules the faults add to the
//! `INPUT` chain, and the conntrack settings of the middlebox that forgets idle
//! connections.
//!
//! Rules go in `INPUT`, not `OUTPUT`: on loopback every packet passes both, and a packet
//! dropped in `OUTPUT` gives its local sender an error at once, where a packet dropped in
//! `INPUT` is simply never received, as on a real network.

use std::net::SocketAddrV4;

use super::command::run;
use crate::error::Error;

/// A rule of the `filter` table, as `iptables` takes it after `-I`/`-D`
/// (`INPUT -p tcp ... -j DROP`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rule(String);

impl Rule {
    /// Drop every packet from `from` to `to` (one direction of one connection).
    pub(crate) fn drop_flow(from: SocketAddrV4, to: SocketAddrV4) -> Rule {
        Rule(format!(
            "INPUT -p tcp -s {} --sport {} -d {} --dport {} -j DROP",
            from.ip(),
            from.port(),
            to.ip(),
            to.port()
        ))
    }

    /// Drop every packet of both directions of the connection between `client` and
    /// `server`.
    pub(crate) fn drop_connection(client: SocketAddrV4, server: SocketAddrV4) -> [Rule; 2] {
        [
            Rule::drop_flow(client, server),
            Rule::drop_flow(server, client),
        ]
    }

    /// Drop every packet to and from `server`: every connection, new ones too.
    pub(crate) fn drop_endpoint(server: SocketAddrV4) -> [Rule; 2] {
        let (ip, port) = (server.ip(), server.port());
        [
            Rule(format!("INPUT -p tcp -d {ip} --dport {port} -j DROP")),
            Rule(format!("INPUT -p tcp -s {ip} --sport {port} -j DROP")),
        ]
    }

    /// Drop the packets to and from `server` that connection tracking finds INVALID: with
    /// `nf_conntrack_tcp_loose=0`, those of a connection it has forgotten.
    pub(crate) fn drop_forgotten(server: SocketAddrV4) -> [Rule; 2] {
        let (ip, port) = (server.ip(), server.port());
        let invalid = "-m conntrack --ctstate INVALID -j DROP";
        [
            Rule(format!("INPUT -p tcp -d {ip} --dport {port} {invalid}")),
            Rule(format!("INPUT -p tcp -s {ip} --sport {port} {invalid}")),
        ]
    }
}

/// Insert `rules` at the top of their chain, all at once (one `iptables-restore`).
pub(crate) fn insert(rules: &[Rule]) -> Result<(), Error> {
    restore("-I", rules)
}

/// Delete `rules`: all at once, or one by one if the batch fails (a rule someone else
/// deleted fails the whole batch); the error is the last rule that could not be deleted.
pub(crate) fn delete(rules: &[Rule]) -> Result<(), Error> {
    if rules.is_empty() || restore("-D", rules).is_ok() {
        return Ok(());
    }
    let mut last = Ok(());
    for r in rules {
        if let Err(e) = restore("-D", std::slice::from_ref(r)) {
            last = Err(e);
        }
    }
    last
}

fn restore(verb: &str, rules: &[Rule]) -> Result<(), Error> {
    if rules.is_empty() {
        return Ok(());
    }
    let mut text = String::from("*filter\n");
    for Rule(r) in rules {
        text.push_str(&format!("{verb} {r}\n"));
    }
    text.push_str("COMMIT\n");
    run("iptables-restore", &["--noflush"], Some(&text))
}

/// The rule that makes the kernel track every connection of the namespace from now on.
///
/// Connection tracking runs in a network namespace only once a rule there uses it. Without
/// this one, the middlebox's rules would be the first, and every connection opened before
/// them would be unknown: with `nf_conntrack_tcp_loose=0`, INVALID at its next packet, as
/// if forgotten at once. The rule matches and does nothing (no target).
pub(crate) fn track_connections() -> Result<(), Error> {
    let rule = [
        "INPUT",
        "-m",
        "conntrack",
        "--ctstate",
        "INVALID",
        "-m",
        "comment",
        "--comment",
        "entra-emulator: track connections",
    ];
    let with = |verb: &'static str| [&[verb][..], &rule[..]].concat();
    if run("iptables", &with("-C"), None).is_ok() {
        return Ok(());
    }
    run("iptables", &with("-A"), None)
}

/// `nf_conntrack_tcp_timeout_established`: seconds an established connection stays
/// tracked without a packet.
pub(crate) const CT_TIMEOUT_ESTABLISHED: &str =
    "net/netfilter/nf_conntrack_tcp_timeout_established";
/// `nf_conntrack_tcp_loose`: whether a mid-stream packet of an unknown connection starts
/// tracking it (1, the default) or is INVALID (0).
pub(crate) const CT_TCP_LOOSE: &str = "net/netfilter/nf_conntrack_tcp_loose";

/// A sysctl of this network namespace (`/proc/sys/...`).
pub(crate) fn sysctl(name: &str) -> Result<String, Error> {
    let path = format!("/proc/sys/{name}");
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|e| Error::Network(format!("cannot read {path}: {e}")))
}

/// Set a sysctl of this network namespace.
pub(crate) fn set_sysctl(name: &str, value: &str) -> Result<(), Error> {
    let path = format!("/proc/sys/{name}");
    std::fs::write(&path, value)
        .map_err(|e| Error::Network(format!("cannot set {path} to {value}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn rules_drop_both_directions() {
        let client = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 40000);
        let server = SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 5432);
        let [a, b] = Rule::drop_connection(client, server);
        assert_eq!(
            a.0,
            "INPUT -p tcp -s 127.0.0.1 --sport 40000 -d 127.0.0.2 --dport 5432 -j DROP"
        );
        assert_eq!(
            b.0,
            "INPUT -p tcp -s 127.0.0.2 --sport 5432 -d 127.0.0.1 --dport 40000 -j DROP"
        );
        let [to, from] = Rule::drop_endpoint(server);
        assert_eq!(to.0, "INPUT -p tcp -d 127.0.0.2 --dport 5432 -j DROP");
        assert_eq!(from.0, "INPUT -p tcp -s 127.0.0.2 --sport 5432 -j DROP");
    }
}
