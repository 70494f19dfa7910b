//! The workload: what one request does, and the task loop that drives a pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

use crate::metrics::{Slots, record};
use crate::pools::{Checkout, PoolUnderTest, ReqError, classify_query_error};
use clap::ValueEnum;
use serde::Serialize;

/// What each request runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum QueryKind {
    /// `SELECT 1`.
    Select1,
    /// A primary-key read from a 10,000-row table.
    PointRead,
    /// An update and an insert in one transaction.
    WriteTxn,
    /// No query: check out and return at once, so that the pool's own checkout cost is
    /// all the client does (no server work per request).
    None,
}

/// Rows in the point-read table.
pub const ITEMS: i32 = 10_000;

/// Schema for `point-read` and `write-txn` (idempotent). Run once through one pool.
pub const SCHEMA: &str = "\
CREATE TABLE IF NOT EXISTS churn_items (id integer PRIMARY KEY, v bigint NOT NULL DEFAULT 0, name text NOT NULL);
INSERT INTO churn_items (id, name) SELECT g, 'item ' || g FROM generate_series(1, 10000) AS g ON CONFLICT (id) DO NOTHING;
CREATE TABLE IF NOT EXISTS churn_log (id bigserial PRIMARY KEY, item integer NOT NULL, at timestamptz NOT NULL DEFAULT now());
GRANT ALL ON churn_items, churn_log TO PUBLIC;
GRANT ALL ON SEQUENCE churn_log_id_seq TO PUBLIC;";

/// How each task behaves.
#[derive(Debug, Clone, Copy)]
pub struct Workload {
    /// The query.
    pub query: QueryKind,
    /// Pause between requests.
    pub think: Duration,
    /// Time the connection is held after the query.
    pub hold: Duration,
    /// Idle then burst: every task makes one request at each multiple of this interval
    /// (all tasks at once), and is idle in between; `think` is then ignored.
    pub burst_every: Option<Duration>,
}

/// Runs one query on a checked-out client.
pub async fn run_query(client: &mut Checkout, q: QueryKind) -> Result<(), ReqError> {
    match client {
        Checkout::Deadpool(c) => run_on_deadpool(c, q)
            .await
            .map_err(|e| classify_query_error(&e)),
        Checkout::Sqlx(c) => run_on_sqlx(c, q)
            .await
            .map_err(|e| crate::pools::sqlx::classify_sqlx_query_error(&e)),
    }
}

/// The query on a deadpool-postgres client (prepared statements, cached per connection).
async fn run_on_deadpool(
    client: &mut deadpool_postgres::Client,
    q: QueryKind,
) -> Result<(), tokio_postgres::Error> {
    match q {
        QueryKind::Select1 => {
            let stmt = client.prepare_cached("SELECT 1").await?;
            client.query_one(&stmt, &[]).await?;
        }
        QueryKind::PointRead => {
            let id: i32 = rand::rng().random_range(1..=ITEMS);
            let stmt = client
                .prepare_cached("SELECT v, name FROM churn_items WHERE id = $1")
                .await?;
            client.query_one(&stmt, &[&id]).await?;
        }
        QueryKind::WriteTxn => {
            let id: i32 = rand::rng().random_range(1..=ITEMS);
            let tx = client.transaction().await?;
            let up = tx
                .prepare_cached("UPDATE churn_items SET v = v + 1 WHERE id = $1")
                .await?;
            tx.execute(&up, &[&id]).await?;
            let ins = tx
                .prepare_cached("INSERT INTO churn_log (item) VALUES ($1)")
                .await?;
            tx.execute(&ins, &[&id]).await?;
            tx.commit().await?;
        }
        QueryKind::None => {}
    }
    Ok(())
}

/// The same queries on a sqlx connection (sqlx prepares and caches them per connection).
async fn run_on_sqlx(
    conn: &mut ::sqlx::pool::PoolConnection<::sqlx::Postgres>,
    q: QueryKind,
) -> Result<(), ::sqlx::Error> {
    match q {
        QueryKind::Select1 => {
            ::sqlx::query("SELECT 1").fetch_one(&mut **conn).await?;
        }
        QueryKind::PointRead => {
            let id: i32 = rand::rng().random_range(1..=ITEMS);
            ::sqlx::query("SELECT v, name FROM churn_items WHERE id = $1")
                .bind(id)
                .fetch_one(&mut **conn)
                .await?;
        }
        QueryKind::WriteTxn => {
            let id: i32 = rand::rng().random_range(1..=ITEMS);
            let mut tx = ::sqlx::Connection::begin(&mut **conn).await?;
            ::sqlx::query("UPDATE churn_items SET v = v + 1 WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            ::sqlx::query("INSERT INTO churn_log (item) VALUES ($1)")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        QueryKind::None => {}
    }
    Ok(())
}

/// One task: requests until `deadline` or until the pool's request budget is spent.
/// When `slots` is `None` nothing is recorded (warm-up).
pub async fn task_loop(
    i: usize,
    pool: Arc<dyn PoolUnderTest>,
    slots: Option<Slots>,
    deadline: Instant,
    budget: Option<Arc<AtomicI64>>,
    w: Workload,
) {
    loop {
        if Instant::now() >= deadline {
            return;
        }
        if let Some(every) = w.burst_every {
            let wait = until_next_tick(every);
            if Instant::now() + wait >= deadline {
                tokio::time::sleep_until(deadline).await;
                return;
            }
            tokio::time::sleep(wait).await;
        }
        if let Some(b) = &budget
            && b.fetch_sub(1, Ordering::Relaxed) <= 0
        {
            return;
        }
        let t0 = Instant::now();
        let mut in_flight = InFlight {
            slots: slots.as_ref(),
            i,
            t0,
            armed: true,
        };
        let got = pool.get().await;
        let t1 = Instant::now();
        match got {
            Err(e) => {
                in_flight.armed = false;
                if let Some(s) = &slots {
                    let mut s = s.lock(i);
                    s.request(t1 - t0);
                    s.checkouts += 1;
                    record(&mut s.checkout, t1 - t0);
                    record(&mut s.win_checkout, t1 - t0);
                    s.error(&e.kind, &e.message);
                }
                // Do not spin on a failing pool.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Ok(mut client) => {
                let waited = pool.logged_in_during(&client, t0);
                let r = run_query(&mut client, w.query).await;
                let t2 = Instant::now();
                in_flight.armed = false;
                if !w.hold.is_zero() {
                    tokio::time::sleep(w.hold).await;
                }
                drop(client);
                if let Some(s) = &slots {
                    let mut s = s.lock(i);
                    s.request(t2 - t0);
                    s.checkouts += 1;
                    record(&mut s.checkout, t1 - t0);
                    record(&mut s.win_checkout, t1 - t0);
                    if waited {
                        s.waited_for_login += 1;
                        record(&mut s.login_checkout, t1 - t0);
                    }
                    match r {
                        Ok(()) => {
                            s.ok += 1;
                            record(&mut s.query, t2 - t1);
                        }
                        Err(ReqError { kind, message }) => {
                            s.error(&kind, &message);
                        }
                    }
                }
            }
        }
        if !w.think.is_zero() && w.burst_every.is_none() {
            tokio::time::sleep(w.think).await;
        }
    }
}

/// A request in flight. Its task is aborted when the request outlives its segment's hard
/// stop (a session whose packets are dropped can hang for the 15 minutes of TCP's
/// retransmissions); dropping it then counts the request as failed (abandoned), with the
/// time it had run, so that a hung request is neither lost from the report nor keeps the
/// run alive.
struct InFlight<'a> {
    slots: Option<&'a Slots>,
    i: usize,
    t0: Instant,
    armed: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let (true, Some(slots)) = (self.armed, self.slots) {
            let mut s = slots.lock(self.i);
            s.request(self.t0.elapsed());
            s.abandoned += 1;
            s.error(
                ABANDONED,
                "still in flight at its segment's hard stop (2 s after the segment's end): abandoned",
            );
        }
    }
}

/// The error kind of an abandoned request.
pub const ABANDONED: &str = "abandoned-in-flight";

/// Time until the next multiple of `every` on the wall clock, which all tasks share (at
/// least a millisecond, so that one task does not fire twice in one tick).
fn until_next_tick(every: Duration) -> Duration {
    let every_ms = every.as_millis().max(1);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let wait = every_ms - now_ms % every_ms;
    Duration::from_millis(u64::try_from(wait.max(1)).unwrap_or(u64::MAX))
}
