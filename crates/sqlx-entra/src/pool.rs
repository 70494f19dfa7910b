//! The pool handle: a `sqlx::PgPool` (it dereferences to one) with the stats and the
//! token provider beside it.

use std::{fmt, ops::Deref, sync::Arc};

use entra_pg_token::TokenProvider;
use sqlx::PgPool;

use crate::{shared::Shared, stats::Stats};

/// A sqlx PostgreSQL pool whose logins use the cached Entra token.
///
/// It dereferences to [`sqlx::PgPool`]: pass `&*pool` (or [`Pool::pg`]) wherever sqlx
/// takes an executor, and clone [`Pool::pg`] into handlers that want a plain `PgPool`.
/// The background watcher that puts new tokens into the pool's connect options ends
/// when the pool is closed ([`Pool::close`], or `PgPool::close` on any clone); a pool
/// dropped without closing keeps it, and its sessions, until the runtime ends.
#[derive(Clone)]
pub struct Pool {
    pub(crate) pg: PgPool,
    pub(crate) shared: Arc<Shared>,
}

impl Pool {
    /// The sqlx pool.
    pub fn pg(&self) -> &PgPool {
        &self.pg
    }

    /// The pool's state and counters.
    pub fn stats(&self) -> Stats {
        Stats::of(&self.shared, self.pg.size(), self.pg.num_idle())
    }

    /// The token provider the pool logs in with (share it with another pool).
    pub fn token_provider(&self) -> &TokenProvider {
        &self.shared.tokens
    }

    /// Closes the pool (as `PgPool::close`) and stops its watcher. The token provider's
    /// refresher goes on while another pool or a handle to the provider uses it.
    pub async fn close(&self) {
        self.pg.close().await;
    }
}

impl Deref for Pool {
    type Target = PgPool;

    fn deref(&self) -> &PgPool {
        &self.pg
    }
}

impl AsRef<PgPool> for Pool {
    fn as_ref(&self) -> &PgPool {
        &self.pg
    }
}

impl fmt::Debug for Pool {
    // The connect options hold the token as their password: never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("size", &self.pg.size())
            .field("idle", &self.pg.num_idle())
            .field("closed", &self.pg.is_closed())
            .field("token_source", &self.shared.tokens.cache().source_name())
            .finish_non_exhaustive()
    }
}
