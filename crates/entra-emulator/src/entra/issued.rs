//! The identity endpoints' token cache, as Azure's have one: the managed identity
//! endpoint and the Azure CLI hand back the token they issued before for the same
//! principal and resource while it has more than a refresh window of life left, and mint
//! a new one only then (or when told to, as after a revocation).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The window Azure's endpoints use for hour-long tokens: a cached token with less than
/// this left is replaced by a new one.
pub const AZURE_REFRESH_WINDOW: Duration = Duration::from_secs(300);

/// The default refresh window for a token of `lifetime`: five minutes, or a twelfth of the
/// lifetime when that is under an hour (five minutes of an hour, scaled), so second-long
/// test tokens are cached the way hour-long ones are.
pub fn default_refresh_window(lifetime: Duration) -> Duration {
    if lifetime < Duration::from_secs(3600) {
        lifetime / 12
    } else {
        AZURE_REFRESH_WINDOW
    }
}

/// One issued token, as the endpoint keeps it.
#[derive(Clone)]
pub(crate) struct Issued {
    pub token: String,
    /// `exp` claim (Unix seconds).
    pub exp: u64,
    /// `iat` claim (Unix seconds).
    pub iat: u64,
}

const NONE: u64 = u64::MAX;

/// The cache of the identity endpoints (managed identity and `az`), keyed by principal
/// object id and resource.
pub(crate) struct IssuedTokens {
    enabled: AtomicBool,
    /// Refresh window in milliseconds; `NONE`: [`default_refresh_window`].
    window_ms: AtomicU64,
    /// The next request mints a new token whatever the cache holds.
    mint_next: AtomicBool,
    /// Tokens minted so far; each token's `uti` starts with its sequence number.
    minted: AtomicU64,
    /// Tokens with a sequence number below this are refused at login although valid.
    refuse_below: AtomicU64,
    cache: Mutex<HashMap<(String, String), Issued>>,
    pub cache_hits: AtomicU64,
}

/// Unix time in milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl IssuedTokens {
    pub fn new(enabled: bool, window: Option<Duration>) -> Self {
        let t = Self {
            enabled: AtomicBool::new(enabled),
            window_ms: AtomicU64::new(NONE),
            mint_next: AtomicBool::new(false),
            minted: AtomicU64::new(0),
            refuse_below: AtomicU64::new(0),
            cache: Mutex::new(HashMap::new()),
            cache_hits: AtomicU64::new(0),
        };
        t.set_window(window);
        t
    }

    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }
    pub fn set_enabled(&self, on: bool) {
        self.enabled.store(on, Ordering::Relaxed);
    }
    pub fn window(&self) -> Option<Duration> {
        match self.window_ms.load(Ordering::Relaxed) {
            NONE => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }
    pub fn set_window(&self, w: Option<Duration>) {
        let ms = w
            .map(|w| {
                u64::try_from(w.as_millis())
                    .unwrap_or(NONE - 1)
                    .min(NONE - 1)
            })
            .unwrap_or(NONE);
        self.window_ms.store(ms, Ordering::Relaxed);
    }
    pub fn set_mint_next(&self) {
        self.mint_next.store(true, Ordering::Relaxed);
    }
    pub fn minted(&self) -> u64 {
        self.minted.load(Ordering::Relaxed)
    }

    /// Every token minted so far is refused at login from now on ("An error occurred while
    /// validating the access token"), though its signature and `exp` are fine; the cache
    /// keeps serving them, as Azure's endpoints would until their window.
    pub fn refuse_issued_so_far(&self) {
        self.refuse_below.store(self.minted(), Ordering::Relaxed);
    }
    /// Ends [`Self::refuse_issued_so_far`].
    pub fn accept_all(&self) {
        self.refuse_below.store(0, Ordering::Relaxed);
    }
    pub fn refusing(&self) -> bool {
        self.refuse_below.load(Ordering::Relaxed) > 0
    }

    /// `true` when a token with this `uti` was minted before [`Self::refuse_issued_so_far`].
    pub fn is_refused(&self, uti: &str) -> bool {
        let below = self.refuse_below.load(Ordering::Relaxed);
        below > 0 && seq_of(uti).is_some_and(|s| s < below)
    }

    /// The cached token for `(principal, resource)` if it may be served again now.
    pub fn cached(&self, principal: &str, resource: &str) -> Option<Issued> {
        if self.mint_next.swap(false, Ordering::Relaxed) || !self.enabled() {
            return None;
        }
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let hit = cache.get(&(principal.to_owned(), resource.to_owned()))?;
        let lifetime = Duration::from_secs(hit.exp.saturating_sub(hit.iat));
        let window = self
            .window()
            .unwrap_or_else(|| default_refresh_window(lifetime));
        let remaining =
            Duration::from_millis((hit.exp.saturating_mul(1000)).saturating_sub(now_ms()));
        if remaining > window {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
            Some(hit.clone())
        } else {
            None
        }
    }

    /// A fresh `uti` for the next token: its sequence number, then random characters.
    pub fn next_uti(&self) -> String {
        let seq = self.minted.fetch_add(1, Ordering::Relaxed);
        format!("{seq:010x}{}", crate::entra::ids::random_hex(6))
    }

    /// Remember a newly minted token for `(principal, resource)`.
    pub fn store(&self, principal: &str, resource: &str, issued: Issued) {
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((principal.to_owned(), resource.to_owned()), issued);
    }
}

fn seq_of(uti: &str) -> Option<u64> {
    u64::from_str_radix(uti.get(..10)?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_window_is_five_minutes_or_a_twelfth_of_a_short_life() {
        assert_eq!(
            default_refresh_window(Duration::from_secs(3600)),
            AZURE_REFRESH_WINDOW
        );
        assert_eq!(
            default_refresh_window(Duration::from_secs(86_400)),
            AZURE_REFRESH_WINDOW
        );
        assert_eq!(
            default_refresh_window(Duration::from_secs(12)),
            Duration::from_secs(1)
        );
    }

    fn issued(now: u64, life: u64) -> Issued {
        Issued {
            token: "t".into(),
            exp: now + life,
            iat: now,
        }
    }

    #[test]
    fn a_token_is_served_again_until_its_window_then_minted() {
        let t = IssuedTokens::new(true, None);
        let now = now_ms() / 1000;
        t.store("p", "r", issued(now, 3600));
        assert!(t.cached("p", "r").is_some());
        assert!(t.cached("p", "other").is_none());
        assert!(t.cached("q", "r").is_none());
        // 200 s left: inside the five-minute window.
        t.store(
            "p",
            "r",
            Issued {
                iat: now - 3400,
                exp: now + 200,
                token: "t".into(),
            },
        );
        assert!(t.cached("p", "r").is_none());
        assert_eq!(t.cache_hits.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn switched_off_or_told_to_mint_the_cache_is_bypassed() {
        let t = IssuedTokens::new(true, None);
        let now = now_ms() / 1000;
        t.store("p", "r", issued(now, 3600));
        t.set_mint_next();
        assert!(t.cached("p", "r").is_none(), "mint_next bypasses once");
        assert!(t.cached("p", "r").is_some());
        t.set_enabled(false);
        assert!(t.cached("p", "r").is_none());
    }

    #[test]
    fn an_explicit_window_replaces_the_default() {
        let t = IssuedTokens::new(true, Some(Duration::from_secs(4000)));
        let now = now_ms() / 1000;
        t.store("p", "r", issued(now, 3600));
        assert!(t.cached("p", "r").is_none());
    }

    #[test]
    fn refusal_covers_tokens_minted_before_it_only() {
        let t = IssuedTokens::new(true, None);
        let a = t.next_uti();
        t.refuse_issued_so_far();
        let b = t.next_uti();
        assert!(t.is_refused(&a));
        assert!(!t.is_refused(&b));
        assert!(!t.is_refused("not-a-sequence"));
        t.accept_all();
        assert!(!t.is_refused(&a));
    }
}
