//! A job queue in a PostgreSQL table, consumed with `FOR UPDATE SKIP LOCKED`.
//!
//! A consumer claims the oldest runnable job inside a transaction, does the work while the
//! row stays locked, records the outcome and commits. Other consumers skip the locked row
//! instead of waiting for it. If a consumer dies or its session is killed mid-job (a
//! failover, a retired connection's server going away), the transaction rolls back and the
//! job becomes runnable again: nothing is lost and nothing runs twice to completion.

use std::time::Duration;

use deadpool_entra::{Pool, tokio_postgres};

/// The queue's table and the partial index the claim query uses. Idempotent.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    payload     text NOT NULL,
    state       text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'done', 'failed')),
    attempts    int NOT NULL DEFAULT 0,
    run_after   timestamptz NOT NULL DEFAULT now(),
    last_error  text,
    result      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz
);
CREATE INDEX IF NOT EXISTS jobs_runnable ON jobs (run_after, id) WHERE state = 'queued';
";

/// How many times a job is attempted before it is marked `failed`.
pub const MAX_ATTEMPTS: i32 = 5;

/// A claimed job.
#[derive(Clone, Debug)]
pub struct Job {
    /// Its id.
    pub id: i64,
    /// What to work on.
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: i32,
}

/// What happened to a claimed job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done; its result is stored.
    Done(i64),
    /// The work failed; the job runs again after a delay.
    Retry(i64),
    /// The work failed [`MAX_ATTEMPTS`] times; the job is parked as `failed`.
    Failed(i64),
}

/// A failure to talk to the database (as opposed to a job's own failure).
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// No connection: token, login, network or pool timeout.
    #[error("no connection: {0}")]
    Pool(#[from] deadpool_entra::Error),
    /// A statement failed or the session died.
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
}

impl QueueError {
    /// Whether retrying later can succeed: a lost session, a failover, a serialization
    /// failure or deadlock, too many connections, or any failure to get a connection (the
    /// pool reports token and login trouble there, and refreshes its token in the
    /// background). Syntax errors, missing tables or permissions are not transient.
    pub fn is_transient(&self) -> bool {
        match self {
            QueueError::Pool(_) => true,
            QueueError::Db(e) => {
                if e.is_closed() {
                    return true;
                }
                match e.code() {
                    // No SQLSTATE: an I/O error, the session went away.
                    None => true,
                    Some(code) => {
                        matches!(
                            code.code(),
                            "40001" // serialization_failure
                            | "40P01" // deadlock_detected
                            | "57P01" // admin_shutdown (a failover, a killed session)
                            | "57P02" // crash_shutdown
                            | "57P03" // cannot_connect_now
                            | "53300" // too_many_connections
                            | "55P03" // lock_not_available
                        ) || code.code().starts_with("08")
                    } // connection_exception
                }
            }
        }
    }
}

/// Creates the table and index if needed.
pub async fn migrate(pool: &Pool) -> Result<(), QueueError> {
    pool.get().await?.batch_execute(SCHEMA).await?;
    Ok(())
}

/// Adds `payloads` to the queue in one statement and returns how many were added.
pub async fn enqueue(pool: &Pool, payloads: &[String]) -> Result<u64, QueueError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached("INSERT INTO jobs (payload) SELECT unnest($1::text[])")
        .await?;
    Ok(client.execute(&stmt, &[&payloads]).await?)
}

/// Counts jobs per state: `(queued, done, failed)`.
pub async fn counts(pool: &Pool) -> Result<(i64, i64, i64), QueueError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE state = 'queued'),
                    count(*) FILTER (WHERE state = 'done'),
                    count(*) FILTER (WHERE state = 'failed')
             FROM jobs",
            &[],
        )
        .await?;
    Ok((row.get(0), row.get(1), row.get(2)))
}

/// Claims the oldest runnable job, runs `work` on it while its row is locked and records
/// the outcome, all in one transaction. Returns `Ok(None)` when no job is runnable.
///
/// `work` returns the job's result, or an error message; a failed job is retried after
/// an exponential delay (2, 4, 8, ... seconds) up to [`MAX_ATTEMPTS`].
pub async fn run_one<F, Fut>(pool: &Pool, work: F) -> Result<Option<Outcome>, QueueError>
where
    F: FnOnce(Job) -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let claim = tx
        .prepare_cached(
            "SELECT id, payload, attempts FROM jobs
             WHERE state = 'queued' AND run_after <= now()
             ORDER BY run_after, id
             FOR UPDATE SKIP LOCKED
             LIMIT 1",
        )
        .await?;
    let Some(row) = tx.query_opt(&claim, &[]).await? else {
        tx.commit().await?;
        return Ok(None);
    };
    let job = Job {
        id: row.get(0),
        payload: row.get(1),
        attempts: row.get(2),
    };
    let id = job.id;
    let attempts = job.attempts + 1;
    let outcome = match work(job).await {
        Ok(result) => {
            tx.execute(
                "UPDATE jobs SET state = 'done', attempts = $2, result = $3,
                        last_error = NULL, finished_at = now()
                 WHERE id = $1",
                &[&id, &attempts, &result],
            )
            .await?;
            Outcome::Done(id)
        }
        Err(message) if attempts >= MAX_ATTEMPTS => {
            tx.execute(
                "UPDATE jobs SET state = 'failed', attempts = $2, last_error = $3,
                        finished_at = now()
                 WHERE id = $1",
                &[&id, &attempts, &message],
            )
            .await?;
            Outcome::Failed(id)
        }
        Err(message) => {
            let delay_secs = f64::from(1u32 << attempts.clamp(1, 10));
            tx.execute(
                "UPDATE jobs SET attempts = $2, last_error = $3,
                        run_after = now() + make_interval(secs => $4)
                 WHERE id = $1",
                &[&id, &attempts, &message, &delay_secs],
            )
            .await?;
            Outcome::Retry(id)
        }
    };
    tx.commit().await?;
    Ok(Some(outcome))
}

/// Capped exponential backoff with full jitter for the `attempt`-th consecutive failure
/// (0-based): a random delay in `[0, min(max, base * 2^attempt)]`.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(16)).min(max);
    ceiling.mul_f64(random_unit())
}

/// A number in `[0, 1)` from the standard library's randomly seeded hasher, so the
/// example needs no random number crate.
fn random_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_under_its_cap() {
        for attempt in 0..40 {
            let d = backoff(attempt, Duration::from_millis(100), Duration::from_secs(5));
            assert!(d <= Duration::from_secs(5), "{d:?}");
        }
        assert!(
            backoff(0, Duration::from_millis(100), Duration::from_secs(5))
                <= Duration::from_millis(100)
        );
    }
}
