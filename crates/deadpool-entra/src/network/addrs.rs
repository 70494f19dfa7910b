//! Which addresses the pool's server name stands for: the pool resolves a single host
//! name itself before each login (as tokio-postgres would) and pins the login to one
//! address, so that it knows where every session went and can tell when DNS moves.

use std::net::IpAddr;

use tokio_postgres::config::Host;

/// What the pool resolves itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// One TCP host name (the common case: `<server>.postgres.database.azure.com`).
    Name { host: String, port: u16 },
    /// One IP address given as the host: nothing to resolve, but its sessions are known.
    Literal(IpAddr),
}

/// The target of a login configuration, or `None` when tokio-postgres keeps choosing
/// the address (several hosts, `hostaddr` given, a Unix socket).
pub(crate) fn target_of(pg: &tokio_postgres::Config) -> Option<Target> {
    let [Host::Tcp(host)] = pg.get_hosts() else {
        return None;
    };
    if !pg.get_hostaddrs().is_empty() {
        return None;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(Target::Literal(ip));
    }
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    Some(Target::Name {
        host: host.clone(),
        port,
    })
}

/// The addresses `host` resolves to now, in the resolver's order, without duplicates.
pub(crate) async fn resolve(host: &str, port: u16) -> std::io::Result<Vec<IpAddr>> {
    let mut out: Vec<IpAddr> = Vec::new();
    for a in tokio::net::lookup_host((host, port)).await? {
        if !out.contains(&a.ip()) {
            out.push(a.ip());
        }
    }
    Ok(out)
}

/// Whether two answers name the same addresses (order aside).
pub(crate) fn same_set(a: &[IpAddr], b: &[IpAddr]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

/// Addresses as text, for logs and stats.
pub(crate) fn text(addrs: &[IpAddr]) -> String {
    addrs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn pg(s: &str) -> tokio_postgres::Config {
        s.parse().expect("valid config")
    }

    #[test]
    fn one_host_name_is_resolved_by_the_pool() {
        assert_eq!(
            target_of(&pg("host=db.postgres.database.azure.com port=6432")),
            Some(Target::Name {
                host: "db.postgres.database.azure.com".into(),
                port: 6432
            })
        );
        assert_eq!(
            target_of(&pg("host=db")),
            Some(Target::Name {
                host: "db".into(),
                port: 5432
            })
        );
    }

    #[test]
    fn literals_sockets_several_hosts_and_hostaddr_are_left_alone_or_known() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(target_of(&pg("host=10.1.2.3")), Some(Target::Literal(ip)));
        let v6: IpAddr = "::1".parse().unwrap();
        let mut c = tokio_postgres::Config::new();
        c.host("::1");
        assert_eq!(target_of(&c), Some(Target::Literal(v6)));
        assert_eq!(target_of(&pg("host=/var/run/postgresql")), None);
        assert_eq!(target_of(&pg("host=a,b")), None);
        assert_eq!(target_of(&pg("host=a hostaddr=10.1.2.3")), None);
    }

    #[test]
    fn address_sets_compare_without_order() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(same_set(&[a, b], &[b, a]));
        assert!(!same_set(&[a], &[b]));
        assert!(!same_set(&[a], &[a, b]));
        assert!(same_set(&[], &[]));
        assert_eq!(text(&[a, b]), "10.0.0.1,10.0.0.2");
    }

    #[tokio::test]
    async fn loopback_resolves_without_duplicates() {
        let addrs = resolve("127.0.0.1", 5432)
            .await
            .expect("a literal resolves");
        assert_eq!(addrs, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
    }
}
