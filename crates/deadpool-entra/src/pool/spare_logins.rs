//! Background logins that become spares: when one may start, and the task that runs it.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use tokio::time::Instant;

use crate::{
    checkout::{GET_CONTEXT, GetContext, Origin},
    connect::connect_with_token,
    retire::{
        gate::Gate,
        health::{LoginAttempt, LoginOutcome},
        spares::Spare,
    },
    shared::Shared,
};

/// Whether a background login may start now: logins are succeeding, a token is ready
/// (valid beyond its retirement margin), and it is not the outgoing one, unless the
/// identity endpoint is failing (then it is the best there is). With no token yet (a
/// lazy pool), the `min_connections` floor's logins fetch the first one.
pub(crate) fn may_log_in(shared: &Shared, gate: &Gate, now: Instant) -> bool {
    if gate.logins_ok_since.is_none() {
        return false;
    }
    // A lazy pool has no token until something asks for one: the floor's logins fetch
    // it (single flight; after a failed fetch, not before its retry delay ends).
    if shared.cache.peek().is_none() {
        return shared.min_connections > 0 && shared.cache.retry_at().is_none_or(|r| now >= r);
    }
    if gate.token.is_none() {
        return false;
    }
    match shared.cache.valid_now() {
        // A password never expires, so it is never outgoing.
        Some(t) => !shared.cache.is_outgoing(&t, now) || shared.cache.failing_since().is_some(),
        None => false,
    }
}

/// Starts `n` background logins; each that succeeds becomes a spare.
pub(crate) fn start(shared: &Arc<Shared>, n: usize) {
    for _ in 0..n {
        shared.spares.in_flight.fetch_add(1, Ordering::AcqRel);
        let shared = shared.clone();
        tokio::spawn(async move {
            let _in_flight = InFlight(shared.clone());
            let limit = shared.create_timeout.unwrap_or(Duration::from_secs(30));
            let context = GetContext::new(Origin::Background, false, None);
            let attempt = LoginAttempt::start(&shared.logins, shared.create_timeout);
            let (result, record) = GET_CONTEXT
                .scope(context, async {
                    let r =
                        tokio::time::timeout(limit, connect_with_token(&shared, &shared.pg_config))
                            .await;
                    (r, GET_CONTEXT.with(GetContext::take_login))
                })
                .await;
            attempt.record(match &result {
                Ok(r) => crate::connect::outcome_of(r),
                Err(_) => LoginOutcome::Refused,
            });
            match (result, record) {
                (Ok(Ok((client, conn))), Some(record)) => {
                    let plan = crate::retire::plan(
                        &shared.retire,
                        record.created,
                        record.token_deadline,
                        shared.spread.next(),
                        rand::random(),
                    );
                    let spare = Spare {
                        client,
                        conn,
                        record,
                        plan,
                    };
                    if !shared.spares.put(spare, &shared.closed) {
                        // The pool closed while it logged in.
                        return;
                    }
                    tracing::debug!(target: "deadpool_entra", "spare connection ready");
                    // A due connection may be waiting for this spare: sweep soon, not at
                    // the next interval, so that a rotation goes at the pace of logins.
                    shared.sweep_now.notify_one();
                }
                (Ok(Err(_)), _) | (Ok(Ok(_)), None) => {
                    tracing::debug!(target: "deadpool_entra", "background login failed");
                }
                (Err(_), _) => {
                    tracing::debug!(target: "deadpool_entra", "background login timed out");
                }
            }
        });
    }
}

/// Counts a background login out however its task ends.
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.spares.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
