//! The sqlx connect options and pool sizes a [`Config`] names: the same host, port,
//! database, user and TLS rules as the deadpool pool, and a clear error for what sqlx
//! cannot do (several hosts, `hostaddr`, an unsupported `options`).

use std::time::Duration;

use deadpool_entra::{ChannelBinding, Config, SslMode, TargetSessionAttrs, error::ConfigError};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};

/// The connect options without a password: the watcher adds each token.
pub(crate) fn connect_options(cfg: &Config, user: &str) -> Result<PgConnectOptions, ConfigError> {
    let hosts = cfg.host_list();
    if hosts.len() > 1 {
        return Err(ConfigError::new(
            "host",
            format!(
                "sqlx connects to one host, and {} are given; give the one server to connect to (a read replica gets a pool of its own)",
                hosts.len()
            ),
        ));
    }
    if cfg.hostaddr.iter().any(Option::is_some) {
        return Err(ConfigError::new(
            "hostaddr",
            "sqlx has no hostaddr (it resolves the host name itself); remove it",
        ));
    }
    if cfg.target_session_attrs != TargetSessionAttrs::Any {
        return Err(ConfigError::new(
            "target_session_attrs",
            format!(
                "sqlx cannot check a server's role at login (target_session_attrs={}); remove it and point host at the server wanted (the primary's name, or a replica's)",
                cfg.target_session_attrs.as_str()
            ),
        ));
    }
    if cfg.channel_binding == ChannelBinding::Require {
        return Err(ConfigError::new(
            "channel_binding",
            "sqlx never uses channel binding (SCRAM without -PLUS), so channel_binding=require cannot be met; use prefer or disable",
        ));
    }
    if cfg.ssl_mode == SslMode::VerifyCa {
        // sqlx adds `sslrootcert` to the public roots rather than trusting it alone, and
        // verify-ca skips the host name: anyone holding any publicly trusted certificate
        // would pass.
        return Err(ConfigError::new(
            "sslmode",
            "sqlx's verify-ca trusts the public roots as well as sslrootcert and does not check the host name, so anyone who can redirect the connection and holds any publicly trusted certificate would receive the token; use verify-full (the default), with sslrootcert for a private CA",
        ));
    }
    // `new_without_pgpass`: no password from a file; the token is the password. It
    // still reads the PG* variables (sqlx has no constructor that does not): each one
    // that matters is overwritten below with what the configuration says, libpq's
    // default where it says nothing, so that the sqlx pool and the deadpool pool log in
    // alike.
    let mut o = PgConnectOptions::new_without_pgpass()
        .host(cfg.first_host())
        .port(cfg.port_of(0))
        .username(user)
        // libpq's default database is the user's name.
        .database(cfg.dbname.as_deref().unwrap_or(user))
        .application_name(cfg.application_name.as_deref().unwrap_or("sqlx-entra"))
        .ssl_mode(ssl_mode(cfg.ssl_mode));
    o = match cfg.ssl_root_cert.as_deref() {
        // No file (or `system`): the public roots, which sqlx trusts anyway. An empty
        // PEM adds none, and replaces a `PGSSLROOTCERT` sqlx read itself (`system`
        // would be taken for a file name there).
        Some(p) if p.as_os_str() != "system" => o.ssl_root_cert(p),
        _ => o.ssl_root_cert_from_pem(Vec::new()),
    };
    match &cfg.options {
        Some(opts) => o = o.options(server_options(opts)?),
        // sqlx can add `options` but not remove them: one read from the environment
        // that the configuration does not carry is refused, not sent behind its back.
        None if o.get_options().is_some() => {
            return Err(ConfigError::new(
                "options",
                "PGOPTIONS is set in the environment but the configuration has no options (it was not read from the environment); sqlx would send it anyway: unset PGOPTIONS, or give the options in the configuration",
            ));
        }
        None => {}
    }
    Ok(o)
}

/// The settings given that sqlx has no place for: TCP timeouts and keepalives (sqlx
/// pings an idle session before handing it out instead, and `acquire_timeout` bounds a
/// login). The builder names them in a warning.
pub(crate) fn ignored(cfg: &Config) -> Vec<&'static str> {
    [
        ("connect_timeout", cfg.connect_timeout.is_some()),
        ("keepalives", cfg.keepalives.is_some()),
        ("keepalives_idle", cfg.keepalives_idle.is_some()),
        ("keepalives_interval", cfg.keepalives_interval.is_some()),
        ("keepalives_retries", cfg.keepalives_retries.is_some()),
        ("tcp_user_timeout", cfg.tcp_user_timeout.is_some()),
    ]
    .into_iter()
    .filter_map(|(name, set)| set.then_some(name))
    .collect()
}

/// libpq's `sslmode` as sqlx spells it. `Config::validate` has already refused the modes
/// that would send a token in clear text (unless to loopback, with the opt-out).
fn ssl_mode(m: SslMode) -> PgSslMode {
    match m {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Allow => PgSslMode::Allow,
        SslMode::Prefer => PgSslMode::Prefer,
        // deadpool-entra's `require` verifies the chain and the name; sqlx's would accept
        // any certificate and hand the token to whoever answers.
        SslMode::Require => PgSslMode::VerifyFull,
        // Refused in `connect_options`.
        SslMode::VerifyCa => PgSslMode::VerifyFull,
        SslMode::VerifyFull => PgSslMode::VerifyFull,
    }
}

/// `options` (`-c name=value ...`, libpq's form) as the name/value pairs sqlx takes.
fn server_options(s: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let bad = || {
        ConfigError::new(
            "options",
            format!(
                "only `-c name=value` settings are supported with sqlx, found {s:?}; write each as -c name=value"
            ),
        )
    };
    let mut out = Vec::new();
    let mut words = s.split_whitespace();
    while let Some(w) = words.next() {
        let setting = match w.strip_prefix("-c") {
            Some("") => words.next().ok_or_else(bad)?,
            Some(rest) => rest,
            None => return Err(bad()),
        };
        let (k, v) = setting.split_once('=').ok_or_else(bad)?;
        if k.is_empty() {
            return Err(bad());
        }
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}

/// The pool size: the configuration's (`Config::validate` bounds it), or the deadpool
/// pool's default (deadpool's own, two per logical CPU, raised to `min_connections`), so
/// that both pools size alike from one configuration.
pub(crate) fn max_connections(cfg: &Config) -> u32 {
    let n = cfg.max_size.unwrap_or_else(|| {
        deadpool_entra::deadpool_postgres::PoolConfig::default()
            .max_size
            .max(cfg.min_connections)
    });
    u32::try_from(n).unwrap_or(u32::MAX).max(1)
}

/// sqlx's pool options for `cfg`, hooks aside: its size, its acquire timeout, no closing
/// by age (the retirement rule's instead), and sqlx's own idle timeout.
pub(crate) fn pool_options(cfg: &Config) -> PgPoolOptions {
    let max = max_connections(cfg);
    PgPoolOptions::new()
        .max_connections(max)
        .min_connections(u32::try_from(cfg.min_connections).map_or(max, |n| n.min(max)))
        .acquire_timeout(acquire_timeout(cfg))
        // Retirement by lifetime is ours: jittered, and only when a replacement can log
        // in.
        .max_lifetime(None)
    // sqlx's idle timeout (10 minutes) stays. It closes idle sessions during an outage
    // too, but sqlx sets no TCP keepalives, so a session idle that long behind Azure's
    // 4-minute idle drop (load balancers, NAT) is likely dead already, and handing it out
    // would hang its ping until the acquire times out. A plain sqlx pool does the same.
}

/// The longest acquire timeout: sqlx adds it to `Instant::now()`, which panics on
/// overflow, and has no "for ever".
pub(crate) const MAX_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// How long an acquire may wait, login included: `wait_timeout` plus `create_timeout`
/// (deadpool's two), 30 s when neither is set, at most [`MAX_ACQUIRE_TIMEOUT`].
pub(crate) fn acquire_timeout(cfg: &Config) -> Duration {
    match (cfg.wait_timeout, cfg.create_timeout) {
        (None, None) => Duration::from_secs(30),
        (w, c) => w
            .unwrap_or_default()
            .saturating_add(c.unwrap_or_default())
            .clamp(Duration::from_millis(1), MAX_ACQUIRE_TIMEOUT),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Config {
        let mut c = Config::new();
        for (k, v) in pairs {
            c.set(k, v).unwrap();
        }
        c
    }

    #[test]
    fn the_options_carry_the_configured_server_and_verify_full_by_default() {
        let c = cfg(&[
            ("host", "srv.postgres.database.azure.com"),
            ("port", "6432"),
            ("dbname", "app"),
            ("application_name", "svc"),
        ]);
        let o = connect_options(&c, "me@contoso.com").unwrap();
        assert_eq!(o.get_host(), "srv.postgres.database.azure.com");
        assert_eq!(o.get_port(), 6432);
        assert_eq!(o.get_username(), "me@contoso.com");
        assert_eq!(o.get_database(), Some("app"));
        assert_eq!(o.get_application_name(), Some("svc"));
        // Unset: libpq's default database (the user's name), and a name of our own.
        let bare = connect_options(&cfg(&[("host", "a.example")]), "me").unwrap();
        assert_eq!(bare.get_database(), Some("me"));
        assert_eq!(bare.get_application_name(), Some("sqlx-entra"));
        assert!(matches!(o.get_ssl_mode(), PgSslMode::VerifyFull));
    }

    #[test]
    fn what_sqlx_cannot_do_is_a_clear_error() {
        let two = cfg(&[("host", "a.example,b.example")]);
        let e = connect_options(&two, "u").unwrap_err();
        assert_eq!(e.field, "host");
        assert!(e.reason.contains("one host"), "{e}");
        let mut addr = cfg(&[("host", "a.example")]);
        addr.hostaddr = vec![Some("10.0.0.1".parse().unwrap())];
        assert_eq!(connect_options(&addr, "u").unwrap_err().field, "hostaddr");
        for (k, v) in [
            ("target_session_attrs", "read-write"),
            ("target_session_attrs", "standby"),
            ("channel_binding", "require"),
        ] {
            let c = cfg(&[("host", "a.example"), (k, v)]);
            let e = connect_options(&c, "u").unwrap_err();
            assert_eq!(e.field, k, "{e}");
        }
        for ok in [
            ("target_session_attrs", "any"),
            ("channel_binding", "disable"),
        ] {
            connect_options(&cfg(&[("host", "a.example"), ok]), "u").unwrap();
        }
        for bad in ["--search_path=x", "-c", "-c =x", "-c noequals"] {
            let c = cfg(&[("host", "a.example"), ("options", bad)]);
            assert_eq!(
                connect_options(&c, "u").unwrap_err().field,
                "options",
                "{bad}"
            );
        }
    }

    #[test]
    fn server_options_are_read_in_both_libpq_forms() {
        assert_eq!(
            server_options("-c search_path=app -cstatement_timeout=5s").unwrap(),
            vec![
                ("search_path".to_owned(), "app".to_owned()),
                ("statement_timeout".to_owned(), "5s".to_owned())
            ]
        );
        assert!(server_options("").unwrap().is_empty());
    }

    #[test]
    fn sslmode_require_verifies_the_certificate_as_deadpool_entra_does() {
        let c = cfg(&[
            ("host", "srv.postgres.database.azure.com"),
            ("sslmode", "require"),
        ]);
        let o = connect_options(&c, "u").unwrap();
        assert!(matches!(o.get_ssl_mode(), PgSslMode::VerifyFull));
    }

    #[test]
    fn verify_ca_is_refused_because_sqlx_adds_the_public_roots_and_skips_the_host_name() {
        for root in ["/etc/ssl/our-ca.pem", "system"] {
            let c = cfg(&[
                ("host", "srv.postgres.database.azure.com"),
                ("sslmode", "verify-ca"),
                ("sslrootcert", root),
            ]);
            let e = connect_options(&c, "u").unwrap_err();
            assert_eq!(e.field, "sslmode", "{root}");
            assert!(e.reason.contains("verify-full"), "{e}");
        }
    }

    #[test]
    fn the_root_certificate_is_the_file_given_and_system_means_the_public_roots() {
        let printed = |root: &str| {
            let c = cfg(&[("host", "a.example"), ("sslrootcert", root)]);
            format!("{:?}", connect_options(&c, "u").unwrap())
        };
        let file = printed("/etc/ssl/our-ca.pem");
        assert!(file.contains("our-ca.pem"), "{file}");
        // `system`, or none: an empty PEM (no root added to the public ones), which also
        // replaces a PGSSLROOTCERT that sqlx read from the environment itself.
        let system = printed("system");
        assert!(
            system.contains("ssl_root_cert: Some(Inline([]))"),
            "{system}"
        );
        let c = cfg(&[("host", "a.example")]);
        let none = format!("{:?}", connect_options(&c, "u").unwrap());
        assert!(none.contains("ssl_root_cert: Some(Inline([]))"), "{none}");
    }

    #[test]
    fn settings_sqlx_has_no_place_for_are_named() {
        assert!(ignored(&cfg(&[("host", "a.example")])).is_empty());
        let c = cfg(&[
            ("host", "a.example"),
            ("connect_timeout", "3"),
            ("keepalives", "1"),
            ("keepalives_idle", "10"),
            ("keepalives_interval", "2"),
            ("keepalives_retries", "4"),
            ("tcp_user_timeout", "5000"),
        ]);
        assert_eq!(
            ignored(&c),
            [
                "connect_timeout",
                "keepalives",
                "keepalives_idle",
                "keepalives_interval",
                "keepalives_retries",
                "tcp_user_timeout"
            ]
        );
    }

    #[test]
    fn sqlx_closes_no_session_by_age_and_keeps_its_idle_timeout() {
        let mut c = cfg(&[("host", "a.example")]);
        c.max_size = Some(6);
        c.min_connections = 2;
        let o = pool_options(&c);
        assert_eq!(
            o.get_idle_timeout(),
            PgPoolOptions::new().get_idle_timeout(),
            "sqlx's own"
        );
        assert_eq!(o.get_max_lifetime(), None);
        assert_eq!(o.get_max_connections(), 6);
        assert_eq!(o.get_min_connections(), 2);
        assert_eq!(o.get_acquire_timeout(), acquire_timeout(&c));
    }

    #[test]
    fn sizes_and_timeouts_follow_the_deadpool_pool() {
        let mut c = Config::new();
        c.max_size = None;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(max_connections(&c), u32::try_from(cpus * 2).unwrap());
        c.min_connections = cpus * 2 + 3;
        assert_eq!(max_connections(&c), u32::try_from(cpus * 2 + 3).unwrap());
        c.min_connections = 0;
        c.max_size = Some(7);
        assert_eq!(max_connections(&c), 7);
        c.max_size = Some(0);
        assert_eq!(max_connections(&c), 1);
        c.wait_timeout = None;
        c.create_timeout = None;
        assert_eq!(acquire_timeout(&c), Duration::from_secs(30));
        c.wait_timeout = Some(Duration::from_secs(2));
        c.create_timeout = Some(Duration::from_secs(3));
        assert_eq!(acquire_timeout(&c), Duration::from_secs(5));
        c.wait_timeout = Some(Duration::ZERO);
        c.create_timeout = None;
        assert_eq!(acquire_timeout(&c), Duration::from_millis(1));
        // sqlx adds the timeout to `Instant::now()` and panics on overflow: a wait "for
        // ever" is capped at a year.
        c.wait_timeout = Some(Duration::MAX);
        c.create_timeout = Some(Duration::MAX);
        assert_eq!(acquire_timeout(&c), MAX_ACQUIRE_TIMEOUT);
        assert_eq!(MAX_ACQUIRE_TIMEOUT.as_secs() / 86_400, 365, "a year");
        assert!(Instant::now().checked_add(acquire_timeout(&c)).is_some());
    }
}
