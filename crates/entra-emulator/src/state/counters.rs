//! The emulator's counters: atomics bumped as things happen, and their snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

/// Every counter the emulator keeps, as atomics.
#[derive(Default)]
pub(crate) struct AtomicCounters {
    pub tokens_issued_app_service: AtomicU64,
    pub tokens_issued_cli: AtomicU64,
    pub tokens_issued_authority: AtomicU64,
    pub identity_requests: AtomicU64,
    pub identity_requests_refused: AtomicU64,
    pub logins_accepted: AtomicU64,
    pub logins_refused_expired: AtomicU64,
    pub logins_refused_audience: AtomicU64,
    pub logins_refused_signature: AtomicU64,
    pub logins_refused_unknown_role: AtomicU64,
    pub logins_refused_oid_mismatch: AtomicU64,
    pub logins_refused_token_type: AtomicU64,
    pub logins_refused_plaintext: AtomicU64,
    pub logins_refused_bad_password: AtomicU64,
    pub logins_refused_revoked: AtomicU64,
    pub logins_refused_validation: AtomicU64,
    pub identity_requests_rate_limited: AtomicU64,
    pub sessions_killed: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A snapshot of the emulator's counters.
///
/// `expired_token_logins` equals `logins_refused_expired`: an expired token offered at login
/// is the bug a token-aware pool exists to prevent, so it has its own, easy-to-assert name.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counters {
    /// Tokens handed out by the App Service managed identity endpoint.
    pub tokens_issued_app_service: u64,
    /// Tokens handed out through the `az` and `azd` stand-ins.
    pub tokens_issued_cli: u64,
    /// Tokens handed out by the Entra authority's token endpoint (client credentials: a
    /// service principal's secret, or a federated token for workload identity).
    pub tokens_issued_authority: u64,
    /// Tokens newly signed (by either identity endpoint or the admin API); a token served
    /// again from the endpoints' cache is not counted here.
    pub tokens_minted: u64,
    /// Identity answers served from the endpoints' token cache (the same token again).
    pub token_cache_hits: u64,
    /// Identity requests answered 429 by the rate limit (counted in
    /// `identity_requests_refused` too).
    pub identity_requests_rate_limited: u64,
    /// Requests that reached the identity endpoints (managed identity and `az`), refused or not.
    pub identity_requests: u64,
    /// Identity requests refused: faults (error, throttling, outage), bad header, unknown identity,
    /// logged-out CLI.
    pub identity_requests_refused: u64,
    /// Logins the front accepted (token or static password).
    pub logins_accepted: u64,
    /// Logins refused because the token had expired.
    pub logins_refused_expired: u64,
    /// Logins refused because the token's audience was not the database resource.
    pub logins_refused_audience: u64,
    /// Logins refused because the token was malformed or its signature did not verify.
    pub logins_refused_signature: u64,
    /// Logins refused because the role does not exist, or is a user's or a group's role
    /// the token's principal may not log in to.
    pub logins_refused_unknown_role: u64,
    /// Logins refused because the role was created for a service principal (a managed
    /// identity, an app) with another object id than the token's ("Service principal oid
    /// mismatch for role ...").
    pub logins_refused_oid_mismatch: u64,
    /// Logins refused because the token's type does not fit the role's: a user's token for
    /// a service principal's role, or an application's token for a user's role.
    pub logins_refused_token_type: u64,
    /// Connections refused because they did not ask for TLS.
    pub logins_refused_plaintext: u64,
    /// Logins refused because a static password was wrong.
    pub logins_refused_bad_password: u64,
    /// Token logins refused by the `refuse_logins` fault (as if the token had been revoked).
    pub logins_refused_revoked: u64,
    /// Logins refused by the `refuse_issued_tokens` fault: a valid token the server would
    /// not accept ("An error occurred while validating the access token").
    pub logins_refused_validation: u64,
    /// Expired tokens offered at login (same value as `logins_refused_expired`).
    pub expired_token_logins: u64,
    /// Sessions currently passed through to the cluster.
    pub sessions_open: u64,
    /// Sessions ended by `kill_all_sessions`.
    pub sessions_killed: u64,
}
