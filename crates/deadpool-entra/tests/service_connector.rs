//! `AZURE_POSTGRESQL_CONNECTIONSTRING`, as Azure Service Connector writes it for each
//! client type, its place in the precedence of the environment, and bad strings giving
//! errors that name the variable and never repeat a password.
//!
//! The example values are those of Microsoft Learn, "Integrate Azure Database for
//! PostgreSQL with Service Connector"
//! (<https://learn.microsoft.com/azure/service-connector/how-to-integrate-postgres>).

use std::path::PathBuf;

use deadpool_entra::error::ConfigError;
use deadpool_entra::{Config, SslMode};

const VAR: &str = "AZURE_POSTGRESQL_CONNECTIONSTRING";
const HOST: &str = "my-server.postgres.database.azure.com";
const SECRET: &str = "Zq8ufh3XkT9pLw";

fn env(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::from_env_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
}

fn from_string(s: &str) -> Result<Config, ConfigError> {
    env(&[(VAR, s)])
}

/// The .NET client type (Npgsql keywords), managed identity: no password, `Ssl Mode=Require`.
#[test]
fn npgsql_form_for_a_managed_identity_is_read() {
    let c = env(&[
        (
            VAR,
            "Server=my-server.postgres.database.azure.com;Database=app;Port=5432;Ssl Mode=Require;User Id=aad_conn;",
        ),
        ("AZURE_POSTGRESQL_CLIENTID", "00000000-0000-0000-0000-000000000001"),
    ])
    .unwrap();
    assert_eq!(c.host.as_deref(), Some(HOST));
    assert_eq!(c.dbname.as_deref(), Some("app"));
    assert_eq!(c.port, Some(5432));
    assert_eq!(c.user.as_deref(), Some("aad_conn"));
    assert_eq!(
        c.client_id.as_deref(),
        Some("00000000-0000-0000-0000-000000000001")
    );
    assert_eq!(
        c.ssl_mode,
        SslMode::VerifyFull,
        "Service Connector's Require asks for TLS and keeps the stricter default, as AZURE_POSTGRESQL_SSL=true does"
    );
    assert!(!c.uses_password());
}

/// The .NET client type with a secret; Npgsql's synonyms and quoting.
#[test]
fn npgsql_form_with_a_password_and_synonyms_is_read() {
    let c = from_string(&format!(
        "Host={HOST}; DB=app ;Username=admin1;Password=\"p;w\"\"d {SECRET}\";SslMode=VerifyFull;Timeout=7;Application Name=svc"
    ))
    .unwrap();
    assert_eq!(c.host.as_deref(), Some(HOST));
    assert_eq!(c.dbname.as_deref(), Some("app"));
    assert_eq!(c.user.as_deref(), Some("admin1"));
    assert_eq!(c.password, Some(format!("p;w\"d {SECRET}")));
    assert_eq!(c.ssl_mode, SslMode::VerifyFull);
    assert_eq!(c.connect_timeout, Some(std::time::Duration::from_secs(7)));
    assert_eq!(c.application_name.as_deref(), Some("svc"));
    assert!(c.uses_password());
    assert!(
        !format!("{c:?}").contains(SECRET),
        "Debug never shows the password"
    );
    // Keywords are case-insensitive, `User Id`, `UserId`, `UID` are one, values may be
    // single-quoted, and `Trust Server Certificate=false` is the safe value.
    let c = from_string(&format!(
        "server={HOST};userid=u1;PWD='it''s';trust server certificate=false;Root Certificate=/etc/ca.pem;Ssl Mode=VerifyCA"
    ))
    .unwrap();
    assert_eq!(c.user.as_deref(), Some("u1"));
    assert_eq!(c.password.as_deref(), Some("it's"));
    assert_eq!(c.ssl_mode, SslMode::VerifyCa);
    assert_eq!(c.ssl_root_cert, Some(PathBuf::from("/etc/ca.pem")));
}

/// Python (psycopg2), Go (pg), PHP and Ruby: libpq's key=value form.
#[test]
fn libpq_key_value_form_is_read() {
    let c = from_string(&format!(
        "dbname=app host={HOST} port=5432 sslmode=require user=aad_conn"
    ))
    .unwrap();
    assert_eq!(c.host.as_deref(), Some(HOST));
    assert_eq!(c.dbname.as_deref(), Some("app"));
    assert_eq!(c.port, Some(5432));
    assert_eq!(c.user.as_deref(), Some("aad_conn"));
    assert_eq!(c.ssl_mode, SslMode::VerifyFull);
    assert!(!c.uses_password());
    let c = from_string(&format!(
        "host={HOST} dbname=app sslmode=require user=admin1 password={SECRET}"
    ))
    .unwrap();
    assert_eq!(c.password.as_deref(), Some(SECRET));
    assert!(c.uses_password());
}

/// Java (JDBC): a `jdbc:postgresql://` URL; the JDBC plugin that fetches Entra tokens is
/// what this pool does, so naming it is accepted and ignored.
#[test]
fn jdbc_form_is_read() {
    let c = from_string(&format!(
        "jdbc:postgresql://{HOST}:5432/app?sslmode=require&user=aad_conn"
    ))
    .unwrap();
    assert_eq!(c.host.as_deref(), Some(HOST));
    assert_eq!(c.port, Some(5432));
    assert_eq!(c.dbname.as_deref(), Some("app"));
    assert_eq!(c.user.as_deref(), Some("aad_conn"));
    assert_eq!(c.ssl_mode, SslMode::VerifyFull);
    let c = from_string(&format!(
        "jdbc:postgresql://{HOST}:5432/app?sslmode=require&user=admin1&password={SECRET}&authenticationPluginClassName=com.azure.identity.extensions.jdbc.postgresql.AzurePostgresqlAuthenticationPlugin"
    ))
    .unwrap();
    assert_eq!(c.password.as_deref(), Some(SECRET));
    let e = from_string(&format!("jdbc:sqlserver://{HOST}:1433;database=app")).unwrap_err();
    assert!(e.field.starts_with(VAR), "{e}");
    assert!(e.reason.contains("jdbc:postgresql://"), "{e}");
}

/// A `postgresql://` URL set by hand is read too.
#[test]
fn url_form_is_read() {
    let c = from_string(&format!(
        "postgresql://app%40contoso.com@{HOST}:6432/app?sslmode=verify-full"
    ))
    .unwrap();
    assert_eq!(c.host.as_deref(), Some(HOST));
    assert_eq!(c.port, Some(6432));
    assert_eq!(c.user.as_deref(), Some("app@contoso.com"));
}

/// DATABASE_URL > AZURE_POSTGRESQL_CONNECTIONSTRING > the other AZURE_POSTGRESQL_* > PG*,
/// each setting on its own: what a stronger source does not hold, a weaker one fills.
#[test]
fn connection_string_sits_between_database_url_and_the_single_variables() {
    let c = env(&[
        ("PGHOST", "pg.example.com"),
        ("PGAPPNAME", "from-pg"),
        ("AZURE_POSTGRESQL_HOST", "single.example.com"),
        ("AZURE_POSTGRESQL_USER", "single-user"),
        ("AZURE_POSTGRESQL_NAME", "single-db"),
        (
            VAR,
            "Server=string.example.com;Database=string-db;Ssl Mode=Require",
        ),
    ])
    .unwrap();
    assert_eq!(c.host.as_deref(), Some("string.example.com"));
    assert_eq!(c.dbname.as_deref(), Some("string-db"));
    assert_eq!(
        c.user.as_deref(),
        Some("single-user"),
        "the string holds no user: the single variable fills it"
    );
    assert_eq!(c.application_name.as_deref(), Some("from-pg"));
    let c = env(&[
        (VAR, "host=string.example.com dbname=string-db"),
        ("DATABASE_URL", "postgresql://url.example.com/url-db"),
    ])
    .unwrap();
    assert_eq!(c.host.as_deref(), Some("url.example.com"));
    assert_eq!(c.dbname.as_deref(), Some("url-db"));
    // Empty counts as unset.
    let c = env(&[(VAR, ""), ("PGHOST", "pg.example.com")]).unwrap();
    assert_eq!(c.host.as_deref(), Some("pg.example.com"));
}

/// `require` in the string means "TLS", as AZURE_POSTGRESQL_SSL=true does: a stricter mode
/// set by PGSSLMODE stays, a plaintext one is replaced; other modes are taken as written.
#[test]
fn require_in_the_string_keeps_a_stricter_mode() {
    let c = env(&[
        ("PGSSLMODE", "verify-ca"),
        ("PGSSLROOTCERT", "/etc/ca.pem"),
        (VAR, "Server=h.example.com;Ssl Mode=Require"),
    ])
    .unwrap();
    assert_eq!(c.ssl_mode, SslMode::VerifyCa);
    let c = env(&[
        ("PGSSLMODE", "disable"),
        (VAR, "host=h.example.com sslmode=require"),
    ])
    .unwrap();
    assert_eq!(c.ssl_mode, SslMode::Require);
    let e = from_string("Server=h.example.com;Ssl Mode=Disable").unwrap_err();
    assert_eq!(e.field, "sslmode", "{e}");
}

/// Certificate checks are never skipped: Npgsql's `Trust Server Certificate=true` is
/// refused by name, as are Npgsql settings that have no meaning here.
#[test]
fn npgsql_settings_without_a_meaning_here_are_named() {
    let e = from_string("Server=h.example.com;Trust Server Certificate=true").unwrap_err();
    assert!(e.field.starts_with(VAR), "{e}");
    assert!(e.reason.contains("Trust Server Certificate"), "{e}");
    let e = from_string("Server=h.example.com;Maximum Pool Size=50").unwrap_err();
    assert!(e.reason.contains("Maximum Pool Size"), "{e}");
    assert!(e.reason.contains("max_size"), "{e}");
}

/// Malformed strings: an error naming the variable, never a panic, never a piece of the
/// password (a `;` in an unquoted password cuts it into things that look like keys).
#[test]
fn malformed_strings_never_repeat_a_password() {
    let (a, b) = SECRET.split_at(7);
    let cases = [
        format!("Server=h.example.com;Password={a};{b};"),
        format!("Server=h.example.com;Password={a};{b}=x;"),
        format!("Server=h.example.com;Password=\"{SECRET}"),
        format!("Server=h.example.com;Password=\"{a}\"{b};"),
        format!("Server=h.example.com;Port={SECRET}"),
        format!("Server=h.example.com;Tcp Keepalive={SECRET}"),
        format!("{SECRET};Server=h.example.com"),
        format!("jdbc:postgresql://h.example.com/db?password={a}&{b}"),
        format!("jdbc:{SECRET}"),
        format!("host=h.example.com password={a} {b}"),
        SECRET.to_owned(),
        ";;=;\"".to_owned(),
        "Server".to_owned(),
    ];
    for s in &cases {
        let e = from_string(s).unwrap_err();
        let text = format!("{e} {e:?}");
        assert!(
            e.field.starts_with(VAR) || e.field == "sslmode",
            "{s:?} gave {text}"
        );
        for piece in [a, b] {
            assert!(!text.contains(piece), "{s:?} gave {text}");
        }
    }
}
