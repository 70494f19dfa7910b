//! The chain: where it stops, where it goes on, and how it is named while it asks.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};

use super::*;
use crate::token::{source::TokenSource, sources::tests::factory};

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

/// Whether the chain stops at a named managed identity depends on whether the
/// environment shows one: on App Service (`IDENTITY_ENDPOINT`) it stops there; on a
/// developer machine with a client id left in its environment it goes on to `az`.
#[test]
fn a_named_managed_identity_stops_the_chain_only_where_the_environment_shows_one() {
    let vars = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let mi = |c: &ChainSource| {
        c.links
            .iter()
            .find(|l| l.name == "ManagedIdentityCredential")
            .map(|l| (l.configured, l.credential.is_ok()))
    };
    let id = "00000000-0000-4000-8000-000000000001";
    let app_service = ChainSource::from_env_vars(
        vars(&[
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token"),
            ("IDENTITY_HEADER", "h"),
            ("AZURE_POSTGRESQL_CLIENTID", id),
        ]),
        None,
    );
    assert_eq!(mi(&app_service), Some((true, true)));
    let laptop = ChainSource::from_env_vars(vars(&[("AZURE_POSTGRESQL_CLIENTID", id)]), None);
    assert_eq!(mi(&laptop), Some((false, true)), "tried, then az");
    let shown = ChainSource::from_env_vars(vars(&[("IDENTITY_ENDPOINT", "http://x/")]), None);
    assert_eq!(
        mi(&shown),
        Some((false, true)),
        "system-assigned: an ordinary link"
    );
    let none = ChainSource::from_env_vars(vars(&[]), None);
    assert_eq!(mi(&none), Some((false, false)), "unavailable");
    // Service Connector's service principal: the client id is not a managed identity's.
    let sp = ChainSource::from_env_vars(
        vars(&[
            ("AZURE_POSTGRESQL_TENANTID", "t"),
            ("AZURE_POSTGRESQL_CLIENTID", id),
            ("AZURE_POSTGRESQL_CLIENTSECRET", "s"),
        ]),
        None,
    );
    assert_eq!(mi(&sp), Some((false, false)));
    assert!(
        sp.links[0].configured,
        "the service principal stops the chain"
    );
    assert!(sp.links[0].credential.is_ok(), "a ClientSecretCredential");
    // Only a secret makes Service Connector's variables a service principal.
    assert!(!laptop.links[0].configured && laptop.links[0].credential.is_err());
    // The Azure SDKs' own variables: a secret, or a certificate file (configured even
    // when the file cannot be read: the chain stops there and says why).
    let env_sp = ChainSource::from_env_vars(
        vars(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", id),
            ("AZURE_CLIENT_SECRET", "s"),
        ]),
        None,
    );
    assert!(env_sp.links[0].configured && env_sp.links[0].credential.is_ok());
    let cert = ChainSource::from_env_vars(
        vars(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", id),
            ("AZURE_CLIENT_CERTIFICATE_PATH", "/nonexistent/cert.pem"),
        ]),
        None,
    );
    assert!(cert.links[0].configured);
    // A tenant makes AZURE_CLIENT_ID a service principal's, not a managed identity's.
    assert_eq!(mi(&cert), Some((false, false)));
}
