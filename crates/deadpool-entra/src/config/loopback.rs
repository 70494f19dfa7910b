//! Which hosts are this machine: the one place where a connection may go without TLS
//! (`sslmode=disable` is refused for any other host).

/// Is `host` a loopback address, `localhost` or a unix socket path? A Unix socket is a
/// path that begins with `/`, by tokio-postgres' own rule: anything else (`@db` too) is a
/// TCP host name.
pub(crate) fn is_loopback(host: &str) -> bool {
    if host.starts_with('/') {
        return true;
    }
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.eq_ignore_ascii_case("localhost") {
        return true;
    }
    h.parse::<std::net::IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_detection() {
        for h in [
            "127.0.0.1",
            "127.8.9.1",
            "::1",
            "[::1]",
            "localhost",
            "/var/run/postgresql",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "10.0.0.1",
            "db.postgres.database.azure.com",
            "localhost.evil.com",
            "128.0.0.1",
            // tokio-postgres treats only a path that begins with `/` as a Unix socket:
            // `@db` is a TCP host name, resolved like any other.
            "@db",
            "@",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }
}
