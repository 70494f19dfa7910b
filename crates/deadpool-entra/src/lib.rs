#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod checkout;
mod config;
mod connect;
#[cfg(feature = "doctor")]
#[cfg_attr(docsrs, doc(cfg(feature = "doctor")))]
pub mod doctor;
pub mod error;

mod hosts;
#[doc(hidden)]
pub mod metrics;
mod network;
mod otel;
mod pool;
mod provider;
mod retire;
mod shared;
pub mod stats;
mod tls;

// The crates whose types the public API uses (credentials, `UserAssignedId`), so that a
// user names them through this crate, at the versions it was built with.
pub use azure_core;
pub use azure_identity;
pub use deadpool_postgres;
// The deadpool-postgres types that our own API takes or returns; the rest are reached
// through `deadpool_postgres` above.
pub use deadpool_postgres::{
    Client, GenericClient, Hook, QueueMode, RecyclingMethod, Timeouts, Transaction,
};
pub use tokio_postgres;

// The token layer: its own crate, shared with the sqlx adapter. Its public names are
// this crate's too. Inside this crate every module names what it uses by the module that
// defines it (`crate::error::Error`, `entra_pg_token::token::Token`), never through these
// re-exports, so that the imports form layers that point one way.
pub use entra_pg_token;
pub use entra_pg_token::cloud;

pub use builder::PoolBuilder;
pub use config::{
    AuthMethod, ChannelBinding, Config, LoadBalanceHosts, SslMode, TargetSessionAttrs,
};
pub use entra_pg_token::token::{
    BoxFuture, ChainSource, CredentialSource, FnSource, RETRY_AFTER_CAP, RefreshPolicy,
    StaticPassword, Token, TokenSource, TokenSourceError, UserAssignedId,
};
pub use error::{Error, ErrorKind};
pub use pool::Pool;
pub use provider::TokenProvider;
pub use retire::RetirePolicy;
pub use stats::{HealthReport, Stats};
