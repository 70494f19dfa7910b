//! Microsoft Entra ID tokens for Azure Database for PostgreSQL logins, for any pool.
//!
//! - [`TokenSource`]: where tokens come from: an Azure credential ([`CredentialSource`]),
//!   the documented credential chain ([`ChainSource`]), or a closure ([`FnSource`]).
//! - [`TokenProvider`]: one cached token, fetched single-flight and refreshed by a
//!   background task ahead of expiry, with backoff and a memory of the last failure;
//!   several pools share one. Or a static password ([`StaticPassword`],
//!   [`TokenProvider::password`]), which is not a token source: never refreshed.
//! - [`cloud`]: the token scope of each Azure cloud, from the server's host name.
//! - [`claims`]: the user a token names, for the login's user name.
//!
//! This crate knows nothing of pools. `deadpool-entra` builds a deadpool-postgres pool on
//! it, `sqlx-entra` a sqlx pool.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod cloud;
mod provider;
pub mod retire;
#[cfg(feature = "serde")]
pub mod serde_util;
pub mod stats;
pub mod stopwatch;
pub mod sync;
pub mod time;
pub mod token;

pub use provider::TokenProvider;
pub use retire::RetirePolicy;
pub use stats::TokenStats;
pub use token::{
    BoxFuture, ChainSource, CredentialSource, FnSource, RETRY_AFTER_CAP, RefreshPolicy,
    StaticPassword, Token, TokenError, TokenSource, TokenSourceError, UserAssignedId, claims,
};
