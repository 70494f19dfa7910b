//! The quickstart: a pool that logs in with Entra ID tokens, under a realistic load,
//! while its tokens rotate.
//!
//! ```sh
//! cargo run --example quickstart
//! ```
//!
//! With nothing configured, it starts the emulator in-process (Entra ID's managed identity
//! endpoint and an Azure-like PostgreSQL on loopback) with tokens that live 20 seconds, so
//! you watch the pool refresh its token and retire connections before their token expires,
//! with zero failed requests. With `AZURE_POSTGRESQL_HOST` (or `PGHOST`, `DATABASE_URL`) set
//! it runs against that server with the credential the environment provides (managed
//! identity, workload identity, Azure CLI, ...) and says which one it used.
//!
//! `QUICKSTART_SECONDS` sets how long the load runs (default 30), `QUICKSTART_TASKS` how
//! many concurrent tasks (default 8).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use deadpool_entra::{Pool, Stats};
use deadpool_entra_examples::{
    BoxError,
    backend::{self, ConnectOptions},
    error_chain, seconds_from_env,
};
use hdrhistogram::Histogram;

const ACCOUNTS: i32 = 50;
const OPENING_BALANCE: i64 = 1_000;
const SCHEMA: &str = "
DROP SCHEMA IF EXISTS deadpool_entra_quickstart CASCADE;
CREATE SCHEMA deadpool_entra_quickstart;
CREATE TABLE deadpool_entra_quickstart.accounts (
    id      int PRIMARY KEY,
    balance bigint NOT NULL CHECK (balance >= 0)
);
CREATE TABLE deadpool_entra_quickstart.events (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account int NOT NULL REFERENCES deadpool_entra_quickstart.accounts (id),
    amount  bigint NOT NULL,
    at      timestamptz NOT NULL DEFAULT now()
);
";

#[tokio::main]
async fn main() -> std::process::ExitCode {
    deadpool_entra_examples::report(run().await)
}

async fn run() -> Result<(), BoxError> {
    // Library logs go to stderr at `warn` unless RUST_LOG says otherwise; this program's
    // own lines go to stdout.
    deadpool_entra_examples::init_tracing("warn");
    let duration = seconds_from_env("QUICKSTART_SECONDS", Some(30))?.unwrap_or_default();
    let tasks: usize = std::env::var("QUICKSTART_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let token_lifetime = Duration::from_secs(20);

    if backend::configured_server_var().is_none() {
        println!(
            "deadpool-entra quickstart\n\n\
             No server configured (AZURE_POSTGRESQL_HOST, PGHOST and DATABASE_URL are unset):\n\
             starting the emulator, Entra ID and an Azure-like PostgreSQL on loopback."
        );
    }
    let Some(backend) = backend::connect(ConnectOptions {
        token_lifetime,
        max_size: Some(tasks),
    })
    .await?
    else {
        // This process hosted the emulator; the quickstart itself ran in a child process.
        return Ok(());
    };
    if !backend::is_emulated() {
        println!(
            "deadpool-entra quickstart\n\n\
             Against your server: it creates a schema of its own, deadpool_entra_quickstart\n\
             (dropped first if it exists, and at the end; your other schemas are not touched).\n\
             The role needs CREATE on the database.\n"
        );
    }
    let pool = backend.pool.clone();
    println!("pool ready: {}", backend.description);
    let first = pool.stats();
    if let Some(secs) = first.token.expires_in_secs {
        println!("first token fetched while the pool was built, valid for {secs:.0} s");
    }

    {
        let client = pool.get().await?;
        client.batch_execute(SCHEMA).await?;
        client
            .execute(
                "INSERT INTO deadpool_entra_quickstart.accounts (id, balance)
                 SELECT g, $1 FROM generate_series(1, $2) g",
                &[&OPENING_BALANCE, &ACCOUNTS],
            )
            .await?;
    }
    println!(
        "workload: {tasks} tasks for {} s on {ACCOUNTS} accounts \
         (70 % reads, 20 % writes, 10 % transfer transactions)\n",
        duration.as_secs()
    );

    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for n in 0..tasks {
        handles.push(tokio::spawn(worker(pool.clone(), n as u64, stop.clone())));
    }
    let watcher = tokio::spawn(watch(pool.clone(), t0, stop.clone()));

    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Tally::new();
    for h in handles {
        total.merge(h.await?);
    }
    watcher.await?;
    let elapsed = t0.elapsed();

    let total_balance: i64 = {
        let client = pool.get().await?;
        client
            .query_one(
                "SELECT sum(balance)::bigint FROM deadpool_entra_quickstart.accounts",
                &[],
            )
            .await?
            .get(0)
    };
    if !backend::is_emulated() {
        // Leave a real server as we found it.
        pool.get()
            .await?
            .batch_execute("DROP SCHEMA deadpool_entra_quickstart CASCADE")
            .await?;
    }

    let s = pool.stats();
    let requests = total.reads + total.writes + total.transfers;
    println!("\nsummary after {:.1} s", elapsed.as_secs_f64());
    println!(
        "  requests         {requests} ({:.0}/s): {} reads, {} writes, {} transfers",
        requests as f64 / elapsed.as_secs_f64(),
        total.reads,
        total.writes,
        total.transfers
    );
    println!("  errors           {}", total.errors);
    println!(
        "  token refreshes  {} ahead of expiry, {} failed (tokens fetched: {}, the first at startup)",
        s.token.refreshes_ok.saturating_sub(1),
        s.token.refreshes_failed,
        s.token.refreshes_ok
    );
    println!(
        "  logins           {} ({} failed), {} waited for a token",
        s.logins_ok, s.logins_failed, s.logins_waited_for_token
    );
    println!(
        "  retirements      token age {}, max lifetime {}, broken {}; {} logins in the background, {} in checkouts",
        s.retired_token_age,
        s.retired_max_lifetime,
        s.retired_broken,
        s.created_in_background,
        s.created_on_checkout
    );
    println!(
        "  checkout         p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        total.checkout.value_at_quantile(0.50) as f64 / 1000.0,
        total.checkout.value_at_quantile(0.99) as f64 / 1000.0,
        total.checkout.max() as f64 / 1000.0
    );
    println!(
        "  balances         {} before, {total_balance} after: every transfer was atomic",
        i64::from(ACCOUNTS) * OPENING_BALANCE
    );
    println!("  credential       {}", pool.credential_name());

    pool.close();
    if total.errors > 0 {
        return Err(format!("{} requests failed", total.errors).into());
    }
    Ok(())
}

/// What one task did.
struct Tally {
    reads: u64,
    writes: u64,
    transfers: u64,
    errors: u64,
    /// Time to get a connection from the pool, in microseconds.
    checkout: Histogram<u64>,
}

impl Tally {
    fn new() -> Self {
        Self {
            reads: 0,
            writes: 0,
            transfers: 0,
            errors: 0,
            checkout: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        }
    }

    fn merge(&mut self, other: Tally) {
        self.reads += other.reads;
        self.writes += other.writes;
        self.transfers += other.transfers;
        self.errors += other.errors;
        self.checkout.add(&other.checkout).expect("same bounds");
    }
}

/// One client task: a mix of reads, writes and transfer transactions until told to stop.
async fn worker(pool: Pool, seed: u64, stop: Arc<AtomicBool>) -> Tally {
    let mut tally = Tally::new();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15 ^ (seed + 1).wrapping_mul(0xA24B_AED4_963E_E407));
    while !stop.load(Ordering::Relaxed) {
        let roll = rng.below(100);
        let result = request(&pool, roll, &mut rng, &mut tally).await;
        match result {
            Ok(()) if roll < 70 => tally.reads += 1,
            Ok(()) if roll < 90 => tally.writes += 1,
            Ok(()) => tally.transfers += 1,
            Err(e) => {
                tally.errors += 1;
                println!("  request failed: {}", error_chain(&*e));
            }
        }
        // A little think time between requests, like a real client.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tally
}

async fn request(
    pool: &Pool,
    roll: u64,
    rng: &mut XorShift,
    tally: &mut Tally,
) -> Result<(), BoxError> {
    let account = rng.below(ACCOUNTS as u64) as i32 + 1;
    let asked = Instant::now();
    let mut client = pool.get().await?;
    tally
        .checkout
        .saturating_record(asked.elapsed().as_micros().max(1) as u64);
    if roll < 70 {
        let stmt = client
            .prepare_cached("SELECT balance FROM deadpool_entra_quickstart.accounts WHERE id = $1")
            .await?;
        let _balance: i64 = client.query_one(&stmt, &[&account]).await?.get(0);
    } else if roll < 90 {
        let stmt = client
            .prepare_cached(
                "INSERT INTO deadpool_entra_quickstart.events (account, amount) VALUES ($1, 0)",
            )
            .await?;
        client.execute(&stmt, &[&account]).await?;
    } else {
        // Move money between two accounts: both updates and the journal entries commit
        // together or not at all. Rows are locked in id order so transfers never deadlock.
        let other = (account % ACCOUNTS) + 1;
        let (from, to) = if rng.below(2) == 0 {
            (account, other)
        } else {
            (other, account)
        };
        let amount = rng.below(50) as i64 + 1;
        let tx = client.transaction().await?;
        tx.execute(
            "SELECT id FROM deadpool_entra_quickstart.accounts WHERE id IN ($1, $2) ORDER BY id FOR UPDATE",
            &[&from, &to],
        )
        .await?;
        let debited = tx
            .execute(
                "UPDATE deadpool_entra_quickstart.accounts SET balance = balance - $2
                 WHERE id = $1 AND balance >= $2",
                &[&from, &amount],
            )
            .await?;
        if debited == 0 {
            // Not enough money: nothing to do, the transaction rolls back on drop.
            return Ok(());
        }
        tx.execute(
            "UPDATE deadpool_entra_quickstart.accounts SET balance = balance + $2 WHERE id = $1",
            &[&to, &amount],
        )
        .await?;
        tx.execute(
            "INSERT INTO deadpool_entra_quickstart.events (account, amount) VALUES ($1, -$3::bigint), ($2, $3)",
            &[&from, &to, &amount],
        )
        .await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Polls the pool's stats once a second and prints a line whenever the token was
/// refreshed (or a refresh failed) and whenever connections were retired.
async fn watch(pool: Pool, t0: Instant, stop: Arc<AtomicBool>) {
    let mut last = pool.stats();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let now = pool.stats();
        let at = t0.elapsed().as_secs_f64();
        print_deltas(at, &last, &now);
        last = now;
    }
}

fn print_deltas(at: f64, last: &Stats, now: &Stats) {
    let refreshed = now.token.refreshes_ok - last.token.refreshes_ok;
    if refreshed > 0 {
        let valid = now
            .token
            .expires_in_secs
            .map_or_else(|| "?".to_string(), |s| format!("{s:.0}"));
        println!("[{at:5.1} s] token refreshed ahead of expiry: new token valid for {valid} s");
    }
    let failed = now.token.refreshes_failed - last.token.refreshes_failed;
    if failed > 0 {
        println!(
            "[{at:5.1} s] token refresh failed {failed}x, retrying with backoff; cached token still used: {}",
            now.token.last_error.as_deref().unwrap_or("(no message)")
        );
    }
    let by_age = now.retired_token_age - last.retired_token_age;
    let by_lifetime = now.retired_max_lifetime - last.retired_max_lifetime;
    let broken = now.retired_broken - last.retired_broken;
    if by_age + by_lifetime + broken > 0 {
        let mut reasons = Vec::new();
        if by_age > 0 {
            reasons.push(format!("{by_age} for token age"));
        }
        if by_lifetime > 0 {
            reasons.push(format!("{by_lifetime} at max lifetime"));
        }
        if broken > 0 {
            reasons.push(format!("{broken} broken"));
        }
        println!(
            "[{at:5.1} s] retired {} connection(s): {}; {} new login(s); pool {} open, {} idle",
            by_age + by_lifetime + broken,
            reasons.join(", "),
            now.logins_ok - last.logins_ok,
            now.pool.size,
            now.pool.available
        );
    }
}

/// A tiny deterministic random number generator, so the example needs no extra crate.
struct XorShift(u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
