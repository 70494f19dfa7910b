//! A sqlx PostgreSQL pool that logs in to Azure Database for PostgreSQL with Microsoft
//! Entra ID tokens: the same configuration, credential chain, token cache and retirement
//! rule as [deadpool-entra](https://docs.rs/deadpool-entra), on sqlx 0.8.
//!
//! - **Logins** use one cached token, refreshed ahead of expiry by a background task
//!   ([`entra_pg_token::TokenProvider`]); a new token goes into the pool's connect options
//!   (`PgPool::set_connect_options`) once a probe login with it has worked.
//! - **Retirement by token age**: an idle session leaves at checkout (`before_acquire`)
//!   after a newer token is in the options and before its own token expires, spread with
//!   jitter, and only while a replacement can log in. Azure checks a token only at
//!   login, so during an identity outage or while logins are refused, sessions keep
//!   serving past their token's expiry, as a naive pool's would.
//! - **Which token a session has**: sqlx tells a hook only a session's age; the pool
//!   records when it switched tokens, and a session created at `c` is taken to have the
//!   token in force at `c` minus the time a login takes (measured, 250 ms to 5 s).
//! - **TLS** is verify-full by default, with the configuration's root certificate file
//!   (sqlx trusts the public roots as well).
//!
//! ```no_run
//! # async fn f() -> Result<(), sqlx_entra::Error> {
//! // PGHOST, PGDATABASE, ... as for deadpool-entra; the user comes from the token.
//! let pool = sqlx_entra::PoolBuilder::from_env()?.build().await?;
//! let n: i64 = sqlx::query_scalar("SELECT 1::int8").fetch_one(&*pool).await.unwrap();
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod builder;
mod counters;
mod error;
mod hooks;
mod options;
mod pool;
mod proof;
mod shared;
mod stats;
mod switches;
mod watcher;

pub use builder::PoolBuilder;
pub use deadpool_entra::{Config, error::ConfigError};
pub use entra_pg_token;
pub use error::Error;
pub use pool::Pool;
pub use sqlx;
pub use stats::Stats;
