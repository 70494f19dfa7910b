//! An actix-web service on a `deadpool-entra` pool: `/healthz` and a small `/notes`
//! resource, the pool shared with `web::Data`.
//!
//! ```sh
//! cargo run --example actix                # against an in-process emulator
//! curl -s localhost:3000/healthz
//! ```
//!
//! With `AZURE_POSTGRESQL_HOST` (or `PGHOST`, `DATABASE_URL`) set, it uses that server and
//! the credential the environment provides instead. `PORT` sets the listening port
//! (default 3000, on 127.0.0.1; set `BIND=0.0.0.0` in a container). actix-web stops
//! gracefully on Ctrl-C or SIGTERM; the pool is closed after the server has stopped.

use deadpool_entra_examples::{
    BoxError,
    backend::{self, ConnectOptions},
    init_tracing, notes, notes_actix,
};

// actix-web runs on a Tokio runtime; its workers get their own threads.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    deadpool_entra_examples::report(run().await)
}

async fn run() -> Result<(), BoxError> {
    init_tracing("info,deadpool_entra=info");
    let Some(backend) = backend::connect(ConnectOptions::default()).await? else {
        return Ok(()); // this process hosted the emulator; the service ran in a child
    };
    tracing::info!("pool ready: {}", backend.description);
    notes::migrate(&backend.pool).await?;

    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1".into());
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = std::net::TcpListener::bind(format!("{bind}:{port}"))?;
    tracing::info!("listening on http://{}", listener.local_addr()?);

    notes_actix::server(backend.pool.clone(), listener, true)?.await?;

    tracing::info!("shutting down: closing the pool");
    backend.pool.close();
    Ok(())
}
