//! # entra-emulator
//!
//! Microsoft Entra ID and Azure Database for PostgreSQL on loopback, offline, for tests, demos
//! and benchmarks:
//!
//! - a throwaway PostgreSQL cluster made with the machine's `initdb`/`postgres` (run as the
//!   unprivileged `postgres` user when the process is root);
//! - signed RS256 tokens with Azure's claims, from the App Service managed identity protocol
//!   (`IDENTITY_ENDPOINT` + `IDENTITY_HEADER`), from an Entra authority on loopback HTTPS
//!   (service principals, workload identity) and from `az` and `azd` stand-ins (the
//!   emulator binary itself, see [`standin`]), so that the real `azure_identity`
//!   credentials work unchanged;
//! - an Azure-like PostgreSQL front on TLS that checks the password as a token (signature,
//!   expiry, audience, principal to role) with Azure's error texts, then passes the session
//!   through to the cluster;
//! - faults on demand, counters, and an admin HTTP API.
//!
//! ```no_run
//! # async fn demo() -> Result<(), entra_emulator::Error> {
//! let emu = entra_emulator::Emulator::builder()
//!     .token_lifetime(std::time::Duration::from_secs(60))
//!     .start()
//!     .await?;
//! for (k, v) in emu.env() {
//!     println!("{k}={v}");
//! }
//! emu.faults().set_identity_latency(std::time::Duration::from_secs(1));
//! println!("{:?}", emu.counters());
//! emu.shutdown().await;
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod admin;
mod builder;
mod emulator;
mod entra;
mod environment;
mod error;
mod federation;
mod launch;
mod names;
pub mod network;
mod postgres;
mod runtime;
mod serve;
pub mod standin;
mod state;

pub use admin::ADMIN_API_HELP;
pub use builder::EmulatorBuilder;
pub use emulator::Emulator;
pub use entra::app_certs::ClientCertificate;
pub use entra::apps::{FEDERATION_AUDIENCE, FederatedCredential, ServicePrincipal};
pub use entra::identity::{IdentitySpec, ManagedIdentity};
pub use entra::issued::{AZURE_REFRESH_WINDOW, default_refresh_window};
pub use entra::token::decode_claims;
pub use error::Error;
pub use names::{
    DEFAULT_DATABASE, DEFAULT_IDENTITY, DEFAULT_USER, OSSRDBMS_SCOPE, RESOURCE_GROUP,
    SUBSCRIPTION_ID, TENANT_ID,
};
pub use network::{AZURE_DOMAINS, Network, NetworkCounters, Node, netns};
pub use postgres::cluster::Cluster;
pub use postgres::front::{
    OSSRDBMS_RESOURCE, OSSRDBMS_RESOURCE_CHINA, OSSRDBMS_RESOURCE_US_GOVERNMENT, messages,
};
pub use state::{Counters, FaultSettings, Faults};
