//! Credential sources: a new instance bypasses the instance's token cache.

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicU64, Ordering},
};

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};

use super::*;

/// A credential with an in-process cache, as `azure_identity`'s have: it serves its token
/// until told otherwise; a new instance starts empty and mints.
#[derive(Debug)]
struct Caching {
    cached: Mutex<Option<String>>,
    minted: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl TokenCredential for Caching {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let mut c = self.cached.lock().unwrap();
        let secret = c
            .get_or_insert_with(|| format!("token-{}", self.minted.fetch_add(1, Ordering::SeqCst)))
            .clone();
        let expires =
            azure_core::time::OffsetDateTime::now_utc() + azure_core::time::Duration::hours(1);
        Ok(AccessToken::new(secret, expires))
    }
}

fn factory(minted: Arc<AtomicU64>) -> impl Fn() -> Result<Arc<dyn TokenCredential>, String> {
    move || {
        Ok(Arc::new(Caching {
            cached: Mutex::new(None),
            minted: minted.clone(),
        }) as Arc<dyn TokenCredential>)
    }
}

#[tokio::test]
async fn a_fresh_fetch_uses_a_new_instance_and_keeps_it() {
    let minted = Arc::new(AtomicU64::new(0));
    let source = CredentialSource::from_factory("Caching", factory(minted.clone())).unwrap();
    let a = source.fetch("s").await.unwrap();
    let b = source.fetch("s").await.unwrap();
    assert_eq!(a.secret(), b.secret(), "the instance serves its cache");
    let fresh = source.fetch_fresh("s").await.unwrap();
    assert_ne!(fresh.secret(), a.secret());
    // The new instance is kept: its cache holds the new token.
    assert_eq!(source.fetch("s").await.unwrap().secret(), fresh.secret());
    assert_eq!(minted.load(Ordering::SeqCst), 2);
    assert_eq!(source.name(), "Caching");
}

#[tokio::test]
async fn without_a_factory_a_fresh_fetch_is_a_plain_fetch() {
    let minted = Arc::new(AtomicU64::new(0));
    let source = CredentialSource::new(factory(minted.clone())().unwrap());
    let a = source.fetch("s").await.unwrap();
    assert_eq!(source.fetch_fresh("s").await.unwrap().secret(), a.secret());
    assert_eq!(minted.load(Ordering::SeqCst), 1);
}

#[test]
fn a_factory_that_fails_at_once_is_an_error_naming_the_source() {
    let e = CredentialSource::from_factory("Broken", || Err("no endpoint".into())).unwrap_err();
    assert!(
        e.message.contains("Broken") && e.message.contains("no endpoint"),
        "{e}"
    );
}

/// A credential that always fails with `message`.
#[derive(Debug)]
struct Failing(&'static str);

#[async_trait::async_trait]
impl TokenCredential for Failing {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        Err(azure_core::Error::with_message(
            azure_core::error::ErrorKind::Credential,
            self.0,
        ))
    }
}

/// A chain of `first` (its credential failing with `message`, or, with `message` `None`,
/// not made at all) and a working `AzureCliCredential`; `configured`: the environment
/// names `first`'s identity.
fn chain(
    first: &'static str,
    configured: bool,
    message: Option<&'static str>,
    minted: Arc<AtomicU64>,
) -> ChainSource {
    let make = move || match message {
        Some(m) => Ok(Arc::new(Failing(m)) as Arc<dyn TokenCredential>),
        None => Err("cannot read /nowhere/cert.pem".to_owned()),
    };
    ChainSource {
        links: vec![
            if configured {
                Link::configured(first, make)
            } else {
                Link::new(first, make)
            },
            Link::new("AzureCliCredential", factory(minted)),
        ],
        chosen: OnceLock::new(),
        trying: AtomicUsize::new(0),
    }
}

#[tokio::test]
async fn the_chain_stops_where_the_configured_identity_fails() {
    // (link, its failure, what the error says, what the hint says)
    let cases = [
        (
            "EnvironmentCredential",
            Some("AADSTS7000215: Invalid client secret provided."),
            "an identity that Entra refused",
            "AZURE_CLIENT_ID",
        ),
        (
            "WorkloadIdentityCredential",
            Some("AADSTS700213: No matching federated identity record found"),
            "an identity that Entra refused",
            "AZURE_CLIENT_ID",
        ),
        // Entra's own trouble, an unreachable authority, a credential that cannot be made:
        // still this identity, retried; not a reason to use another.
        (
            "EnvironmentCredential",
            Some("AADSTS90033: A transient error has occurred. Please try again."),
            "the identity the environment configures",
            "retried",
        ),
        (
            "EnvironmentCredential",
            Some("error sending request: connection refused"),
            "the identity the environment configures",
            "retried",
        ),
        (
            "EnvironmentCredential",
            None,
            "the identity the environment configures",
            "retried",
        ),
    ];
    for (first, message, says, hint) in cases {
        let minted = Arc::new(AtomicU64::new(0));
        let source = chain(first, true, message, minted.clone());
        let e = source.fetch("s").await.unwrap_err();
        assert!(
            e.message.contains(&format!("the chain stops at {says}")),
            "{e}"
        );
        assert!(!e.message.contains("AzureCliCredential"), "{e}");
        assert!(e.hint.as_deref().unwrap_or("").contains(hint), "{e:?}");
        assert_eq!(
            minted.load(Ordering::SeqCst),
            0,
            "the next link was not asked"
        );
    }
}

#[tokio::test]
async fn the_chain_goes_on_past_links_the_environment_does_not_configure() {
    for (first, message) in [
        (
            "ManagedIdentityCredential",
            Some("AADSTS500011: resource principal not found"),
        ),
        (
            "ManagedIdentityCredential",
            Some("error sending request: connection refused"),
        ),
        ("EnvironmentCredential", None),
    ] {
        let minted = Arc::new(AtomicU64::new(0));
        let source = chain(first, false, message, minted.clone());
        assert!(source.fetch("s").await.is_ok(), "{first}: {message:?}");
        assert_eq!(source.name(), "AzureCliCredential");
        assert_eq!(minted.load(Ordering::SeqCst), 1);
    }
}

/// A credential that never answers.
#[derive(Debug)]
struct Hanging;

#[async_trait::async_trait]
impl TokenCredential for Hanging {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        std::future::pending().await
    }
}

#[tokio::test]
async fn while_a_link_is_asked_the_source_is_named_for_it() {
    let source = Arc::new(ChainSource {
        links: vec![
            Link::new("EnvironmentCredential", || {
                Ok(Arc::new(Failing("error sending request")) as Arc<dyn TokenCredential>)
            }),
            Link::new("WorkloadIdentityCredential", || {
                Ok(Arc::new(Hanging) as Arc<dyn TokenCredential>)
            }),
        ],
        chosen: OnceLock::new(),
        trying: AtomicUsize::new(0),
    });
    assert_eq!(source.name(), "ChainSource");
    let asking = tokio::spawn({
        let source = source.clone();
        async move { source.fetch("s").await }
    });
    for _ in 0..100 {
        if source.name() != "ChainSource" {
            break;
        }
        tokio::task::yield_now().await;
    }
    // A fetch cut off by `fetch_timeout` now names the link that did not answer.
    assert_eq!(source.name(), "ChainSource (at WorkloadIdentityCredential)");
    asking.abort();
}

/// The password is held zeroized (`Secret`), and every token made from it shares that one
/// allocation: no plain copy per login lingers in freed memory.
#[tokio::test]
async fn a_static_password_is_held_once_and_shared_by_its_tokens() {
    let p = StaticPassword::new("hunter2");
    let a = p.fetch("scope").await.unwrap();
    let b = p.fetch("scope").await.unwrap();
    assert_eq!(a.secret(), "hunter2");
    assert!(Arc::ptr_eq(&a.secret_arc(), &b.secret_arc()));
    assert!(Arc::ptr_eq(&a.secret_arc(), &p.password));
    assert_eq!(format!("{p:?}"), "StaticPassword(<redacted>)");
}
