//! The checkout context: what a `Pool::get` carries across deadpool's `Connect` and
//! hook boundaries, whose signatures cannot. deadpool runs `create` and `post_create`
//! inside the task that called `get`, so a task-local ([`GET_CONTEXT`]) holds who asked,
//! the login's record for `post_create`, and a typed error that `Connect` had to squeeze
//! into a `tokio_postgres::Error` (deadpool-postgres' `Connect` returns that type): the
//! stand-in errors made here carry no information but a key to look the typed one up.

use std::{cell::Cell, net::IpAddr};

use tokio::time::Instant;
use tokio_postgres::{Config as PgConfig, Error as PgError};

use crate::error::Error;

/// What a login records for the `post_create` hook that follows it in the same task.
#[derive(Clone, Copy)]
pub(crate) struct LoginRecord {
    pub(crate) token_deadline: Option<Instant>,
    pub(crate) created: Instant,
    /// The server address it logged in to (`None`: tokio-postgres chose among several).
    pub(crate) addr: Option<IpAddr>,
    /// The network suspicion epoch when it logged in (it is as fresh as a check then).
    pub(crate) epoch: u64,
}

/// Who asked for a login.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Origin {
    /// A caller's checkout: the caller waits for it.
    #[default]
    Checkout,
    /// The pool's own background work (spares, the `min_connections` floor, prewarming).
    Background,
}

/// Per-`Pool::get` context. deadpool runs `create` and `post_create` inside the task that
/// called `get`, so a task-local carries facts across the `Connect` boundary, whose
/// signature cannot.
///
/// Small on purpose (the rare login record and stashed error are boxed): every checkout
/// carries it, and the task-local moves it in and out of its slot on every poll.
#[derive(Default)]
pub(crate) struct GetContext {
    login: Cell<Option<Box<LoginRecord>>>,
    /// A typed error that `Connect` had to squeeze into a `tokio_postgres::Error`.
    error: Cell<Option<Box<Error>>>,
    /// Set by the caller: log in even while logins fail or no token is valid (the caller
    /// has waited long enough for an idle session).
    pub(crate) login_now: Cell<bool>,
    /// Set by `Connect`: it declined to log in, because logins are failing or no token is
    /// valid while the pool has sessions; the caller should wait for an idle one.
    pub(crate) declined: Cell<bool>,
    /// Who asked.
    pub(crate) origin: Cell<Origin>,
    /// When the checkout (or this attempt of it) began: the `pre_recycle` hook judges
    /// whether a connection is due at this time rather than read the clock again (a
    /// connection that falls due while the checkout waits for it serves this one request
    /// and retires at the next checkout).
    pub(crate) began: Option<Instant>,
}

impl GetContext {
    /// A context for a checkout by `origin` that began at `began`.
    #[inline]
    pub(crate) fn new(origin: Origin, login_now: bool, began: Option<Instant>) -> Self {
        Self {
            login_now: Cell::new(login_now),
            origin: Cell::new(origin),
            began,
            ..Self::default()
        }
    }

    /// Records the login that made the connection, for `post_create`.
    #[inline]
    pub(crate) fn record_login(&self, record: LoginRecord) {
        self.login.set(Some(Box::new(record)));
    }

    /// The login recorded since the last call.
    #[inline]
    pub(crate) fn take_login(&self) -> Option<LoginRecord> {
        self.login.take().map(|r| *r)
    }

    /// The typed error stashed since the last call.
    #[inline]
    pub(crate) fn take_error(&self) -> Option<Error> {
        self.error.take().map(|e| *e)
    }
}

tokio::task_local! {
    pub(crate) static GET_CONTEXT: GetContext;
}

pub(crate) fn stash(e: Error) {
    let _ = GET_CONTEXT.try_with(|c| c.error.set(Some(Box::new(e))));
}

/// A `tokio_postgres::Error` stands in for a typed error stashed in [`GET_CONTEXT`];
/// `tokio_postgres::Error` has no public constructor, a config parse failure is the
/// cheapest way to make one. Its text says what happened for callers of the inner pool.
pub(crate) fn stand_in_error() -> PgError {
    "deadpool_entra_token_unavailable=see-the-deadpool-entra-error"
        .parse::<PgConfig>()
        .expect_err("an unknown option never parses")
}

const WRONG_ROLE_KEY: &str = "deadpool_entra_wrong_server_role";

/// The `tokio_postgres::Error` that stands in for [`Error::WrongServerRole`] (stashed);
/// [`is_wrong_role`] knows it.
pub(crate) fn wrong_role_stand_in() -> PgError {
    format!("{WRONG_ROLE_KEY}=see-the-deadpool-entra-error")
        .parse::<PgConfig>()
        .err()
        .unwrap_or_else(stand_in_error)
}

/// Whether `e` stands for servers in the wrong role: as with a read-only server for
/// read-write, another login later (after a failover) may well find one that fits.
pub(crate) fn is_wrong_role(e: &PgError) -> bool {
    std::error::Error::source(e).is_some_and(|s| s.to_string().contains(WRONG_ROLE_KEY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wrong_role_stand_in_is_known_and_no_other_error_is() {
        assert!(is_wrong_role(&wrong_role_stand_in()));
        assert!(!is_wrong_role(&stand_in_error()));
    }
}
