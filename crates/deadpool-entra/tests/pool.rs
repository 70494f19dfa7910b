//! The pool without a server: typed errors from `get()`, start-up checks, TLS rules.

use std::time::Duration;

use base64::Engine;
use deadpool_entra::{Error, FnSource, Pool, SslMode, Token, TokenSourceError};

fn failing() -> FnSource {
    FnSource::new("ManagedIdentityCredential", |_| async {
        Err(
            TokenSourceError::new("connection refused by the identity endpoint")
                .with_hint("check IDENTITY_ENDPOINT/IDENTITY_HEADER"),
        )
    })
}

fn token_with(claims: &str) -> String {
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!("{}.{}.sig", e.encode(r#"{"alg":"none"}"#), e.encode(claims))
}

fn fixed(claims: &'static str) -> FnSource {
    FnSource::new("Fixed", move |_| async move {
        Ok(Token::expiring_in(
            token_with(claims),
            Duration::from_secs(3600),
        ))
    })
}

#[tokio::test]
async fn a_token_source_failure_fails_the_build_with_a_typed_error() {
    let e = Pool::builder()
        .host("db.example.com")
        .token_source(failing())
        .build()
        .await
        .unwrap_err();
    match &e {
        Error::Token(t) => {
            assert_eq!(t.source_name, "ManagedIdentityCredential");
            assert!(e.to_string().contains("IDENTITY_ENDPOINT"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_token_source_failure_surfaces_typed_from_get_on_a_lazy_pool() {
    let pool = Pool::builder()
        .host("db.example.com")
        .user("app")
        .token_source(failing())
        .lazy(true)
        .build()
        .await
        .unwrap();
    assert!(matches!(pool.get().await, Err(Error::Token(_))));
    assert!(pool.stats().token.last_error.is_some());
    let report = pool.health_with_timeout(Duration::from_secs(1)).await;
    assert!(!report.healthy && !report.database_ok);
    assert!(report.error.unwrap().contains("ManagedIdentityCredential"));
}

#[tokio::test]
async fn the_user_comes_from_the_token_or_the_build_says_what_to_set() {
    let e = Pool::builder()
        .host("db.example.com")
        .token_source(fixed(r#"{"oid":"1234"}"#))
        .build()
        .await
        .unwrap_err();
    match e {
        Error::Config(c) => {
            assert_eq!(c.field, "user");
            assert!(c.reason.contains("PGUSER"));
        }
        other => panic!("{other:?}"),
    }
    Pool::builder()
        .host("db.example.com")
        .token_source(fixed(r#"{"upn":"alice@contoso.com"}"#))
        .build()
        .await
        .unwrap();
}

#[tokio::test]
async fn plaintext_is_refused_off_loopback_even_with_the_opt_out() {
    for mode in [SslMode::Disable, SslMode::Allow, SslMode::Prefer] {
        let e = Pool::builder()
            .host("db.example.com")
            .user("u")
            .ssl_mode(mode)
            .dangerous_allow_plaintext_on_loopback()
            .token_source(fixed(r#"{"upn":"u"}"#))
            .build()
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::Config(c) if c.field == "sslmode"),
            "{e:?}"
        );
        let e = Pool::builder()
            .host("127.0.0.1")
            .user("u")
            .ssl_mode(mode)
            .password("pw")
            .build()
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::Config(c) if c.field == "sslmode"),
            "no opt-out: {e:?}"
        );
        Pool::builder()
            .host("127.0.0.1")
            .user("u")
            .ssl_mode(mode)
            .dangerous_allow_plaintext_on_loopback()
            .token_source(fixed(r#"{"upn":"u"}"#))
            .build()
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn channel_binding_require_is_refused_for_tokens_only() {
    let e = Pool::builder()
        .host("db.example.com")
        .user("u")
        .channel_binding(deadpool_entra::ChannelBinding::Require)
        .token_source(fixed(r#"{"upn":"u"}"#))
        .build()
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Config(c) if c.field == "channel_binding"),
        "{e:?}"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_a_network_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let pool = Pool::builder()
        .host("127.0.0.1")
        .port(port)
        .user("u")
        .token_source(fixed(r#"{"upn":"u"}"#))
        .build()
        .await
        .unwrap();
    match pool.get().await {
        Err(e @ Error::Network { .. }) => {
            assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(pool.stats().logins_failed, 1);
    assert_eq!(pool.credential_name(), "Fixed");
}

#[tokio::test]
async fn password_mode_needs_a_user_and_never_fetches_a_token() {
    let e = Pool::builder()
        .host("db.example.com")
        .password("pw")
        .build()
        .await
        .unwrap_err();
    assert!(matches!(&e, Error::Config(c) if c.field == "user"), "{e:?}");
    let pool = Pool::builder()
        .host("db.example.com")
        .user("u")
        .password("pw")
        .build()
        .await
        .unwrap();
    assert_eq!(pool.credential_name(), "StaticPassword");
    assert_eq!(pool.stats().token.expires_in_secs, None);
    assert_eq!(pool.stats().token.identity_calls, 0);
}

#[tokio::test]
async fn dropping_the_pool_frees_the_token_source_and_its_tasks() {
    let marker = std::sync::Arc::new(());
    let m = marker.clone();
    let source = FnSource::new("Marked", move |_| {
        let _keep = m.clone();
        async move {
            Ok(Token::expiring_in(
                token_with(r#"{"upn":"u"}"#),
                Duration::from_secs(60),
            ))
        }
    });
    let pool = Pool::builder()
        .host("db.example.com")
        .token_source(source)
        .build()
        .await
        .unwrap();
    let clone = pool.clone();
    assert!(std::sync::Arc::strong_count(&marker) > 1);
    drop(pool);
    drop(clone);
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    // Neither the refresher nor the sweeper keeps the cache (and so the source) alive.
    assert_eq!(std::sync::Arc::strong_count(&marker), 1);
}

/// `Fast` recycling does no I/O: no timer around it on the warm checkout path (as in
/// plain deadpool-postgres); a method that queries the server keeps its timeout.
#[tokio::test]
async fn the_recycle_timeout_applies_only_where_recycling_talks_to_the_server() {
    let build = |method: deadpool_entra::RecyclingMethod| {
        Pool::builder()
            .host("db.example.com")
            .token_source(fixed(r#"{"upn":"u"}"#))
            .recycling_method(method)
            .recycle_timeout(Some(Duration::from_secs(5)))
            .build()
    };
    let fast = build(deadpool_entra::RecyclingMethod::Fast).await.unwrap();
    assert_eq!(fast.timeouts().recycle, None);
    let verified = build(deadpool_entra::RecyclingMethod::Verified)
        .await
        .unwrap();
    assert_eq!(verified.timeouts().recycle, Some(Duration::from_secs(5)));
}
