//! An axum service on a `deadpool-entra` pool: `/healthz` and a small `/notes` resource.
//!
//! ```sh
//! cargo run --example axum                 # against an in-process emulator
//! curl -s localhost:3000/healthz
//! curl -s -XPOST localhost:3000/notes -H 'content-type: application/json' -d '{"body":"hi"}'
//! curl -s localhost:3000/notes
//! curl -s localhost:3000/metrics          # Prometheus text: pool and token metrics
//! ADMIN_TOKEN=... cargo run --example axum  # also serves the doctor's report:
//! curl -s localhost:3000/admin/doctor -H "authorization: Bearer $ADMIN_TOKEN"
//! ```
//!
//! With `AZURE_POSTGRESQL_HOST` (or `PGHOST`, `DATABASE_URL`) set, it uses that server and
//! the credential the environment provides instead. `PORT` sets the listening port
//! (default 3000, on 127.0.0.1; set `BIND=0.0.0.0` in a container). Ctrl-C (or SIGTERM)
//! stops accepting requests, lets in-flight ones finish, then closes the pool.

use metrics_exporter_prometheus::PrometheusBuilder;

use deadpool_entra_examples::{
    BoxError,
    backend::{self, ConnectOptions},
    doctor_axum, init_tracing, notes, notes_axum, shutdown_signal,
};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    deadpool_entra_examples::report(run().await)
}

async fn run() -> Result<(), BoxError> {
    init_tracing("info,deadpool_entra=info");
    // Before the pool is built: the pool registers its metrics with the recorder
    // installed then.
    let prometheus = PrometheusBuilder::new().install_recorder()?;
    let Some(backend) = backend::connect(ConnectOptions::default()).await? else {
        return Ok(()); // this process hosted the emulator; the service ran in a child
    };
    tracing::info!("pool ready: {}", backend.description);
    notes::migrate(&backend.pool).await?;

    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("{bind}:{port}")).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);

    // `/admin/doctor` only with a secret to guard it (`ADMIN_TOKEN`).
    let admin = std::env::var("ADMIN_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
        .map(|t| doctor_axum::doctor_router(&t, std::env::vars().collect()));
    notes_axum::serve_with(
        listener,
        backend.pool.clone(),
        Some(prometheus),
        admin,
        shutdown_signal(),
    )
    .await?;

    tracing::info!("shutting down: closing the pool");
    backend.pool.close();
    Ok(())
}
