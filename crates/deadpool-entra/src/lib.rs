#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod builder;
mod checkout;
mod cloud;
mod config;
mod connect;
mod error;

mod hosts;
mod metrics;
mod network;
mod otel;
mod pool;
mod provider;
mod retire;
#[cfg(feature = "serde")]
mod serde_util;
mod shared;
mod stats;
mod sync;
mod time;
mod tls;
mod token;

// The crates whose types the public API uses (credentials, `UserAssignedId`), so that a
// user names them through this crate, at the versions it was built with.
pub use azure_core;
pub use azure_identity;
pub use deadpool_postgres;
pub use deadpool_postgres::{
    Client, GenericClient, Hook, HookError, ManagerConfig, Metrics, QueueMode, RecyclingMethod,
    Runtime, Status, Timeouts, Transaction,
};
pub use tokio_postgres;

pub use builder::PoolBuilder;
pub use cloud::{CHINA_SCOPE, US_GOVERNMENT_SCOPE};
pub use config::{
    AuthMethod, ChannelBinding, Config, LoadBalanceHosts, SslMode, TargetSessionAttrs,
};
pub use error::{
    ConfigError, Error, ErrorKind, LoginError, TimeoutKind, TokenError, TokenRefusedError,
};

pub use pool::Pool;
pub use provider::TokenProvider;
pub use retire::RetirePolicy;
pub use stats::{
    ConnectionInfo, Degraded, HealthReport, NetworkStats, PoolStatus, Stats, TokenStats,
};
pub use token::{
    BoxFuture, ChainSource, CredentialSource, DEFAULT_SCOPE, FnSource, RETRY_AFTER_CAP,
    RefreshPolicy, StaticPassword, Token, TokenSource, TokenSourceError, UserAssignedId,
};
