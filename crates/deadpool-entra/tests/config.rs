//! Configuration parsing: every environment variable, URL and key=value forms, and bad
//! input giving an error that names the field (never a panic).

use std::{path::PathBuf, time::Duration};

use deadpool_entra::{AuthMethod, ChannelBinding, Config, SslMode};

fn env(pairs: &[(&str, &str)]) -> Result<Config, deadpool_entra::error::ConfigError> {
    Config::from_env_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

#[test]
fn libpq_variables_are_read() {
    let c = env(&[
        ("PGHOST", "db.example.com"),
        ("PGPORT", "6432"),
        ("PGDATABASE", "app"),
        ("PGUSER", "alice@contoso.com"),
        ("PGSSLMODE", "verify-ca"),
        ("PGSSLROOTCERT", "/etc/ssl/ca.pem"),
        ("PGCHANNELBINDING", "disable"),
        ("PGAPPNAME", "svc"),
        ("PGCONNECT_TIMEOUT", "7"),
        ("PGOPTIONS", "-c search_path=app"),
    ])
    .unwrap();
    assert_eq!(c.host.as_deref(), Some("db.example.com"));
    assert_eq!(c.port, Some(6432));
    assert_eq!(c.dbname.as_deref(), Some("app"));
    assert_eq!(c.user.as_deref(), Some("alice@contoso.com"));
    assert_eq!(c.ssl_mode, SslMode::VerifyCa);
    assert_eq!(c.ssl_root_cert, Some(PathBuf::from("/etc/ssl/ca.pem")));
    assert_eq!(c.channel_binding, ChannelBinding::Disable);
    assert_eq!(c.application_name.as_deref(), Some("svc"));
    assert_eq!(c.connect_timeout, Some(Duration::from_secs(7)));
    assert_eq!(c.options.as_deref(), Some("-c search_path=app"));
    assert_eq!(c.auth_method, AuthMethod::Auto);
    assert!(!c.uses_password());
}

#[test]
fn azure_variables_are_read_and_win_over_libpq_ones() {
    let c = env(&[
        ("PGHOST", "pg.example.com"),
        ("PGPORT", "5433"),
        ("PGDATABASE", "pgdb"),
        ("PGUSER", "pguser"),
        ("AZURE_POSTGRESQL_HOST", "srv.postgres.database.azure.com"),
        ("AZURE_POSTGRESQL_PORT", "5432"),
        ("AZURE_POSTGRESQL_NAME", "azdb"),
        ("AZURE_POSTGRESQL_USER", "my-identity"),
        (
            "AZURE_POSTGRESQL_CLIENTID",
            "00000000-0000-0000-0000-000000000001",
        ),
        ("AZURE_POSTGRESQL_SSL", "true"),
        ("AZURE_AUTH_METHOD", "managed_identity"),
    ])
    .unwrap();
    assert_eq!(c.host.as_deref(), Some("srv.postgres.database.azure.com"));
    assert_eq!(c.port, Some(5432));
    assert_eq!(c.dbname.as_deref(), Some("azdb"));
    assert_eq!(c.user.as_deref(), Some("my-identity"));
    assert_eq!(
        c.client_id.as_deref(),
        Some("00000000-0000-0000-0000-000000000001")
    );
    assert_eq!(
        c.ssl_mode,
        SslMode::VerifyFull,
        "SSL=true keeps the stricter default"
    );
    assert_eq!(c.auth_method, AuthMethod::ManagedIdentity);
}

/// An explicit connection string wins over the ambient variables (as in libpq, psql and
/// every tool that takes a URL); the variables fill in what it does not say.
#[test]
fn database_url_wins_over_the_variables_and_they_fill_the_rest() {
    let c = env(&[
        (
            "DATABASE_URL",
            "postgresql://urluser@url.example.com:5555/urldb?sslmode=require",
        ),
        ("PGDATABASE", "pgdb"),
        ("PGHOST", "pg.example.com"),
        ("AZURE_POSTGRESQL_HOST", "azure.example.com"),
        ("PGAPPNAME", "from-pg"),
    ])
    .unwrap();
    assert_eq!(c.host.as_deref(), Some("url.example.com"));
    assert_eq!(c.port, Some(5555));
    assert_eq!(c.user.as_deref(), Some("urluser"));
    assert_eq!(
        c.dbname.as_deref(),
        Some("urldb"),
        "DATABASE_URL wins over PGDATABASE"
    );
    assert_eq!(c.ssl_mode, SslMode::Require);
    assert_eq!(
        c.application_name.as_deref(),
        Some("from-pg"),
        "the variables fill the rest"
    );
    // AZURE_POSTGRESQL_* over PG*.
    let c = env(&[
        ("PGHOST", "pg.example.com"),
        ("AZURE_POSTGRESQL_HOST", "azure.example.com"),
    ])
    .unwrap();
    assert_eq!(c.host.as_deref(), Some("azure.example.com"));
}

#[test]
fn password_variables_select_password_mode() {
    let c = env(&[
        ("PGHOST", "db.example.com"),
        ("PGUSER", "app"),
        ("PGPASSWORD", "pw-from-pg"),
        ("AZURE_POSTGRESQL_PASSWORD", "pw-from-azure"),
    ])
    .unwrap();
    assert_eq!(c.password.as_deref(), Some("pw-from-azure"));
    assert!(c.uses_password(), "auto + a password = password mode");
    let c = env(&[
        ("PGHOST", "db.example.com"),
        ("PGUSER", "app"),
        ("PGPASSWORD", "pw"),
        ("AZURE_AUTH_METHOD", "password"),
    ])
    .unwrap();
    assert_eq!(c.auth_method, AuthMethod::Password);
    let e = env(&[
        ("PGHOST", "db.example.com"),
        ("PGUSER", "app"),
        ("AZURE_AUTH_METHOD", "password"),
    ])
    .unwrap_err();
    assert_eq!(e.field, "password");
    let c = env(&[("PGHOST", "h.example.com"), ("AZURE_AUTH_METHOD", "auto")]).unwrap();
    assert_eq!(c.auth_method, AuthMethod::Auto);
}

#[test]
fn url_form_is_parsed_with_percent_decoding() {
    let c: Config = "postgres://app%40contoso.com:p%40ss%2Fw@db.example.com:6543/my%20db?sslmode=verify-ca&sslrootcert=%2Ftmp%2Fca.pem&channel_binding=prefer&application_name=my+app&connect_timeout=3&options=-c%20search_path%3Dx"
        .parse()
        .unwrap();
    assert_eq!(c.user.as_deref(), Some("app@contoso.com"));
    assert_eq!(c.password.as_deref(), Some("p@ss/w"));
    assert_eq!(c.host.as_deref(), Some("db.example.com"));
    assert_eq!(c.port, Some(6543));
    assert_eq!(c.dbname.as_deref(), Some("my db"));
    assert_eq!(c.ssl_mode, SslMode::VerifyCa);
    assert_eq!(c.ssl_root_cert, Some(PathBuf::from("/tmp/ca.pem")));
    assert_eq!(c.channel_binding, ChannelBinding::Prefer);
    // libpq keeps `+` in a URL as `+` (only %20 is a space).
    assert_eq!(c.application_name.as_deref(), Some("my+app"));
    assert_eq!(c.connect_timeout, Some(Duration::from_secs(3)));
    assert_eq!(c.options.as_deref(), Some("-c search_path=x"));

    let c: Config = "postgresql://[::1]:5432/app".parse().unwrap();
    assert_eq!(c.host.as_deref(), Some("::1"));
    let c: Config = "postgresql://db.example.com".parse().unwrap();
    assert_eq!(c.port, None);
}

#[test]
fn key_value_form_is_parsed_with_quotes() {
    let c: Config = r"host=db.example.com port = 5432 dbname='my db' user=app options='-c x=\'y\'' sslmode=require application_name=svc"
        .parse()
        .unwrap();
    assert_eq!(c.host.as_deref(), Some("db.example.com"));
    assert_eq!(c.port, Some(5432));
    assert_eq!(c.dbname.as_deref(), Some("my db"));
    assert_eq!(c.user.as_deref(), Some("app"));
    assert_eq!(c.options.as_deref(), Some("-c x='y'"));
    assert_eq!(c.ssl_mode, SslMode::Require);
    assert_eq!(c.application_name.as_deref(), Some("svc"));
}

fn field_of(r: Result<Config, deadpool_entra::error::ConfigError>) -> String {
    r.expect_err("expected a configuration error").field
}

#[test]
fn bad_input_names_the_field() {
    // A lifetime jitter that is not a fraction.
    for jitter in [f64::NAN, -0.1, 1.5] {
        let cfg = deadpool_entra::Config {
            host: Some("h.example.com".into()),
            retire: deadpool_entra::RetirePolicy {
                max_lifetime_jitter: jitter,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            field_of(cfg.validate().map(|()| cfg.clone())),
            "retire.max_lifetime_jitter"
        );
    }
    // A retry delay that would make a busy loop, or a cap below the floor.
    for (min, max, field) in [
        (
            Duration::ZERO,
            Duration::from_secs(30),
            "refresh.min_backoff",
        ),
        (
            Duration::from_millis(99),
            Duration::from_secs(30),
            "refresh.min_backoff",
        ),
        (
            Duration::from_secs(10),
            Duration::from_secs(5),
            "refresh.max_backoff",
        ),
    ] {
        let cfg = deadpool_entra::Config {
            host: Some("h.example.com".into()),
            refresh: deadpool_entra::RefreshPolicy {
                min_backoff: min,
                max_backoff: max,
                ..Default::default()
            },
            ..Default::default()
        };
        let e = cfg.validate().expect_err("refused");
        assert_eq!(e.field, field, "{e}");
    }
    // A pool no server could hold: PostgreSQL's own ceiling on max_connections is
    // 262,143 (and sqlx would allocate a slot per session at build).
    let huge_floor = deadpool_entra::Config {
        host: Some("h.example.com".into()),
        min_connections: usize::MAX,
        ..Default::default()
    };
    assert_eq!(huge_floor.validate().unwrap_err().field, "min_connections");
    for (max, ok) in [(262_143, true), (262_144, false), (usize::MAX, false)] {
        let cfg = deadpool_entra::Config {
            host: Some("h.example.com".into()),
            max_size: Some(max),
            ..Default::default()
        };
        match cfg.validate() {
            Ok(()) => assert!(ok, "{max} accepted"),
            Err(e) => {
                assert!(!ok, "{max} refused: {e}");
                assert_eq!(e.field, "max_size");
                assert!(e.reason.contains("262143"), "{e}");
            }
        }
    }
    // Empty host.
    assert_eq!(field_of("postgresql://:5432/app".parse()), "host");
    assert_eq!(field_of(env(&[("PGDATABASE", "app")])), "host");
    // An empty variable counts as unset (libpq): no host at all.
    assert_eq!(field_of(env(&[("PGHOST", "")])), "host");
    // An empty value is "not set", as in libpq: then no host at all.
    assert_eq!(
        field_of(
            "host='' dbname=x"
                .parse::<Config>()
                .and_then(|c| c.validate().map(|()| c))
        ),
        "host"
    );
    // Bad port.
    assert_eq!(
        field_of("postgresql://h.example.com:abc/app".parse()),
        "port"
    );
    assert_eq!(
        field_of("postgresql://h.example.com:70000/app".parse()),
        "port"
    );
    assert_eq!(field_of("host=h port=0".parse()), "port");
    assert_eq!(field_of(env(&[("PGHOST", "h"), ("PGPORT", "x")])), "PGPORT");
    assert_eq!(
        field_of(env(&[("PGHOST", "h"), ("AZURE_POSTGRESQL_PORT", "-1")])),
        "AZURE_POSTGRESQL_PORT"
    );
    // Unknown sslmode.
    assert_eq!(field_of("host=h sslmode=maybe".parse()), "sslmode");
    assert_eq!(
        field_of(env(&[("PGHOST", "h"), ("PGSSLMODE", "strict")])),
        "PGSSLMODE"
    );
    // Unknown channel binding and auth method.
    assert_eq!(
        field_of("host=h channel_binding=always".parse()),
        "channel_binding"
    );
    assert_eq!(
        field_of(env(&[("PGHOST", "h"), ("AZURE_AUTH_METHOD", "kerberos")])),
        "AZURE_AUTH_METHOD"
    );
    // Token auth without TLS.
    for mode in ["disable", "allow", "prefer"] {
        let e = env(&[("PGHOST", "db.example.com"), ("PGSSLMODE", mode)]).unwrap_err();
        assert_eq!(e.field, "sslmode", "{mode}");
        assert!(e.reason.contains("clear text"), "{e}");
    }
    let e = env(&[
        ("PGHOST", "db.example.com"),
        ("AZURE_POSTGRESQL_SSL", "false"),
    ])
    .unwrap_err();
    assert_eq!(e.field, "sslmode");
    // channel_binding=require with tokens.
    let e = env(&[
        ("PGHOST", "db.example.com"),
        ("PGCHANNELBINDING", "require"),
    ])
    .unwrap_err();
    assert_eq!(e.field, "channel_binding");
    assert!(e.reason.contains("cleartext password"), "{e}");
    // ... but allowed with a password (SCRAM can bind the channel).
    env(&[
        ("PGHOST", "db.example.com"),
        ("PGUSER", "u"),
        ("PGPASSWORD", "p"),
        ("PGCHANNELBINDING", "require"),
    ])
    .unwrap();
    // A fetch timeout of zero would fail every token fetch.
    let mut cfg: Config = "host=db.example.com".parse().unwrap();
    cfg.refresh.fetch_timeout = Some(std::time::Duration::ZERO);
    assert_eq!(cfg.validate().unwrap_err().field, "refresh.fetch_timeout");
    cfg.refresh.fetch_timeout = None;
    cfg.validate().unwrap();
    // Garbage.
    assert_eq!(field_of("mysql://h/db".parse()), "connection string");
    assert_eq!(field_of("host=h bogus=1".parse()), "connection string");
    assert_eq!(field_of("host='h".parse()), "host");
    assert_eq!(
        field_of(env(&[("DATABASE_URL", "postgresql://h:99999/x")])),
        "DATABASE_URL: port"
    );
}

#[test]
fn plaintext_is_refused_off_loopback_even_with_the_opt_out() {
    let mut c: Config = "host=db.example.com sslmode=disable".parse().unwrap();
    c.dangerous_allow_plaintext_on_loopback = true;
    let e = c.validate().unwrap_err();
    assert_eq!(e.field, "sslmode");
    assert!(e.reason.contains("loopback"), "{e}");
    for host in ["127.0.0.1", "localhost", "::1", "/var/run/postgresql"] {
        let mut c = Config::new();
        c.host = Some(host.into());
        c.ssl_mode = SslMode::Disable;
        assert_eq!(
            c.validate().unwrap_err().field,
            "sslmode",
            "no opt-out: refused"
        );
        c.dangerous_allow_plaintext_on_loopback = true;
        c.validate().unwrap();
    }
    // tokio-postgres reads `@db` as a TCP host name (only `/...` is a Unix socket): the
    // token would go in clear to whatever `@db` resolves to.
    let mut c: Config = "host=@db sslmode=disable".parse().unwrap();
    c.dangerous_allow_plaintext_on_loopback = true;
    let e = c.validate().unwrap_err();
    assert!(e.reason.contains("@db"), "{e}");
}

#[test]
fn sslmode_spellings() {
    for (s, m) in [
        ("disable", SslMode::Disable),
        ("allow", SslMode::Allow),
        ("prefer", SslMode::Prefer),
        ("require", SslMode::Require),
        ("verify-ca", SslMode::VerifyCa),
        ("verify-full", SslMode::VerifyFull),
        ("VERIFY-FULL", SslMode::VerifyFull),
    ] {
        assert_eq!(s.parse::<SslMode>().unwrap(), m);
    }
    assert_eq!(Config::default().ssl_mode, SslMode::VerifyFull);
    assert_eq!(
        "managed_identity".parse::<AuthMethod>().unwrap(),
        AuthMethod::ManagedIdentity
    );
}

#[cfg(feature = "serde")]
#[test]
fn config_deserializes_with_humantime_durations() {
    let c: Config = serde_json::from_str(
        r#"{
            "host": "db.example.com", "dbname": "app", "ssl_mode": "verify-ca",
            "wait_timeout": "2s", "create_timeout": 3, "max_size": 8,
            "retire": { "max_lifetime": "10m", "token_margin": "30s" },
            "refresh": { "refresh_before_expiry": "4m" }
        }"#,
    )
    .unwrap();
    assert_eq!(c.ssl_mode, SslMode::VerifyCa);
    assert_eq!(c.wait_timeout, Some(Duration::from_secs(2)));
    assert_eq!(c.create_timeout, Some(Duration::from_secs(3)));
    assert_eq!(c.max_size, Some(8));
    assert_eq!(c.retire.max_lifetime, Some(Duration::from_secs(600)));
    assert_eq!(c.retire.token_margin, Duration::from_secs(30));
    assert_eq!(
        c.retire.token_spread,
        Duration::from_secs(300),
        "defaults fill the rest"
    );
    assert_eq!(c.refresh.refresh_before_expiry, Duration::from_secs(240));
    assert_eq!(c.recycle_timeout, Some(Duration::from_secs(5)));
}

/// A duration too large for `Duration` in a configuration file is an error naming the
/// value, not a panic in `Duration::from_secs_f64`.
#[cfg(feature = "serde")]
#[test]
fn absurd_durations_in_a_configuration_file_are_errors() {
    for (field, value) in [
        ("wait_timeout", "1e300"),
        ("create_timeout", "1e30"),
        ("recycle_timeout", "18446744073709551616.0"),
    ] {
        let json = format!(r#"{{"host": "db.example.com", "{field}": {value}}}"#);
        let e = serde_json::from_str::<Config>(&json).expect_err(&json);
        assert!(e.to_string().contains("invalid duration"), "{json}: {e}");
    }
    for value in ["1e30", "-1", "\"NaN\""] {
        let json = format!(r#"{{"host": "h", "retire": {{"sweep_interval": {value}}}}}"#);
        let e = serde_json::from_str::<Config>(&json).expect_err(&json);
        assert!(e.to_string().contains("invalid duration"), "{json}: {e}");
    }
    // The largest a `Duration` holds still parses.
    let c: Config =
        serde_json::from_str(r#"{"host": "h", "wait_timeout": 18446744073709551615}"#).unwrap();
    assert_eq!(c.wait_timeout, Some(Duration::from_secs(u64::MAX)));
}

/// `verify-ca` checks the chain, not the name: with the public roots, any holder of any
/// publicly trusted certificate (for any domain) could receive the token. Refused unless a
/// CA file is given, as libpq refuses `verify-ca` with `sslrootcert=system`.
#[test]
fn verify_ca_needs_an_explicit_ca_file() {
    for root in [None, Some("system")] {
        let cfg = Config {
            host: Some("db.example.com".into()),
            ssl_mode: SslMode::VerifyCa,
            ssl_root_cert: root.map(PathBuf::from),
            ..Default::default()
        };
        let e = cfg
            .validate()
            .expect_err("verify-ca with public roots is refused");
        assert_eq!(e.field, "sslmode", "{e}");
        assert!(
            e.reason.contains("host name") && e.reason.contains("verify-full"),
            "{e}"
        );
    }
    let cfg = Config {
        host: Some("db.example.com".into()),
        ssl_mode: SslMode::VerifyCa,
        ssl_root_cert: Some(PathBuf::from("/etc/ssl/private-ca.pem")),
        ..Default::default()
    };
    cfg.validate().expect("verify-ca with a CA file");
    // From the environment too.
    let e = env(&[("PGHOST", "db.example.com"), ("PGSSLMODE", "verify-ca")]).unwrap_err();
    assert_eq!(e.field, "sslmode");
}

/// libpq's meaning of the environment: empty is unset, `PGCONNECT_TIMEOUT` of 0 or less is
/// no limit, `PGHOSTADDR` is the address to connect to, apart from the name to verify.
#[test]
fn environment_means_what_libpq_means() {
    // An empty PGPASSWORD is no password: `auto` keeps token logins.
    let c = env(&[
        ("PGHOST", "db.example.com"),
        ("PGUSER", "app"),
        ("PGPASSWORD", ""),
        ("AZURE_AUTH_METHOD", "auto"),
    ])
    .unwrap();
    assert_eq!(c.password, None);
    assert!(!c.uses_password());
    for zero in ["0", "-5"] {
        let c = env(&[("PGHOST", "db.example.com"), ("PGCONNECT_TIMEOUT", zero)]).unwrap();
        assert_eq!(
            c.connect_timeout,
            Some(Duration::ZERO),
            "PGCONNECT_TIMEOUT={zero} is no limit (zero: not the pool's 2 s default)"
        );
    }
    let c = env(&[
        ("PGHOST", "srv.postgres.database.azure.com"),
        ("PGHOSTADDR", "10.1.2.3"),
    ])
    .unwrap();
    assert_eq!(c.host.as_deref(), Some("srv.postgres.database.azure.com"));
    assert_eq!(
        c.hostaddr,
        vec![Some("10.1.2.3".parse::<std::net::IpAddr>().unwrap())]
    );
    // In either order in a key=value string, hostaddr does not replace host.
    for s in [
        "host=srv.postgres.database.azure.com hostaddr=10.1.2.3",
        "hostaddr=10.1.2.3 host=srv.postgres.database.azure.com",
    ] {
        let c: Config = s.parse().unwrap();
        assert_eq!(
            c.host.as_deref(),
            Some("srv.postgres.database.azure.com"),
            "{s}"
        );
        assert_eq!(
            c.hostaddr,
            vec![Some("10.1.2.3".parse::<std::net::IpAddr>().unwrap())],
            "{s}"
        );
    }
    assert_eq!(field_of("host=h hostaddr=not-an-ip".parse()), "hostaddr");
    // Several hosts from PG* variables, with their session attributes.
    let c = env(&[
        ("PGHOST", "a.example.com,b.example.com"),
        ("PGPORT", "5432,5433"),
        ("PGHOSTADDR", "10.0.0.1,10.0.0.2"),
        ("PGTARGETSESSIONATTRS", "read-write"),
        ("PGLOADBALANCEHOSTS", "random"),
        ("PGAPPNAME", ""),
        ("PGSSLROOTCERT", ""),
        ("PGDATABASE", ""),
    ])
    .unwrap();
    assert_eq!(c.host.as_deref(), Some("a.example.com,b.example.com"));
    assert_eq!(c.ports, vec![5432, 5433]);
    assert_eq!(c.hostaddr.len(), 2);
    assert_eq!(
        c.target_session_attrs,
        deadpool_entra::TargetSessionAttrs::ReadWrite
    );
    assert_eq!(
        c.load_balance_hosts,
        deadpool_entra::LoadBalanceHosts::Random
    );
    assert_eq!(
        (c.application_name, c.ssl_root_cert, c.dbname),
        (None, None, None)
    );
    // Lists that do not match the hosts are refused, naming the setting.
    assert_eq!(
        field_of(env(&[
            ("PGHOST", "a.example.com,b.example.com"),
            ("PGPORT", "1,2,3")
        ])),
        "port"
    );
    assert_eq!(
        field_of(env(&[
            ("PGHOST", "a.example.com,b.example.com"),
            ("PGHOSTADDR", "10.0.0.1")
        ])),
        "hostaddr"
    );
    assert_eq!(field_of(env(&[("PGHOST", "a.example.com,")])), "host");
    assert_eq!(
        field_of(env(&[("PGHOST", "h"), ("PGTARGETSESSIONATTRS", "master")])),
        "PGTARGETSESSIONATTRS"
    );
    // Plaintext on loopback: every host and address must be loopback.
    let mut c: Config = "host=localhost hostaddr=10.0.0.1 sslmode=disable"
        .parse()
        .unwrap();
    c.dangerous_allow_plaintext_on_loopback = true;
    assert_eq!(c.validate().unwrap_err().field, "sslmode");
    let mut c: Config = "host=localhost,db.example.com sslmode=disable"
        .parse()
        .unwrap();
    c.dangerous_allow_plaintext_on_loopback = true;
    assert_eq!(c.validate().unwrap_err().field, "sslmode");
    // `+` survives in a URL's password.
    let c: Config = "postgresql://u:a+b%2Bc@h.example.com/db".parse().unwrap();
    assert_eq!(c.password.as_deref(), Some("a+b+c"));
}

/// A secret cut loose by an unquoted space, a raw `&`, `/` or `@`, or a bad port never
/// appears in a parse or validation error, whole or in part.
#[test]
fn parse_errors_never_repeat_a_secret() {
    const SECRET: &str = "Zq8ufh3XkT9pLw";
    let cases = [
        format!("host=h password={} {}", &SECRET[..7], &SECRET[7..]),
        format!("host=h password={}&{}", &SECRET[..7], &SECRET[7..]),
        format!("host=h password='{SECRET}"),
        format!("host=h {SECRET}"),
        format!("{SECRET}=x host=h"),
        format!(
            "postgresql://u:{}/{}@h.example.com/db",
            &SECRET[..7],
            &SECRET[7..]
        ),
        format!("postgresql://u:{SECRET}@h.example.com:{SECRET}/db"),
        format!(
            "postgresql://h.example.com/db?password={}&{}",
            &SECRET[..7],
            &SECRET[7..]
        ),
        format!("postgresql://h.example.com/db?{SECRET}"),
        format!("postgresql://u:%ZZ{SECRET}@h.example.com/db"),
        format!("host=h port={SECRET}"),
        format!("host=h connect_timeout={SECRET}"),
        format!("host=h hostaddr={SECRET}"),
    ];
    for s in &cases {
        let Err(e) = s.parse::<Config>().and_then(|c| c.validate().map(|()| c)) else {
            continue;
        };
        let text = format!("{e} {e:?}");
        for piece in [&SECRET[..7], &SECRET[7..]] {
            assert!(!text.contains(piece), "{s:?} gave {text}");
        }
    }
    for (var, value) in [
        ("PGPORT", SECRET),
        ("PGHOSTADDR", SECRET),
        ("PGCONNECT_TIMEOUT", SECRET),
    ] {
        let e = env(&[("PGHOST", "h"), (var, value)]).unwrap_err();
        assert!(!format!("{e} {e:?}").contains(&SECRET[..7]), "{var}: {e}");
    }
}

/// Connection strings and the parse libpq 17 gives them. Expected values obtained from
/// libpq itself on this machine: `pip install psycopg2-binary` (libpq 17.0.11), then
/// `psycopg2.extensions.parse_dsn(s)` (libpq's `PQconninfoParse`) for each string; `None`:
/// libpq refuses it. Ours must agree on every key it supports, and refuse where libpq does.
type LibpqParse = Option<&'static [(&'static str, &'static str)]>;

const LIBPQ: &[(&str, LibpqParse)] = &[
    (
        "postgresql://alice@db.example.com:6543/app",
        Some(&[
            ("user", "alice"),
            ("dbname", "app"),
            ("host", "db.example.com"),
            ("port", "6543"),
        ]),
    ),
    (
        "postgresql://app%40contoso.com:p%40ss%2Fw@db.example.com/my%20db",
        Some(&[
            ("user", "app@contoso.com"),
            ("password", "p@ss/w"),
            ("dbname", "my db"),
            ("host", "db.example.com"),
        ]),
    ),
    (
        "postgresql://u:a+b@db.example.com/db?application_name=my+app",
        Some(&[
            ("user", "u"),
            ("password", "a+b"),
            ("dbname", "db"),
            ("host", "db.example.com"),
            ("application_name", "my+app"),
        ]),
    ),
    (
        "postgresql://[2001:db8::1]:5433/db",
        Some(&[("dbname", "db"), ("host", "2001:db8::1"), ("port", "5433")]),
    ),
    (
        "postgresql://[::1]/db",
        Some(&[("dbname", "db"), ("host", "::1")]),
    ),
    (
        "postgresql://h1.example.com:5433,h2.example.com:5434/app?target_session_attrs=read-write",
        Some(&[
            ("dbname", "app"),
            ("host", "h1.example.com,h2.example.com"),
            ("port", "5433,5434"),
            ("target_session_attrs", "read-write"),
        ]),
    ),
    (
        "postgresql://h1.example.com,h2.example.com/app",
        Some(&[
            ("dbname", "app"),
            ("host", "h1.example.com,h2.example.com"),
            ("port", ","),
        ]),
    ),
    (
        "postgresql://h1.example.com:5433,h2.example.com/app",
        Some(&[
            ("dbname", "app"),
            ("host", "h1.example.com,h2.example.com"),
            ("port", "5433,"),
        ]),
    ),
    (
        "postgres://db.example.com/app?sslmode=verify-full&connect_timeout=0",
        Some(&[
            ("connect_timeout", "0"),
            ("dbname", "app"),
            ("host", "db.example.com"),
            ("sslmode", "verify-full"),
        ]),
    ),
    (
        "postgresql://db.example.com/app?hostaddr=10.1.2.3",
        Some(&[
            ("dbname", "app"),
            ("host", "db.example.com"),
            ("hostaddr", "10.1.2.3"),
        ]),
    ),
    (
        "host=db.example.com port=5432 dbname=app user=alice",
        Some(&[
            ("user", "alice"),
            ("dbname", "app"),
            ("host", "db.example.com"),
            ("port", "5432"),
        ]),
    ),
    (
        "host=srv.postgres.database.azure.com hostaddr=10.1.2.3",
        Some(&[
            ("host", "srv.postgres.database.azure.com"),
            ("hostaddr", "10.1.2.3"),
        ]),
    ),
    (
        "hostaddr=10.1.2.3 host=srv.postgres.database.azure.com",
        Some(&[
            ("host", "srv.postgres.database.azure.com"),
            ("hostaddr", "10.1.2.3"),
        ]),
    ),
    (
        "host=a.example.com,b.example.com port=5432,5433 target_session_attrs=read-only load_balance_hosts=random",
        Some(&[
            ("host", "a.example.com,b.example.com"),
            ("port", "5432,5433"),
            ("target_session_attrs", "read-only"),
            ("load_balance_hosts", "random"),
        ]),
    ),
    (
        "host=db.example.com password='it''s' application_name='a b'",
        None,
    ),
    (
        "host=db.example.com password='a\\'b c' user=u",
        Some(&[
            ("user", "u"),
            ("password", "a'b c"),
            ("host", "db.example.com"),
        ]),
    ),
    (
        "host=db.example.com options='-c search_path=app' keepalives_idle=30 tcp_user_timeout=10",
        Some(&[
            ("host", "db.example.com"),
            ("options", "-c search_path=app"),
            ("keepalives_idle", "30"),
            ("tcp_user_timeout", "10"),
        ]),
    ),
    (
        "host=db.example.com dbname=",
        Some(&[("dbname", ""), ("host", "db.example.com")]),
    ),
    (
        "host = db.example.com  port = 5433",
        Some(&[("host", "db.example.com"), ("port", "5433")]),
    ),
    ("host=db.example.com bogus=1", None),
    ("host=db.example.com password", None),
    ("host='db.example.com", None),
    ("postgresql://db.example.com/app?bogus=1", None),
];

/// Our parse, in libpq's terms (only what is set).
fn as_libpq(c: &Config) -> std::collections::BTreeMap<String, String> {
    let mut m = std::collections::BTreeMap::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            m.insert(k.to_owned(), v);
        }
    };
    put("host", c.host.clone());
    put(
        "port",
        if c.ports.is_empty() {
            c.port.map(|p| p.to_string())
        } else {
            Some(
                c.ports
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            )
        },
    );
    put(
        "hostaddr",
        (!c.hostaddr.is_empty()).then(|| {
            c.hostaddr
                .iter()
                .map(|a| a.map(|a| a.to_string()).unwrap_or_default())
                .collect::<Vec<_>>()
                .join(",")
        }),
    );
    put("dbname", c.dbname.clone());
    put("user", c.user.clone());
    put("password", c.password.clone());
    put("application_name", c.application_name.clone());
    put("options", c.options.clone());
    put(
        "connect_timeout",
        // Zero is libpq's "no limit", which libpq's parse leaves out.
        c.connect_timeout
            .filter(|d| !d.is_zero())
            .map(|d| d.as_secs().to_string()),
    );
    put(
        "keepalives_idle",
        c.keepalives_idle.map(|d| d.as_secs().to_string()),
    );
    put(
        "tcp_user_timeout",
        // Milliseconds, as libpq reads it.
        c.tcp_user_timeout.map(|d| d.as_millis().to_string()),
    );
    put(
        "target_session_attrs",
        (c.target_session_attrs != deadpool_entra::TargetSessionAttrs::Any)
            .then(|| c.target_session_attrs.as_str().to_owned()),
    );
    put(
        "load_balance_hosts",
        match c.load_balance_hosts {
            deadpool_entra::LoadBalanceHosts::Random => Some("random".into()),
            _ => None,
        },
    );
    put(
        "sslmode",
        (c.ssl_mode != SslMode::VerifyFull).then(|| format!("{:?}", c.ssl_mode)),
    );
    m
}

/// libpq's parse with its defaults spelled as ours: an empty value or a `0` timeout is
/// "not set", an empty port in a list is 5432, `sslmode=verify-full` is the default.
fn normalized(libpq: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
    let mut m = std::collections::BTreeMap::new();
    for (k, v) in libpq {
        let v = match (*k, *v) {
            (_, "") => continue,
            ("connect_timeout", "0") => continue,
            ("sslmode", "verify-full") => continue,
            ("port", ports) if ports.split(',').all(str::is_empty) => continue,
            ("port", ports) => ports
                .split(',')
                .map(|p| if p.is_empty() { "5432" } else { p })
                .collect::<Vec<_>>()
                .join(","),
            (_, v) => v.to_owned(),
        };
        m.insert((*k).to_owned(), v);
    }
    m
}

#[test]
fn connection_strings_parse_as_libpq_parses_them() {
    for (s, libpq) in LIBPQ {
        let ours = s.parse::<Config>();
        match libpq {
            Some(expected) => {
                let ours =
                    ours.unwrap_or_else(|e| panic!("{s:?}: libpq parses it, we refused: {e}"));
                assert_eq!(as_libpq(&ours), normalized(expected), "{s:?}");
            }
            None => assert!(
                ours.is_err(),
                "{s:?}: libpq refuses it, we parsed {:?}",
                ours.unwrap()
            ),
        }
    }
}

#[test]
fn tcp_settings_read_as_libpq_reads_them() {
    let c: Config = "host=db.example.com tcp_user_timeout=10000 keepalives_idle=0 keepalives=1"
        .parse()
        .unwrap();
    assert_eq!(
        c.tcp_user_timeout,
        Some(Duration::from_secs(10)),
        "libpq's tcp_user_timeout is in milliseconds"
    );
    assert_eq!(
        c.keepalives_idle,
        Some(Duration::ZERO),
        "0: the system's default, not the pool's"
    );
    assert_eq!(c.keepalives, Some(true));
    // libpq spells the probe count `keepalives_count`; tokio-postgres `keepalives_retries`.
    for key in ["keepalives_count", "keepalives_retries"] {
        let c: Config = format!("host=db.example.com {key}=4").parse().unwrap();
        assert_eq!(c.keepalives_retries, Some(4), "{key}");
    }
    let off: Config = "host=db.example.com keepalives=0".parse().unwrap();
    assert_eq!(off.keepalives, Some(false));
    let e = "host=db.example.com keepalives=off"
        .parse::<Config>()
        .expect_err("libpq refuses a non-integer");
    assert!(e.to_string().contains("keepalives"), "{e}");
    let unset: Config = "host=db.example.com".parse().unwrap();
    assert_eq!(
        (
            unset.tcp_user_timeout,
            unset.keepalives_idle,
            unset.connect_timeout
        ),
        (None, None, None),
        "unset: the pool's defaults apply at login"
    );
}

/// libpq's empty values (fe-connect.c): `hostaddr=`, `application_name=` and `options=`
/// are not set, in a connection string as in the environment.
#[test]
fn empty_hostaddr_application_name_and_options_are_unset() {
    // Quoted: libpq skips blanks after `=`, so `hostaddr= x=` would give hostaddr "x=".
    let c: Config = "host=db.example.com hostaddr='' application_name='' options=''"
        .parse()
        .expect("libpq accepts empty values");
    assert!(c.hostaddr.is_empty(), "{:?}", c.hostaddr);
    assert_eq!(c.application_name, None, "empty: the pool's default name");
    assert_eq!(c.options, None);
    c.validate()
        .expect("an unset hostaddr needs no host to match");
    let url: Config = "postgresql://db.example.com/app?hostaddr=&application_name=&options="
        .parse()
        .expect("libpq accepts empty values");
    assert!(url.hostaddr.is_empty());
    assert_eq!((url.application_name, url.options), (None, None));
    let c = env(&[
        ("PGHOST", "db.example.com"),
        ("PGHOSTADDR", ""),
        ("PGAPPNAME", ""),
        ("PGOPTIONS", ""),
    ])
    .unwrap();
    assert!(c.hostaddr.is_empty());
    assert_eq!((c.application_name, c.options), (None, None));
}

/// An empty entry in a `hostaddr` list leaves that host to its name, as in libpq: the
/// private endpoint beside a public one (`host=a,b hostaddr=10.0.0.1,`).
#[test]
fn an_empty_hostaddr_entry_leaves_its_host_to_its_name() {
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    let c: Config = "host=a.example.com,b.example.com hostaddr=10.0.0.1,"
        .parse()
        .expect("libpq accepts an empty entry");
    assert_eq!(c.hostaddr, vec![Some(ip("10.0.0.1")), None]);
    c.validate().expect("one entry per host");
    let c: Config = "host=a.example.com,b.example.com hostaddr=,10.0.0.2"
        .parse()
        .unwrap();
    assert_eq!(c.hostaddr, vec![None, Some(ip("10.0.0.2"))]);
    c.validate().expect("one entry per host");
    let c = env(&[
        ("PGHOST", "a.example.com,b.example.com,c.example.com"),
        ("PGHOSTADDR", "10.0.0.1, ,10.0.0.3"),
    ])
    .unwrap();
    assert_eq!(
        c.hostaddr,
        vec![Some(ip("10.0.0.1")), None, Some(ip("10.0.0.3"))]
    );
    // Still one entry per host, and every entry an address or nothing.
    let three: Result<Config, _> = "host=a,b,c hostaddr=10.0.0.1,".parse();
    assert_eq!(
        three.expect("parses").validate().unwrap_err().field,
        "hostaddr"
    );
    assert_eq!(field_of("host=a,b hostaddr=10.0.0.1,b".parse()), "hostaddr");
    // The builder's form.
    let b = Config {
        host: Some("a.example.com,b.example.com".into()),
        hostaddr: vec![None, Some(ip("10.0.0.2"))],
        ..Config::default()
    };
    b.validate().expect("one entry per host");
}

#[cfg(feature = "serde")]
#[test]
fn a_configuration_file_leaves_a_host_to_its_name_with_null() {
    let c: Config = serde_json::from_str(
        r#"{"host": "a.example.com,b.example.com", "hostaddr": ["10.0.0.1", null]}"#,
    )
    .unwrap();
    assert_eq!(c.hostaddr, vec![Some("10.0.0.1".parse().unwrap()), None]);
}

/// libpq 14's `primary`, `standby` and `prefer-standby`, in every form a setting takes.
#[test]
fn target_session_attrs_of_libpq_14_are_accepted() {
    use deadpool_entra::TargetSessionAttrs::*;
    for (text, mode) in [
        ("any", Any),
        ("read-write", ReadWrite),
        ("read-only", ReadOnly),
        ("primary", Primary),
        ("standby", Standby),
        ("prefer-standby", PreferStandby),
    ] {
        let c: Config = format!("host=a,b target_session_attrs={text}")
            .parse()
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(c.target_session_attrs, mode, "{text}");
        assert_eq!(mode.as_str(), text);
        let url: Config = format!("postgresql://a,b/app?target_session_attrs={text}")
            .parse()
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(url.target_session_attrs, mode, "{text}");
        let c = env(&[("PGHOST", "a,b"), ("PGTARGETSESSIONATTRS", text)]).unwrap();
        assert_eq!(c.target_session_attrs, mode, "{text}");
        #[cfg(feature = "serde")]
        {
            let json = format!(r#"{{"host": "a", "target_session_attrs": "{text}"}}"#);
            let c: Config = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(c.target_session_attrs, mode, "{json}");
        }
    }
    let e = "host=a target_session_attrs=master"
        .parse::<Config>()
        .unwrap_err();
    assert!(e.reason.contains("prefer-standby"), "{e}");
}
