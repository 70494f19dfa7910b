//! A writer pool and a read-replica pool on one token: `TokenProvider`.
//!
//! ```sh
//! cargo run --example replicas                    # against the emulator, 20 s
//! REPLICAS_SECONDS=60 cargo run --example replicas
//! ```
//!
//! Writes go to the primary, reads to the replica; both pools log in with the same
//! token, refreshed by one refresher, so the identity endpoint sees one call per refresh
//! for both. Against a real server, set the primary as usual (`AZURE_POSTGRESQL_HOST`,
//! `PGHOST` or `DATABASE_URL`) and the replica with `READER_HOST` (and `READER_PORT` if it
//! differs). Against the emulator, the replica is its second front
//! (`ENTRA_EMULATOR_REPLICA_PORT`), and tokens live 10 s so that rotations show.

use std::time::Duration;

use deadpool_entra::Config;
use deadpool_entra_examples::{
    BoxError,
    backend::{self, ConnectOptions},
    init_tracing, seconds_from_env,
};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    deadpool_entra_examples::report(run().await)
}

async fn run() -> Result<(), BoxError> {
    init_tracing("info,deadpool_entra=info");
    let run_for =
        seconds_from_env("REPLICAS_SECONDS", Some(20))?.unwrap_or(Duration::from_secs(20));
    let Some(backend) = backend::connect(ConnectOptions {
        token_lifetime: Duration::from_secs(10),
        max_size: Some(4),
    })
    .await?
    else {
        return Ok(()); // this process hosted the emulator; the example ran in a child
    };
    let writer = backend.pool;
    let tokens = backend.tokens;

    // The replica: the same configuration, another endpoint, the same token provider.
    let mut reader = Config::from_env()?.builder().max_size(4);
    if let Ok(host) = std::env::var("READER_HOST") {
        reader = reader.host(host);
    }
    let port = std::env::var("READER_PORT")
        .or_else(|_| std::env::var("ENTRA_EMULATOR_REPLICA_PORT"))
        .ok();
    if let Some(p) = port {
        reader = reader.port(
            p.parse()
                .map_err(|_| format!("READER_PORT={p}: not a port"))?,
        );
    }
    let reader = reader.token_provider(&tokens).build().await?;
    tracing::info!("writer: {}; reader on the same token", backend.description);

    writer
        .get()
        .await?
        .batch_execute("CREATE TABLE IF NOT EXISTS replica_demo (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())")
        .await?;
    let until = tokio::time::Instant::now() + run_for;
    let (mut writes, mut reads) = (0u64, 0u64);
    while tokio::time::Instant::now() < until {
        writer
            .get()
            .await?
            .execute("INSERT INTO replica_demo DEFAULT VALUES", &[])
            .await?;
        writes += 1;
        let n: i64 = reader
            .get()
            .await?
            .query_one("SELECT count(*) FROM replica_demo", &[])
            .await?
            .get(0);
        reads += 1;
        if reads % 50 == 0 {
            tracing::info!(rows = n, "reading from the replica");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let t = tokens.stats();
    let (w, r) = (writer.stats(), reader.stats());
    println!(
        "{writes} writes, {reads} reads in {} s; one token for both pools: {} identity calls, \
         {} refreshes; writer {} logins ({} retired by token age), reader {} logins ({} retired)",
        run_for.as_secs(),
        t.identity_calls,
        t.refreshes_ok,
        w.logins_ok,
        w.retired_token_age,
        r.logins_ok,
        r.retired_token_age
    );
    writer.close();
    reader.close();
    Ok(())
}
