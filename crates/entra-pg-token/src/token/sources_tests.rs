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

pub(crate) fn factory(
    minted: Arc<AtomicU64>,
) -> impl Fn() -> Result<Arc<dyn TokenCredential>, String> {
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

/// The password is held zeroized (`Secret`), and every token made from it shares that one
/// allocation: no plain copy per login lingers in freed memory.
#[tokio::test]
async fn a_static_password_is_held_once_and_shared_by_its_tokens() {
    let p = StaticPassword::new("hunter2");
    let a = p.token();
    let b = super::Fixed(p.clone()).fetch("scope").await.unwrap();
    assert_eq!(a.secret(), "hunter2");
    assert!(Arc::ptr_eq(&a.secret_arc(), &b.secret_arc()));
    assert!(Arc::ptr_eq(&a.secret_arc(), &p.password));
    assert_eq!(format!("{p:?}"), "StaticPassword(<redacted>)");
}

/// An identity endpoint's `expires_on` at either end of what it can express (year 9999,
/// before 1970) maps to a wall-clock time without a panic.
#[test]
fn any_expiry_an_endpoint_can_send_maps_without_a_panic() {
    use azure_core::time::OffsetDateTime;
    let last = OffsetDateTime::from_unix_timestamp(253_402_300_799).unwrap();
    assert!(to_system_time(last) > std::time::SystemTime::now());
    let before = OffsetDateTime::from_unix_timestamp(-86_400).unwrap();
    assert_eq!(to_system_time(before), std::time::UNIX_EPOCH);
}

#[test]
fn a_retry_after_is_read_as_seconds_or_as_an_http_date() {
    use std::time::{Duration, UNIX_EPOCH};

    use super::retry_after_value;
    // Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example.
    let date = UNIX_EPOCH + Duration::from_secs(784_111_777);
    let now = date - Duration::from_secs(120);
    assert_eq!(
        retry_after_value(" 30 ", now),
        Some(Duration::from_secs(30))
    );
    assert_eq!(
        retry_after_value("Sun, 06 Nov 1994 08:49:37 GMT", now),
        Some(Duration::from_secs(120))
    );
    // A date that has passed asks for no wait (the floor applies); nonsense is no value.
    assert_eq!(
        retry_after_value(
            "Sun, 06 Nov 1994 08:49:37 GMT",
            date + Duration::from_secs(5)
        ),
        Some(Duration::ZERO)
    );
    assert_eq!(retry_after_value("soon", now), None);
    assert_eq!(retry_after_value("-5", now), None);
    assert_eq!(retry_after_value("99999999999999999999999", now), None);
}
