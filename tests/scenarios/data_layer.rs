//! A data layer written for plain `deadpool-postgres`, exactly as an application has it
//! before switching to `deadpool-entra`: it names `deadpool_postgres` types only. The
//! drop-in scenarios run it unchanged against a `deadpool_entra::Pool`.

use deadpool_postgres::GenericClient;

/// Creates the table (idempotent).
pub async fn migrate(client: &deadpool_postgres::Client) -> Result<(), tokio_postgres::Error> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS orders (
                id bigserial PRIMARY KEY,
                customer text NOT NULL,
                amount bigint NOT NULL
            )",
        )
        .await
}

/// Inserts an order and its audit row in one transaction; returns the new id.
pub async fn place_order(
    client: &mut deadpool_postgres::Client,
    customer: &str,
    amount: i64,
) -> Result<i64, tokio_postgres::Error> {
    let tx = client.transaction().await?;
    let insert = tx
        .prepare_cached("INSERT INTO orders (customer, amount) VALUES ($1, $2) RETURNING id")
        .await?;
    let id: i64 = tx.query_one(&insert, &[&customer, &amount]).await?.get(0);
    tx.commit().await?;
    Ok(id)
}

/// Works on anything that is a `GenericClient`: a pooled client or a transaction.
pub async fn total_for<C: GenericClient>(
    client: &C,
    customer: &str,
) -> Result<i64, tokio_postgres::Error> {
    let stmt = client
        .prepare_cached("SELECT COALESCE(SUM(amount), 0)::bigint FROM orders WHERE customer = $1")
        .await?;
    Ok(client.query_one(&stmt, &[&customer]).await?.get(0))
}

/// A transaction that is rolled back leaves nothing behind.
pub async fn abandoned_order(
    client: &mut deadpool_postgres::Client,
    customer: &str,
) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO orders (customer, amount) VALUES ($1, 1000000)",
        &[&customer],
    )
    .await?;
    // Read through the transaction as a GenericClient, then roll back.
    let _inside = total_for(&tx, customer).await?;
    tx.rollback().await
}

/// The session's role, to check who the pool logged in as.
pub async fn current_user(
    client: &deadpool_postgres::Client,
) -> Result<String, tokio_postgres::Error> {
    Ok(client
        .query_one("SELECT current_user::text", &[])
        .await?
        .get(0))
}
