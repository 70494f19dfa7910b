//! Tokens, where they come from ([`TokenSource`]), and the per-pool cache that keeps one
//! valid token ready and refreshes it ahead of expiry.

pub mod backoff;
pub mod cache;
mod cached;
mod certificate;
pub mod chain;
pub mod claims;
mod error;
mod metrics;
mod policy;
pub mod secret;
mod source;
mod sources;

#[cfg(all(test, feature = "metrics"))]
mod metrics_tests;

pub use chain::ChainSource;
pub use error::TokenError;
pub use policy::{RETRY_AFTER_CAP, RefreshPolicy};
pub use source::{BoxFuture, Token, TokenSource, TokenSourceError};
pub use sources::{CredentialSource, FnSource, StaticPassword, UserAssignedId};
