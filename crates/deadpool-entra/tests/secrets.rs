//! No secret in logs, errors or `Debug`: a full pool lifecycle captured at TRACE, and the
//! `Debug`/`Display` of every public type.

use std::{
    io::Write,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use base64::Engine;
use deadpool_entra::error::{ConfigError, LoginError, TimeoutKind, TokenError};
use deadpool_entra::{
    ChainSource, Config, Error, ErrorKind, FnSource, Pool, StaticPassword, Token, TokenSourceError,
};

const SECRET_PART: &str = "S3CR3T-7f3a9c";

fn jwt() -> String {
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.{}",
        e.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
        e.encode(
            r#"{"upn":"alice@contoso.com","aud":"https://ossrdbms-aad.database.windows.net"}"#
        ),
        SECRET_PART
    )
}

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn assert_clean(what: &str, text: &str) {
    let token = jwt();
    assert!(
        !text.contains(SECRET_PART),
        "{what} leaks the token: {text}"
    );
    assert!(!text.contains(&token), "{what} leaks the token: {text}");
    assert!(
        !text.contains("hunter2-password"),
        "{what} leaks the password: {text}"
    );
}

#[tokio::test(start_paused = true)]
async fn trace_output_of_a_pool_lifecycle_never_contains_the_token() {
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let failing = Arc::new(AtomicBool::new(false));
    let f = failing.clone();
    let source = FnSource::new("FakeCredential", move |_scope| {
        let f = f.clone();
        async move {
            if f.load(Ordering::SeqCst) {
                Err(TokenSourceError::new("endpoint said 503")
                    .with_retry_after(Duration::from_secs(3)))
            } else {
                Ok(Token::expiring_in(jwt(), Duration::from_secs(60)))
            }
        }
    });
    let pool = Pool::builder()
        .host("127.0.0.1")
        .port(closed_port())
        .dbname("app")
        .token_source(source)
        .max_size(2)
        .create_timeout(Some(Duration::from_secs(2)))
        .build()
        .await
        .unwrap();
    assert_eq!(pool.credential_name(), "FakeCredential");
    let mut texts = Vec::new();
    // Logins fail (nobody listens): the error path is logged.
    let e = pool.get().await.unwrap_err();
    texts.push(format!("{e} {e:?}"));
    // Refresh at 30 s, then failures with backoff, then expiry.
    tokio::time::sleep(Duration::from_secs(31)).await;
    failing.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let e = pool.get().await.unwrap_err();
    assert!(matches!(e, Error::Token(_)), "{e:?}");
    texts.push(format!("{e} {e:?}"));
    let stats = pool.stats();
    assert!(stats.token.refreshes_failed > 0);
    texts.push(format!(
        "{stats:?} {}",
        serde_json::to_string(&stats).unwrap()
    ));
    let health = pool.health_with_timeout(Duration::from_secs(1)).await;
    assert!(!health.healthy);
    texts.push(format!(
        "{health:?} {}",
        serde_json::to_string(&health).unwrap()
    ));
    texts.push(format!("{pool:?}"));
    pool.close();
    let e = pool.get().await.unwrap_err();
    assert!(matches!(e, Error::Closed));

    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("token acquired"), "capture works: {logs}");
    assert!(logs.contains("token fetch failed"), "{logs}");
    // The failed login says what kind of failure it was (nobody listens on the port).
    assert!(logs.contains("kind=network"), "{logs}");
    // Logins carry OpenTelemetry's database attributes; token fetches have their own span.
    assert!(logs.contains("db.system.name=\"postgresql\""), "{logs}");
    assert!(logs.contains("server.address=\"127.0.0.1\""), "{logs}");
    assert!(logs.contains("db.namespace=\"app\""), "{logs}");
    assert!(logs.contains("token fetch{"), "{logs}");
    assert_clean("trace output", &logs);
    for t in texts {
        assert_clean("error/stats/health text", &t);
    }
}

#[test]
fn debug_and_display_of_public_types_never_show_secrets() {
    let token = Token::expiring_in(jwt(), Duration::from_secs(60));
    assert_clean("Token", &format!("{token:?}"));
    assert_clean(
        "Token::never_expiring",
        &format!("{:?}", Token::never_expiring("hunter2-password")),
    );

    let mut cfg: Config = "postgresql://app:hunter2-password@db.example.com/app"
        .parse()
        .unwrap();
    assert_clean("Config", &format!("{cfg:?}"));
    cfg.password = Some(jwt());
    assert_clean("Config", &format!("{cfg:?}"));
    assert_clean(
        "PoolBuilder",
        &format!("{:?}", cfg.builder().password("hunter2-password")),
    );

    assert_clean(
        "StaticPassword",
        &format!("{:?}", StaticPassword::new("hunter2-password")),
    );
    let f = FnSource::new("f", |_s| async {
        Ok(Token::never_expiring("hunter2-password"))
    });
    assert_clean("FnSource", &format!("{f:?}"));
    let chain = ChainSource::from_env_vars(
        [
            (
                "AZURE_TENANT_ID".to_string(),
                "00000000-0000-0000-0000-000000000000".to_string(),
            ),
            (
                "AZURE_CLIENT_ID".to_string(),
                "11111111-1111-1111-1111-111111111111".to_string(),
            ),
            (
                "AZURE_CLIENT_SECRET".to_string(),
                "hunter2-password".to_string(),
            ),
        ],
        None,
    );
    assert_clean("ChainSource", &format!("{chain:?}"));
    assert_eq!(
        chain.link_names(),
        [
            "EnvironmentCredential",
            "WorkloadIdentityCredential",
            "ManagedIdentityCredential",
            "AzureCliCredential",
            "AzureDeveloperCliCredential"
        ]
    );

    let errors = vec![
        Error::Config(ConfigError::new("host", "empty")),
        Error::Token(TokenError {
            source_name: "ManagedIdentityCredential".into(),
            cause: "HTTP 500".into(),
            hint: Some("check IDENTITY_ENDPOINT/IDENTITY_HEADER".into()),
            retry_after: None,
        }),
        Error::Login(LoginError {
            kind: ErrorKind::RoleMissing,
            server_message: "role \"x\" does not exist".into(),
            sqlstate: "28000".into(),
            user: "x".into(),
        }),
        Error::Tls {
            endpoint: "h:5432".into(),
            cause: "invalid peer certificate".into(),
        },
        Error::Network {
            endpoint: "h:5432".into(),
            cause: "connection refused".into(),
        },
        Error::Timeout(TimeoutKind::Wait),
        Error::Closed,
        Error::Hook("boom".into()),
    ];
    for e in &errors {
        assert_clean("Error", &format!("{e} {e:?}"));
    }
    let stats = deadpool_entra::Stats::default();
    assert_clean("Stats", &format!("{stats:?}"));
}

#[test]
fn login_errors_say_what_to_do() {
    let e = Error::Login(LoginError {
        kind: ErrorKind::RoleMissing,
        server_message: "role \"my-app\" does not exist".into(),
        sqlstate: "28000".into(),
        user: "my-app".into(),
    });
    let text = e.to_string();
    assert!(
        text.contains("pgaadauth_create_principal('my-app', false, false)"),
        "{text}"
    );
    let e = LoginError {
        kind: ErrorKind::TokenWrongAudience,
        server_message: "The access token does not have a valid audience claim.".into(),
        sqlstate: "28000".into(),
        user: "u".into(),
    };
    assert!(
        e.to_string()
            .contains("https://ossrdbms-aad.database.windows.net/.default")
    );
    let e = Error::Token(TokenError {
        source_name: "AzureCliCredential".into(),
        cause: "Please run 'az login' to setup account.".into(),
        hint: Some("run `az login`".into()),
        retry_after: None,
    });
    assert!(e.to_string().contains("AzureCliCredential"));
    assert!(e.to_string().contains("run `az login`"));
    let pe: deadpool_entra::deadpool_postgres::PoolError = Error::Timeout(TimeoutKind::Wait).into();
    assert!(matches!(
        pe,
        deadpool_entra::deadpool_postgres::PoolError::Timeout(_)
    ));
}
