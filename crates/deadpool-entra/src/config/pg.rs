//! The `tokio_postgres::Config` a login uses, from our [`Config`].

use tokio_postgres::config as pg;

use super::{ChannelBinding, Config, LoadBalanceHosts, TargetSessionAttrs};

/// The login configuration: every host (with its port and address), the session and TCP
/// settings. TLS (`tls`: a verifying connector is in use) is ours; tokio-postgres only
/// asks for it.
pub(crate) fn pg_config(cfg: &Config, tls: bool) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    for h in cfg.host_list() {
        c.host(h);
    }
    if cfg.ports.is_empty() {
        c.port(cfg.port.unwrap_or(5432));
    } else {
        for p in &cfg.ports {
            c.port(*p);
        }
    }
    // Connect to the addresses; TLS still verifies the host names. tokio-postgres takes
    // them by position, one for every host or none: when some hosts have none, the login
    // tries the hosts one at a time itself (`crate::hosts`).
    if let Some(addrs) = cfg.hostaddr.iter().copied().collect::<Option<Vec<_>>>() {
        for a in addrs {
            c.hostaddr(a);
        }
    }
    if let Some(d) = &cfg.dbname {
        c.dbname(d);
    }
    if let Some(u) = &cfg.user {
        c.user(u);
    }
    c.application_name(cfg.application_name.as_deref().unwrap_or("deadpool-entra"));
    if let Some(o) = &cfg.options {
        c.options(o);
    }
    c.target_session_attrs(match cfg.target_session_attrs {
        TargetSessionAttrs::ReadWrite => pg::TargetSessionAttrs::ReadWrite,
        TargetSessionAttrs::ReadOnly => pg::TargetSessionAttrs::ReadOnly,
        // tokio-postgres does not know these: the login asks the server itself
        // (`crate::hosts`).
        TargetSessionAttrs::Any
        | TargetSessionAttrs::Primary
        | TargetSessionAttrs::Standby
        | TargetSessionAttrs::PreferStandby => pg::TargetSessionAttrs::Any,
    });
    c.load_balance_hosts(match cfg.load_balance_hosts {
        LoadBalanceHosts::Disable => pg::LoadBalanceHosts::Disable,
        LoadBalanceHosts::Random => pg::LoadBalanceHosts::Random,
    });
    super::tcp::apply(&mut c, cfg);
    c.ssl_mode(if tls {
        pg::SslMode::Require
    } else {
        pg::SslMode::Disable
    });
    c.channel_binding(match cfg.channel_binding {
        ChannelBinding::Disable => pg::ChannelBinding::Disable,
        ChannelBinding::Prefer => pg::ChannelBinding::Prefer,
        ChannelBinding::Require => pg::ChannelBinding::Require,
    });
    c
}

/// `host:port` for errors and logs; several hosts joined with commas.
pub(crate) fn endpoint_text(cfg: &Config) -> String {
    cfg.host_list()
        .into_iter()
        .enumerate()
        .map(|(i, h)| {
            let port = cfg.port_of(i);
            if h.contains(':') {
                format!("[{h}]:{port}")
            } else {
                format!("{h}:{port}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The pool's name in metrics when none is set: `host:port/database`, so that pools for
/// two databases on one server write two series. The database is `dbname`, else the
/// user's name (PostgreSQL's default); with neither configured (the user is taken from
/// the token), `host:port`.
pub(crate) fn default_pool_name(cfg: &Config) -> String {
    let endpoint = endpoint_text(cfg);
    match cfg.dbname.as_deref().or(cfg.user.as_deref()) {
        Some(db) if !db.is_empty() => format!("{endpoint}/{db}"),
        _ => endpoint,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_pool_name_names_the_database_postgres_logs_in_to() {
        let mut cfg = Config {
            host: Some("a.example.com,b.example.com".into()),
            ports: vec![5432, 6432],
            ..Config::default()
        };
        assert_eq!(
            default_pool_name(&cfg),
            "a.example.com:5432,b.example.com:6432"
        );
        cfg.user = Some("app-identity".into());
        assert_eq!(
            default_pool_name(&cfg),
            "a.example.com:5432,b.example.com:6432/app-identity",
            "without a dbname, PostgreSQL logs in to the user's database"
        );
        cfg.dbname = Some("orders".into());
        assert_eq!(
            default_pool_name(&cfg),
            "a.example.com:5432,b.example.com:6432/orders"
        );
    }
}
