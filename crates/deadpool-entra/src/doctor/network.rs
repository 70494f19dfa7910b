//! Checks 5 and 6: the server's addresses (DNS), and a TCP connection to its port.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use tokio::net::TcpStream;

use super::report::{Check, CheckName};
use crate::config::Config;

/// The TCP connect timeout when the configuration sets none (the pool's is 2 s; the doctor
/// waits longer, to tell a slow path from a dropped one).
const CONNECT_LIMIT: Duration = Duration::from_secs(5);

/// The Azure server name suffixes (public, US Government, China).
const AZURE_SUFFIXES: [&str; 3] = [
    ".postgres.database.azure.com",
    ".postgres.database.usgovcloudapi.net",
    ".postgres.database.chinacloudapi.cn",
];

/// Resolves `host` as the pool would (or takes `hostaddr`); the addresses to try.
pub(crate) async fn dns(cfg: &Config, host: &str, port: u16) -> (Check, Vec<SocketAddr>) {
    if let Some(Some(ip)) = cfg.hostaddr.first() {
        let mut check = Check::new(
            CheckName::Dns,
            format!("not resolved: hostaddr gives {ip} (the name {host} is still what TLS checks)"),
        );
        check.fact("address", ip.to_string());
        return (check, vec![SocketAddr::new(*ip, port)]);
    }
    let addrs: Vec<SocketAddr> = match tokio::net::lookup_host((host, port)).await {
        Ok(a) => a.collect(),
        Err(e) => {
            return (
                Check::failed(
                    CheckName::Dns,
                    format!("{host} does not resolve: {e}"),
                    "check the server name (Azure: <server>.postgres.database.azure.com); for a private endpoint, this machine must use the private DNS zone (privatelink.postgres.database.azure.com) linked to its virtual network",
                ),
                Vec::new(),
            );
        }
    };
    (describe(host, &addrs), addrs)
}

/// What the addresses a name resolves to say (IPv4, IPv6, private, loopback), and the
/// private-endpoint hints.
fn describe(host: &str, addrs: &[SocketAddr]) -> Check {
    let mut check = Check::new(CheckName::Dns, "");
    let v4: Vec<String> = addrs
        .iter()
        .filter(|a| a.is_ipv4())
        .map(|a| a.ip().to_string())
        .collect();
    let v6: Vec<String> = addrs
        .iter()
        .filter(|a| a.is_ipv6())
        .map(|a| a.ip().to_string())
        .collect();
    check.fact(
        "IPv4",
        if v4.is_empty() {
            "none".to_owned()
        } else {
            v4.join(", ")
        },
    );
    check.fact(
        "IPv6",
        if v6.is_empty() {
            "none".to_owned()
        } else {
            v6.join(", ")
        },
    );
    let lower = host.to_ascii_lowercase();
    let azure_name = AZURE_SUFFIXES
        .iter()
        .any(|s| lower.trim_end_matches('.').ends_with(s));
    let private = addrs.iter().any(|a| is_private(a.ip()));
    let loopback = addrs.iter().all(|a| a.ip().is_loopback());
    let kind = if loopback {
        "loopback (a local server or a tunnel)"
    } else if private {
        "a private address"
    } else {
        "a public address"
    };
    check.found = format!(
        "{host} resolves to {} ({kind})",
        addrs
            .iter()
            .map(|a| a.ip().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if azure_name && private && !loopback {
        check.fact(
            "private endpoint",
            "the public name resolves to a private address: a private endpoint or a server in a virtual network, reachable only from that network, a peered one, or over VPN/ExpressRoute",
        );
    }
    if lower.contains(".privatelink.") && !private && !loopback {
        check.warn(format!(
            "{host} is a private-link name but resolves to a public address: this machine's DNS does not use the private DNS zone linked to the virtual network, so the connection goes to the public endpoint (refused when public access is disabled)"
        ));
    }
    check
}

/// Connects to each address in turn; the first that accepts.
pub(crate) async fn tcp(cfg: &Config, addrs: &[SocketAddr]) -> (Check, Option<SocketAddr>) {
    let limit = cfg
        .connect_timeout
        .filter(|d| !d.is_zero())
        .unwrap_or(CONNECT_LIMIT);
    let mut failures = Vec::new();
    let mut refused = false;
    for addr in addrs {
        match tokio::time::timeout(limit, TcpStream::connect(addr)).await {
            Ok(Ok(_)) => {
                let mut check = Check::new(CheckName::Tcp, format!("{addr} accepts connections"));
                for f in &failures {
                    check.warn(f);
                }
                return (check, Some(*addr));
            }
            Ok(Err(e)) => {
                refused |= e.kind() == std::io::ErrorKind::ConnectionRefused;
                failures.push(format!("{addr}: {e}"));
            }
            Err(_) => failures.push(format!("{addr}: no answer within {limit:?}")),
        }
    }
    let port = addrs.first().map_or(0, SocketAddr::port);
    let fix = if refused {
        format!(
            "nothing listens on port {port} there: check the port (Azure: 5432 for the server, 6432 for its built-in PgBouncer) and that the server is started"
        )
    } else {
        format!(
            "the packets are dropped: a firewall rule on the server (Networking: allow this machine's outbound address), public access disabled (connect from inside the virtual network, through the private endpoint), or a network security group or outbound firewall blocking port {port}"
        )
    };
    (
        Check::failed(CheckName::Tcp, failures.join("; "), fix),
        None,
    )
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_link_local()
                || (v4.octets()[0] == 100 && v4.octets()[1] & 0xc0 == 64)
        }
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ips: &[&str]) -> Vec<SocketAddr> {
        ips.iter()
            .map(|ip| SocketAddr::new(ip.parse().unwrap(), 5432))
            .collect()
    }

    #[test]
    fn private_addresses_are_told_from_public_ones() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "100.64.0.1",
            "100.127.255.1",
            "fd00::1",
            "fc00::1",
        ] {
            assert!(is_private(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "20.1.2.3",
            "100.128.0.1",
            "100.63.0.1",
            "172.32.0.1",
            "2001:db8::1",
            "fe00::1",
            "8.8.8.8",
        ] {
            assert!(!is_private(ip.parse().unwrap()), "{ip}");
        }
    }

    fn fact(c: &Check, name: &str) -> Option<String> {
        c.evidence
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.clone())
    }

    #[test]
    fn a_public_name_on_a_private_address_is_a_private_endpoint() {
        let c = describe("db.postgres.database.azure.com", &at(&["10.0.0.4"]));
        assert!(c.found.ends_with("(a private address)"), "{}", c.found);
        assert!(fact(&c, "private endpoint").is_some());
        assert_eq!(fact(&c, "IPv4").as_deref(), Some("10.0.0.4"));
        assert_eq!(fact(&c, "IPv6").as_deref(), Some("none"));
        assert!(c.warnings.is_empty());
        // Not an Azure name, or a public address, or loopback: no such fact.
        assert!(
            fact(
                &describe("db.example.com", &at(&["10.0.0.4"])),
                "private endpoint"
            )
            .is_none()
        );
        let public = describe(
            "db.postgres.database.azure.com",
            &at(&["20.1.2.3", "2001:db8::1"]),
        );
        assert!(fact(&public, "private endpoint").is_none());
        assert!(
            public.found.ends_with("(a public address)"),
            "{}",
            public.found
        );
        assert_eq!(fact(&public, "IPv6").as_deref(), Some("2001:db8::1"));
        let local = describe("db.postgres.database.azure.com", &at(&["127.0.0.1"]));
        assert!(fact(&local, "private endpoint").is_none());
        assert!(local.found.contains("loopback"), "{}", local.found);
    }

    #[test]
    fn a_private_link_name_on_a_public_address_warns() {
        let name = "db.privatelink.postgres.database.azure.com";
        assert_eq!(describe(name, &at(&["20.1.2.3"])).warnings.len(), 1);
        assert!(describe(name, &at(&["10.0.0.4"])).warnings.is_empty());
        assert!(describe(name, &at(&["127.0.0.1"])).warnings.is_empty());
        assert!(
            describe("db.postgres.database.azure.com", &at(&["20.1.2.3"]))
                .warnings
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_zero_connect_timeout_means_the_default_and_a_refusal_says_nothing_listens() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let cfg = Config {
            connect_timeout: Some(Duration::ZERO),
            ..Config::default()
        };
        let (c, addr) = tcp(
            &cfg,
            &at(&["127.0.0.1"])
                .into_iter()
                .map(|a| SocketAddr::new(a.ip(), port))
                .collect::<Vec<_>>(),
        )
        .await;
        assert!(addr.is_none());
        assert!(c.fix.unwrap().contains("nothing listens"));
    }
}
