//! Configuration parsing: every environment variable, URL and key=value forms, and bad
//! input giving an error that names the field (never a panic).

use std::{path::PathBuf, time::Duration};

use deadpool_entra::{AuthMethod, ChannelBinding, Config, SslMode};

fn env(pairs: &[(&str, &str)]) -> Result<Config, deadpool_entra::ConfigError> {
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

#[test]
fn database_url_is_the_weakest_source() {
    let c = env(&[
        (
            "DATABASE_URL",
            "postgresql://urluser@url.example.com:5555/urldb?sslmode=require",
        ),
        ("PGDATABASE", "pgdb"),
    ])
    .unwrap();
    assert_eq!(c.host.as_deref(), Some("url.example.com"));
    assert_eq!(c.port, Some(5555));
    assert_eq!(c.user.as_deref(), Some("urluser"));
    assert_eq!(
        c.dbname.as_deref(),
        Some("pgdb"),
        "PGDATABASE wins over DATABASE_URL"
    );
    assert_eq!(c.ssl_mode, SslMode::Require);
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
    assert_eq!(c.application_name.as_deref(), Some("my app"));
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

fn field_of(r: Result<Config, deadpool_entra::ConfigError>) -> String {
    r.expect_err("expected a configuration error").field
}

#[test]
fn bad_input_names_the_field() {
    // A lifetime jitter that is not a fraction.
    for jitter in [f64::NAN, -0.1, 1.5] {
        let cfg = deadpool_entra::Config {
            host: Some("h.example.com".into()),
            recycle: deadpool_entra::RecyclePolicy {
                max_lifetime_jitter: jitter,
                ..Default::default()
            },
            ..Default::default()
        };
        assert_eq!(
            field_of(cfg.validate().map(|()| cfg.clone())),
            "recycle.max_lifetime_jitter"
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
    // Empty host.
    assert_eq!(field_of("postgresql://:5432/app".parse()), "host");
    assert_eq!(field_of(env(&[("PGDATABASE", "app")])), "host");
    assert_eq!(field_of(env(&[("PGHOST", "")])), "PGHOST");
    assert_eq!(field_of("host='' dbname=x".parse()), "host");
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
    assert_eq!(field_of("host=h bogus=1".parse()), "bogus");
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
            "recycle": { "max_lifetime": "10m", "token_margin": "30s" },
            "refresh": { "refresh_before_expiry": "4m" }
        }"#,
    )
    .unwrap();
    assert_eq!(c.ssl_mode, SslMode::VerifyCa);
    assert_eq!(c.wait_timeout, Some(Duration::from_secs(2)));
    assert_eq!(c.create_timeout, Some(Duration::from_secs(3)));
    assert_eq!(c.max_size, Some(8));
    assert_eq!(c.recycle.max_lifetime, Some(Duration::from_secs(600)));
    assert_eq!(c.recycle.token_margin, Duration::from_secs(30));
    assert_eq!(
        c.recycle.token_spread,
        Duration::from_secs(300),
        "defaults fill the rest"
    );
    assert_eq!(c.refresh.refresh_before_expiry, Duration::from_secs(240));
    assert_eq!(c.recycle_timeout, Some(Duration::from_secs(5)));
}
