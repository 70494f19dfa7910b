//! OpenTelemetry's attribute names shared by the pool's and the network's metrics (a
//! leaf, so that neither imports the other).

/// OpenTelemetry's attribute naming the pool.
#[cfg(feature = "metrics")]
pub(crate) const POOL_NAME: &str = "db.client.connection.pool.name";
