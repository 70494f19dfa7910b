//! A bare App Service managed identity client with no cache: every call is one request to
//! the identity endpoint. This is what the per-connect and rebuild patterns do, and it
//! needs the endpoint and header explicitly (the in-process emulator's are only known
//! after it starts, when the process environment can no longer be changed safely).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Azure Database for PostgreSQL's resource (audience).
pub const PG_RESOURCE: &str = "https://ossrdbms-aad.database.windows.net";

/// A token and when it expires. `Debug` never prints the secret.
#[derive(Clone)]
pub struct FetchedToken {
    /// The secret (sent as the PostgreSQL password).
    pub secret: String,
    /// Expiry.
    pub expires_at: SystemTime,
}

impl std::fmt::Debug for FetchedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchedToken")
            .field("secret", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl FetchedToken {
    /// Time left before expiry (zero when expired).
    pub fn remaining(&self) -> Duration {
        self.expires_at
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    }
}

/// App Service managed identity endpoint (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`).
pub struct MiEndpoint {
    url: String,
    header: String,
    http: reqwest::Client,
    calls: AtomicU64,
    failures: AtomicU64,
}

impl std::fmt::Debug for MiEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MiEndpoint")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl MiEndpoint {
    /// A client for `endpoint` sending `header` as `X-IDENTITY-HEADER`.
    pub fn new(endpoint: &str, header: &str) -> Result<MiEndpoint, String> {
        let sep = if endpoint.contains('?') { '&' } else { '?' };
        let url = format!(
            "{endpoint}{sep}api-version=2019-08-01&resource={}",
            encode(PG_RESOURCE)
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(MiEndpoint {
            url,
            header: header.to_string(),
            http,
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Calls that failed so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Asks the endpoint for a new token (one HTTP request, no cache).
    pub async fn fetch(&self) -> Result<FetchedToken, String> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let r = self.fetch_inner().await;
        if r.is_err() {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    async fn fetch_inner(&self) -> Result<FetchedToken, String> {
        let resp = self
            .http
            .get(&self.url)
            .header("X-IDENTITY-HEADER", &self.header)
            .send()
            .await
            .map_err(|e| format!("identity endpoint: {e}"))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("identity endpoint: {e}"))?;
        if !status.is_success() {
            return Err(format!("identity endpoint answered {status}"));
        }
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| format!("identity endpoint: bad JSON: {e}"))?;
        let secret = v
            .get("access_token")
            .and_then(|t| t.as_str())
            .ok_or("identity endpoint: no access_token")?
            .to_string();
        let expires_on = match v.get("expires_on") {
            Some(serde_json::Value::String(s)) => s.parse::<u64>().ok(),
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            _ => None,
        }
        .ok_or("identity endpoint: no expires_on")?;
        Ok(FetchedToken {
            secret,
            expires_at: UNIX_EPOCH + Duration::from_secs(expires_on),
        })
    }
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_the_resource() {
        assert_eq!(
            super::encode(super::PG_RESOURCE),
            "https%3A%2F%2Fossrdbms-aad.database.windows.net"
        );
    }
}
