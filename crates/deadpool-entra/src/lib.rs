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

// The token layer: its own crate, shared with the sqlx adapter. Its modules keep their
// paths inside this crate, and its public names are this crate's too.
pub use entra_pg_token;
pub use entra_pg_token::cloud;
#[cfg(feature = "serde")]
use entra_pg_token::serde_util;
use entra_pg_token::{sync, time, token};

pub use builder::PoolBuilder;
pub use config::{
    AuthMethod, ChannelBinding, Config, LoadBalanceHosts, SslMode, TargetSessionAttrs,
};
pub use error::{Error, ErrorKind};
pub use pool::Pool;
pub use provider::TokenProvider;
pub use retire::RetirePolicy;
pub use stats::{HealthReport, Stats};
pub use token::{
    BoxFuture, ChainSource, CredentialSource, FnSource, RETRY_AFTER_CAP, RefreshPolicy,
    StaticPassword, Token, TokenSource, TokenSourceError, UserAssignedId,
};

// Short paths inside the crate for the types that moved into modules.
pub(crate) use cloud::DEFAULT_SCOPE;
pub(crate) use error::{ConfigError, LoginError, TimeoutKind, TokenRefusedError};
