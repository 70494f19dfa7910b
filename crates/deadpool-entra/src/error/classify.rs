//! A tokio-postgres error from a login, turned into our typed [`Error`]: the server's
//! refusal, a TLS failure, or a network one.

use crate::error::Error;

use super::login_error;

/// Is this a login refused for authentication reasons (SQLSTATE 28000 or 28P01)?
pub(crate) fn is_auth_refusal(e: &tokio_postgres::Error) -> bool {
    e.as_db_error()
        .is_some_and(|db| matches!(db.code().code(), "28000" | "28P01"))
}

/// Turns a tokio-postgres error from a login into our typed error.
pub(crate) fn classify_pg(e: tokio_postgres::Error, endpoint: &str, user: &str) -> Error {
    classify_pg_ref(&e, endpoint, user).unwrap_or(Error::Postgres(e))
}

/// Classifies a login error; `None` when it is none of login, TLS or network.
pub(crate) fn classify_pg_ref(
    e: &tokio_postgres::Error,
    endpoint: &str,
    user: &str,
) -> Option<Error> {
    if let Some(db) = e.as_db_error() {
        return login_error(db.code().code(), db.message(), user).map(Error::Login);
    }
    // Walk the source chain: rustls errors are TLS failures, I/O errors network ones.
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut io_cause = None;
    while let Some(err) = cur {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(Error::Tls {
                endpoint: endpoint.to_owned(),
                cause: tls.to_string(),
            });
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(tls) = io.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                return Some(Error::Tls {
                    endpoint: endpoint.to_owned(),
                    cause: tls.to_string(),
                });
            }
            io_cause.get_or_insert_with(|| io.to_string());
        }
        cur = err.source();
    }
    let text = e.to_string();
    if text.contains("TLS") || text.contains("tls") {
        return Some(Error::Tls {
            endpoint: endpoint.to_owned(),
            cause: io_cause.unwrap_or(text),
        });
    }
    if crate::network::network_cause(e) == Some(crate::network::DeadCause::ReadOnly) {
        return Some(Error::ReadOnly {
            endpoint: endpoint.to_owned(),
        });
    }
    if let Some(cause) = io_cause {
        return Some(Error::Network {
            endpoint: endpoint.to_owned(),
            cause,
        });
    }
    if text.contains("timeout") || text.contains("timed out") {
        return Some(Error::Network {
            endpoint: endpoint.to_owned(),
            cause: text,
        });
    }
    None
}
