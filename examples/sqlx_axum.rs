//! An axum service on a sqlx pool that logs in with Entra tokens (`sqlx-entra`).
//!
//! ```sh
//! cargo run --example sqlx_axum            # against an in-process emulator
//! curl -s localhost:3000/healthz
//! curl -s -XPOST localhost:3000/notes -H 'content-type: application/json' -d '{"body":"hi"}'
//! curl -s localhost:3000/notes
//! ```
//!
//! With `AZURE_POSTGRESQL_HOST` (or `PGHOST`, `DATABASE_URL`) set, it uses that server and
//! the credential the environment provides. `PORT` sets the listening port (default 3000,
//! on 127.0.0.1; `BIND=0.0.0.0` in a container).

use deadpool_entra_examples::{
    BoxError,
    backend::{self, ConnectOptions},
    init_tracing, shutdown_signal, sqlx_notes_axum,
};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    deadpool_entra_examples::report(run().await)
}

async fn run() -> Result<(), BoxError> {
    init_tracing("info,deadpool_entra=info");
    if backend::configured_server_var().is_none() {
        // No server configured: this process hosts the emulator and runs the service
        // again as a child with the emulator's environment.
        return backend::host_emulator(ConnectOptions::default()).await;
    }

    // The whole production path: the configuration and the credential from the
    // environment, the first token fetched and the first login made before this returns.
    let pool = sqlx_entra::PoolBuilder::from_env()?.build().await?;
    sqlx_notes_axum::migrate(&pool).await?;

    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = tokio::net::TcpListener::bind(format!("{bind}:{port}")).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, sqlx_notes_axum::router(pool.pg().clone()))
        .with_graceful_shutdown(shutdown_signal())
        .await?;

    tracing::info!("shutting down: closing the pool");
    pool.close().await;
    Ok(())
}
