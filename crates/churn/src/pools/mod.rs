//! The pools under test, behind one trait so the workload engine drives them alike.
//!
//! The deadpool pools hand out `deadpool_postgres::Client`s, the sqlx pools sqlx
//! connections ([`Checkout`]); the workload runs the same queries on either.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::ValueEnum;
use deadpool_postgres::{PoolError, TimeoutType};
use futures_util::future::BoxFuture;
use serde::Serialize;
use tokio::time::Instant;

pub mod mi;
pub mod ours;

pub mod plain;
pub mod rebuild;
pub mod sqlx;

/// The pools under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PoolKind {
    /// `deadpool-entra`.
    Ours,
    /// Plain `deadpool-postgres`, static password, no rotation.
    Baseline,
    /// `deadpool-postgres` asking the identity endpoint for a token on every connect.
    PerConnect,
    /// `deadpool-postgres` rebuilt on a timer with a fresh token.
    Rebuild,
    /// `sqlx-entra`: a sqlx pool on the same token layer.
    SqlxOurs,
    /// Plain sqlx, static password, no rotation: `sqlx-ours`' baseline.
    SqlxBaseline,
}

impl PoolKind {
    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            PoolKind::Ours => "ours",
            PoolKind::Baseline => "baseline",
            PoolKind::PerConnect => "per-connect",
            PoolKind::Rebuild => "rebuild",
            PoolKind::SqlxOurs => "sqlx-ours",
            PoolKind::SqlxBaseline => "sqlx-baseline",
        }
    }

    /// The pool this one's ratios are taken against: plain sqlx for the sqlx pools,
    /// plain deadpool-postgres for the others.
    pub fn baseline(self) -> PoolKind {
        match self {
            PoolKind::SqlxOurs | PoolKind::SqlxBaseline => PoolKind::SqlxBaseline,
            _ => PoolKind::Baseline,
        }
    }
}

/// A checked-out connection of either kind of pool.
pub enum Checkout {
    /// From a deadpool-postgres pool (ours, baseline, per-connect, rebuild).
    Deadpool(deadpool_postgres::Client),
    /// From a sqlx pool.
    Sqlx(::sqlx::pool::PoolConnection<::sqlx::Postgres>),
}

/// The pools `churn matrix` compares, in its first order: the baseline, ours, and the
/// control (per-connect, which warm is plain deadpool-postgres).
pub const MATRIX_POOLS: [PoolKind; 3] = [PoolKind::Baseline, PoolKind::Ours, PoolKind::PerConnect];

/// A checkout or query failure, classified for reports.
#[derive(Debug, Clone)]
pub struct ReqError {
    /// Short stable kind, e.g. `timeout-wait`, `token-expired` (ours: `Error::kind`), `query-closed`.
    pub kind: String,
    /// The error's text (never holds a token: tokens are only ever sent, not echoed).
    pub message: String,
}

/// Counters a pool keeps about itself (cumulative since it was built).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PoolCounters {
    /// Successful logins (connections created).
    pub logins: u64,
    /// Failed logins.
    pub login_failures: u64,
    /// Token refreshes (ours: background refreshes; per-connect: one per login; rebuild: rebuilds).
    pub token_refreshes: u64,
    /// Token fetches that failed.
    pub token_refresh_failures: u64,
    /// Calls this pool made to the identity endpoint.
    pub identity_calls: u64,
    /// Connections retired, by reason.
    pub retirements: BTreeMap<String, u64>,
    /// Logins that had to wait for a token (ours only; `None` for the others).
    pub logins_waited_for_token: Option<u64>,
}

/// Occupancy of a pool.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Occupancy {
    /// Connections open.
    pub size: usize,
    /// Idle connections.
    pub available: usize,
    /// Callers waiting for a connection.
    pub waiting: usize,
}

impl From<deadpool_postgres::Status> for Occupancy {
    fn from(s: deadpool_postgres::Status) -> Self {
        Occupancy {
            size: s.size,
            available: s.available,
            waiting: s.waiting,
        }
    }
}

/// A pool under test.
pub trait PoolUnderTest: Send + Sync {
    /// Which pool this is.
    fn kind(&self) -> PoolKind;
    /// Checks a client out.
    fn get(&self) -> BoxFuture<'_, Result<Checkout, ReqError>>;
    /// Cumulative counters.
    fn counters(&self) -> PoolCounters;
    /// Current occupancy.
    fn occupancy(&self) -> Occupancy;
    /// Closes the pool and stops its background tasks.
    fn close(&self);
    /// Pool-specific details for the JSON output (ours: the library's stats snapshot).
    fn extra(&self) -> Option<serde_json::Value> {
        None
    }
    /// Whether the checkout that started at `t0` and returned `client` waited for a
    /// login. By default: deadpool created the object during the checkout (every
    /// creation of a plain deadpool-postgres pool is a login).
    fn logged_in_during(&self, client: &Checkout, t0: Instant) -> bool {
        match client {
            Checkout::Deadpool(c) => created_during(c, t0),
            // sqlx does not say whether an acquire opened the connection.
            Checkout::Sqlx(_) => false,
        }
    }
}

/// Whether deadpool created `client`'s object during the checkout that began at `t0`.
pub fn created_during(client: &deadpool_postgres::Client, t0: Instant) -> bool {
    let m = deadpool_postgres::Object::metrics(client);
    m.recycle_count == 0 && m.created >= t0.into_std()
}

/// What the three `deadpool-postgres` pools need to reach the server.
#[derive(Clone)]
pub struct ServerSettings {
    /// Host name (also the TLS server name).
    pub host: String,
    /// Port of the TLS front.
    pub port: u16,
    /// Database.
    pub dbname: String,
    /// Maximum pool size.
    pub max_size: usize,
    /// Checkout wait timeout.
    pub wait_timeout: Duration,
    /// TLS connector (rustls, CA of the server, `SslMode::Require`).
    pub tls: tokio_postgres_rustls::MakeRustlsConnect,
}

/// A rustls client configuration trusting `ca` (PEM), with the aws-lc-rs provider chosen
/// explicitly (no process-wide default is installed).
pub fn tls_from_ca(ca: &Path) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca)
        .map_err(|e| format!("cannot read CA file {}: {e}", ca.display()))?
    {
        let cert = cert.map_err(|e| format!("bad certificate in {}: {e}", ca.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("bad certificate in {}: {e}", ca.display()))?;
    }
    tls_with_roots(roots)
}

/// A rustls client configuration trusting `roots`.
pub fn tls_with_roots(
    roots: rustls::RootCertStore,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS configuration: {e}"))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// Classifies a `deadpool_postgres` checkout error.
pub fn classify_pool_error(e: &PoolError) -> ReqError {
    let kind = match e {
        PoolError::Timeout(TimeoutType::Wait) => "timeout-wait".to_string(),
        PoolError::Timeout(TimeoutType::Create) => "timeout-create".to_string(),
        PoolError::Timeout(TimeoutType::Recycle) => "timeout-recycle".to_string(),
        PoolError::Backend(pg) => format!("login-{}", classify_pg(pg)),
        PoolError::Closed => "closed".to_string(),
        PoolError::NoRuntimeSpecified => "no-runtime".to_string(),
        PoolError::PostCreateHook(_) => "post-create-hook".to_string(),
    };
    ReqError {
        kind,
        message: e.to_string(),
    }
}

/// Classifies a `tokio_postgres` error: `token-expired`, `sqlstate-XXXXX`, `closed`, `io`, ...
pub fn classify_pg(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let msg = db.message().to_ascii_lowercase();
        if msg.contains("expired") {
            return "token-expired".into();
        }
        if msg.contains("audience") {
            return "token-audience".into();
        }
        return format!("sqlstate-{}", db.code().code());
    }
    if e.is_closed() {
        return "closed".into();
    }
    let text = e.to_string().to_ascii_lowercase();
    if text.contains("timed out") || text.contains("timeout") {
        "timeout".into()
    } else if text.contains("tls") || text.contains("certificate") {
        "tls".into()
    } else if text.contains("connection") || text.contains("io") {
        "io".into()
    } else {
        "other".into()
    }
}

/// A query error classified for reports.
pub fn classify_query_error(e: &tokio_postgres::Error) -> ReqError {
    ReqError {
        kind: format!("query-{}", classify_pg(e)),
        message: e.to_string(),
    }
}
