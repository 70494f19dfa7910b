//! The nodes behind an Azure server's name and the names themselves.

use std::net::Ipv4Addr;

use crate::error::Error;

/// The DNS suffixes of Azure Database for PostgreSQL flexible servers: the public cloud,
/// Azure China and Azure US Government. A server `NAME` is reached as `NAME.<suffix>`.
pub const AZURE_DOMAINS: [&str; 3] = [
    "postgres.database.azure.com",
    "postgres.database.chinacloudapi.cn",
    "postgres.database.usgovcloudapi.net",
];

/// A node of an emulated high-availability server. All three listen on the same port (Azure
/// keeps 5432 across a failover: only the address behind the name changes) and pass
/// sessions through to the same cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    /// The primary, `127.0.0.1`: the name points here at start.
    Primary,
    /// The standby, `127.0.0.2`, read-write: after a failover it holds the same data.
    Standby,
    /// A read-only standby, `127.0.0.3`: every session is read-only (a demoted primary,
    /// or a replica behind a stale DNS answer).
    ReadOnlyStandby,
}

impl Node {
    /// The three nodes, in the order of [`Node::index`].
    pub const ALL: [Node; 3] = [Node::Primary, Node::Standby, Node::ReadOnlyStandby];

    /// The node's loopback address.
    pub fn ip(self) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, 0, 1 + self.index() as u8)
    }

    /// 0, 1, 2 for the primary, the standby and the read-only standby.
    pub fn index(self) -> usize {
        match self {
            Node::Primary => 0,
            Node::Standby => 1,
            Node::ReadOnlyStandby => 2,
        }
    }

    /// Whether the node's sessions are read-only.
    pub fn read_only(self) -> bool {
        self == Node::ReadOnlyStandby
    }
}

/// The server's names in the three clouds (the public cloud's first).
pub(crate) fn server_names(server: &str) -> Vec<String> {
    AZURE_DOMAINS
        .iter()
        .map(|d| format!("{server}.{d}"))
        .collect()
}

/// A server name as Azure accepts it: 3 to 63 lowercase letters, digits and hyphens, not
/// starting or ending with a hyphen (so that it is one DNS label and the certificate's
/// wildcard covers it).
pub(crate) fn check_server_name(name: &str) -> Result<(), Error> {
    let ok = (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::Setup(format!(
            "invalid server name {name:?}: use 3 to 63 lowercase letters, digits and hyphens, \
             not starting or ending with a hyphen (it becomes NAME.postgres.database.azure.com)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_have_their_own_loopback_address() {
        let ips: Vec<_> = Node::ALL.iter().map(|n| n.ip().to_string()).collect();
        assert_eq!(ips, ["127.0.0.1", "127.0.0.2", "127.0.0.3"]);
        assert!(Node::ReadOnlyStandby.read_only() && !Node::Standby.read_only());
    }

    #[test]
    fn server_names_are_one_dns_label() {
        assert!(check_server_name("failover-test").is_ok());
        for bad in ["ab", "-ab", "ab-", "a.b.c", "Upper", "a_b"] {
            assert!(check_server_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            server_names("srv")[0],
            "srv.postgres.database.azure.com".to_string()
        );
    }
}
