//! When the refresher renews a token and how it backs off ([`RefreshPolicy`]).

use std::time::Duration;

/// The longest `Retry-After` honoured (5 minutes): an identity endpoint that asks for more
/// is asked again after this.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(300);

/// When and how the background refresher renews the token.
///
/// The refresh point is `deadline - min(refresh_before_expiry, lifetime / 2)`. The
/// default of 270 s sits inside `azure_identity`'s 300 s renewal window, so the
/// credential really returns a new token instead of its cached one.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct RefreshPolicy {
    /// How long before expiry to refresh (default 270 s).
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::duration"))]
    pub refresh_before_expiry: Duration,
    /// First retry delay after a failed fetch (default 1 s; at least 100 ms, `validate`
    /// refuses less). A failed fetch is remembered for its retry delay: logins in that time
    /// get the same error without asking the identity endpoint again.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::duration"))]
    pub min_backoff: Duration,
    /// Cap on the retry delay (default 30 s). A `Retry-After` from the identity endpoint
    /// is honoured up to [`RETRY_AFTER_CAP`], even beyond this.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::duration"))]
    pub max_backoff: Duration,
    /// How long one fetch from the token source may take before it counts as failed
    /// (default 30 s; `None`: no limit). A source that never answers (an identity endpoint
    /// behind a firewall that drops packets, a hung `az`) would otherwise hold the refresher
    /// and every login that waits for a token; with the limit, the refresher backs off and
    /// tries again while the cached token keeps serving. Against a failing endpoint,
    /// `azure_identity` retries inside one fetch (waits of 0.2, 0.4, ... 25.6 s, up to about
    /// a minute); 30 s lets it make its first seven tries, and then the refresher's own
    /// backoff takes over, with several attempts inside the default 270 s refresh window.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::duration::option"))]
    pub fetch_timeout: Option<Duration>,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            refresh_before_expiry: Duration::from_secs(270),
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            fetch_timeout: Some(Duration::from_secs(30)),
        }
    }
}
