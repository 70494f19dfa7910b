//! Checks 5 and 6: the server's addresses (DNS), and a TCP connection to its port.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use tokio::net::TcpStream;

use super::report::{Check, CheckName};
use crate::Config;

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
    (check, addrs)
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
