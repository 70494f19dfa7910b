//! The `notes` resource shared by the axum and actix-web examples: its table and queries.
//!
//! The queries are ordinary `deadpool_postgres` code: `pool.get().await?`,
//! `prepare_cached`, `query`. Nothing here knows that logins use Entra tokens; that is the
//! point of the library.

use deadpool_entra::Pool;
use serde::{Deserialize, Serialize};

/// Creates the table if it does not exist yet. Idempotent; run once at startup.
pub const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS notes (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    body       text NOT NULL CHECK (length(body) BETWEEN 1 AND 10000),
    created_at timestamptz NOT NULL DEFAULT now()
)";

/// A stored note, as the API returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// Assigned by the database.
    pub id: i64,
    /// The text, 1 to 10,000 characters.
    pub body: String,
    /// When it was created, RFC 3339 in UTC.
    pub created_at: String,
}

/// The body of `POST /notes`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewNote {
    /// The text, 1 to 10,000 characters.
    pub body: String,
}

/// Why a request on notes failed. The web modules map each case to a status code.
#[derive(Debug, thiserror::Error)]
pub enum NotesError {
    /// No note has this id.
    #[error("note {0} not found")]
    NotFound(i64),
    /// The request is malformed (e.g. an empty body).
    #[error("invalid note: {0}")]
    Invalid(&'static str),
    /// No connection could be had: token, login, network or pool timeout. The library's
    /// message says which and what to do; it never contains a token.
    #[error("database unavailable: {0}")]
    Unavailable(#[from] deadpool_entra::Error),
    /// The query failed on an open connection.
    #[error("database error: {0}")]
    Db(#[from] deadpool_entra::tokio_postgres::Error),
}

// `to_char` keeps the example free of a date-time crate; the format is RFC 3339.
const COLUMNS: &str =
    "id, body, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')";

fn note(row: &deadpool_entra::tokio_postgres::Row) -> Note {
    Note {
        id: row.get(0),
        body: row.get(1),
        created_at: row.get(2),
    }
}

/// Creates the `notes` table if needed.
pub async fn migrate(pool: &Pool) -> Result<(), NotesError> {
    let client = pool.get().await?;
    client.batch_execute(SCHEMA).await?;
    Ok(())
}

/// Inserts a note and returns it.
pub async fn create(pool: &Pool, new: &NewNote) -> Result<Note, NotesError> {
    let body = new.body.trim();
    if body.is_empty() {
        return Err(NotesError::Invalid("body must not be empty"));
    }
    if body.chars().count() > 10_000 {
        return Err(NotesError::Invalid(
            "body must be at most 10,000 characters",
        ));
    }
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!(
            "INSERT INTO notes (body) VALUES ($1) RETURNING {COLUMNS}"
        ))
        .await?;
    let row = client.query_one(&stmt, &[&body]).await?;
    Ok(note(&row))
}

/// Lists the 100 most recent notes, newest first.
pub async fn list(pool: &Pool) -> Result<Vec<Note>, NotesError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM notes ORDER BY id DESC LIMIT 100"
        ))
        .await?;
    Ok(client.query(&stmt, &[]).await?.iter().map(note).collect())
}

/// Fetches one note.
pub async fn get(pool: &Pool, id: i64) -> Result<Note, NotesError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(&format!("SELECT {COLUMNS} FROM notes WHERE id = $1"))
        .await?;
    match client.query_opt(&stmt, &[&id]).await? {
        Some(row) => Ok(note(&row)),
        None => Err(NotesError::NotFound(id)),
    }
}

/// Deletes one note.
pub async fn delete(pool: &Pool, id: i64) -> Result<(), NotesError> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached("DELETE FROM notes WHERE id = $1")
        .await?;
    match client.execute(&stmt, &[&id]).await? {
        0 => Err(NotesError::NotFound(id)),
        _ => Ok(()),
    }
}
