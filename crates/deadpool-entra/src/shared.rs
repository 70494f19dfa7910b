//! The state one pool's parts share: the pool, its `Connect`, its hooks and its
//! background tasks each hold an `Arc` (or a `Weak`) of [`Shared`]. It sits below them
//! all and imports none of them.

use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};

use tokio::{sync::watch, time::Instant};

use crate::{
    hosts::Hosts,
    network::NetWatch,
    retire::RetirePolicy,
    retire::{self, ConnTable, gate::Gate, health::LoginHealth, spares::Spares, survey::Survey},
    stats::PoolCounters,
    tls::Tls,
};
use entra_pg_token::token::{cache::TokenCache, claims::user_from_token};

/// State shared by the pool, its `Connect`, its hooks and its background tasks.
pub(crate) struct Shared {
    pub(crate) cache: Arc<TokenCache>,
    pub(crate) conns: ConnTable,
    pub(crate) spread: retire::SpreadSequence,
    pub(crate) counters: PoolCounters,
    pub(crate) retire: RetirePolicy,
    pub(crate) create_timeout: Option<Duration>,
    pub(crate) tls: Tls,
    pub(crate) endpoint: String,
    pub(crate) user: Option<String>,
    pub(crate) credential_name: OnceLock<String>,
    pub(crate) initial_name: String,
    pub(crate) closed: watch::Sender<bool>,
    /// Whether logins are succeeding (voluntary retirements pause while they fail).
    pub(crate) logins: LoginHealth,
    /// The login configuration, for the sweeper's probe and background logins.
    pub(crate) pg_config: tokio_postgres::Config,
    /// Wakes the sweeper before its next sweep (a checkout holds a due connection until
    /// a spare is ready).
    pub(crate) sweep_now: Arc<tokio::sync::Notify>,
    /// Connections logged in by the background, for checkouts to take.
    pub(crate) spares: Spares,
    /// Whether the token cache is this pool's own (not a shared [`crate::provider::TokenProvider`]'s):
    /// `close()` stops its refresher then.
    pub(crate) owns_cache: bool,
    /// Connections to keep open ([`Config::min_connections`]).
    pub(crate) min_connections: usize,
    /// Where the server's name points, and which sessions are suspect after one died.
    pub(crate) net: Arc<NetWatch>,
    /// The hosts, as a login tries them when tokio-postgres cannot choose alone.
    pub(crate) hosts: Hosts,
}

impl Shared {
    /// Stops the pool's background work, once deadpool's pool is closed (by
    /// [`Pool::close`], or by deadpool's own `close()` through [`Pool::inner`], which the
    /// sweeper notices): the spares leave, logins in flight find the pool closed, and the
    /// refresher of a token cache of the pool's own stops. A shared provider's refresher
    /// serves other pools and goes on. Idempotent.
    pub(crate) fn shut_down(&self) {
        self.closed.send_replace(true);
        self.counters.metrics.close();
        if self.owns_cache {
            self.cache.shut_down();
        }
        self.spares.clear();
    }

    /// What the pool's sessions (connections and spares) are doing at `now`, given `gate`.
    pub(crate) fn survey(&self, gate: &Gate, now: Instant) -> Survey {
        let mut s = Survey::default();
        self.conns.survey_into(&mut s, gate, now);
        self.spares.survey_into(&mut s, gate, now);
        s
    }

    /// Whether a replacement could log in, as seen at `now`.
    pub(crate) fn gate(&self, now: Instant) -> Gate {
        Gate {
            unconditional: self.retire.retire_without_replacement,
            token: retire::gate::ready_token(&self.cache, now, &self.retire),
            recent: self.cache.recent_tokens(),
            logins_ok_since: self.logins.ok_since(),
        }
    }

    pub(crate) fn user_for_errors(&self) -> String {
        self.user.clone().unwrap_or_else(|| {
            self.cache
                .peek()
                .and_then(|t| user_from_token(t.secret.expose()))
                .unwrap_or_else(|| "<from token>".into())
        })
    }
}
