//! Whether logins are succeeding: a failed login pauses voluntary retirements (a
//! replacement would fail too) and makes checkouts wait for a session rather than
//! queue behind failing logins; an unreachable server only spaces the trials.

use std::{sync::Mutex, time::Duration};

use tokio::time::Instant;

/// How a login ended, for [`LoginHealth`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    /// Logged in.
    Ok,
    /// Refused (token, role, permission, TLS) or failed for a reason that another login
    /// now would most likely meet too.
    Refused,
    /// Could not reach a usable server (timeout, reset, refused connection, a read-only
    /// server when a writer is wanted): the address may have moved, and another login,
    /// to where the name points now, may well work.
    Unreachable,
}

/// The shortest gap between two checkout logins while logins fail to reach the server:
/// after a failover the first one that reaches the new primary ends the failure, and no
/// login storm hits a server that refuses connections.
pub const UNREACHABLE_TRIAL_GAP: Duration = Duration::from_millis(250);

/// Whether logins are succeeding: any failed login pauses voluntary retirements until a
/// login succeeds again, so that the pool never trades a working session for a failing
/// login. A refusal also makes checkouts wait for a session rather than log in; a login
/// that could not reach the server does not (a failover moved it: logging in again is
/// how the pool gets there), but such logins are spaced by [`UNREACHABLE_TRIAL_GAP`].
pub struct LoginHealth {
    state: Mutex<LoginState>,
}

struct LoginState {
    failing_since: Option<Instant>,
    /// Since when refusals are part of the current failure.
    refused_since: Option<Instant>,
    /// When the next checkout login may be tried while logins are unreachable.
    next_trial: Option<Instant>,
    ok_since: Instant,
    /// Whether any login of this pool has succeeded (before that, a failure is most
    /// likely the configuration's, and is reported at once).
    ever_ok: bool,
}

impl LoginHealth {
    /// Logins counted as succeeding since `now` (none tried yet).
    pub fn new(now: Instant) -> Self {
        Self {
            state: Mutex::new(LoginState {
                failing_since: None,
                refused_since: None,
                next_trial: None,
                ok_since: now,
                ever_ok: false,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LoginState> {
        crate::sync::lock(&self.state)
    }

    /// A login succeeded at `now`.
    pub fn succeeded(&self, now: Instant) {
        let mut s = self.state();
        s.refused_since = None;
        s.next_trial = None;
        s.ever_ok = true;
        if let Some(since) = s.failing_since.take() {
            s.ok_since = now;
            drop(s);
            tracing::info!(
                target: "deadpool_entra",
                failed_for_secs = now.saturating_duration_since(since).as_secs_f64(),
                "logins succeed again; retirements resume"
            );
        }
    }

    /// A login was refused (or was cut off) at `now`.
    pub fn failed(&self, now: Instant) {
        self.record_failure(now, LoginOutcome::Refused);
    }

    fn record_failure(&self, now: Instant, outcome: LoginOutcome) {
        let mut s = self.state();
        if outcome == LoginOutcome::Refused {
            s.refused_since.get_or_insert(now);
        }
        if s.failing_since.is_none() {
            s.failing_since = Some(now);
            drop(s);
            tracing::warn!(
                target: "deadpool_entra",
                unreachable = outcome == LoginOutcome::Unreachable,
                "a login failed; connections due for retirement keep serving until a login succeeds"
            );
        }
    }

    /// Records a login's outcome at `now`.
    pub fn record(&self, outcome: LoginOutcome, now: Instant) {
        match outcome {
            LoginOutcome::Ok => self.succeeded(now),
            o => self.record_failure(now, o),
        }
    }

    /// Since when logins have been succeeding (`None`: failing now).
    pub fn ok_since(&self) -> Option<Instant> {
        let s = self.state();
        s.failing_since.is_none().then_some(s.ok_since)
    }

    /// Since when logins have been failing (`None`: they succeed).
    pub fn failing_since(&self) -> Option<Instant> {
        self.state().failing_since
    }

    /// Whether logins fail only to reach the server (no refusal among the failures) after
    /// the pool has logged in before: a partition or a failover in progress, which a
    /// checkout with no session to wait for rides out by waiting for a trial login to get
    /// through (up to its wait timeout) instead of failing at once. Before the first
    /// successful login, a failure is reported at once: it is most likely the
    /// configuration (a wrong host or port).
    pub fn outage(&self) -> bool {
        let s = self.state();
        s.ever_ok && s.failing_since.is_some() && s.refused_since.is_none()
    }

    /// Whether a checkout that needs a login should wait for a session instead, at
    /// `now`: while logins are refused, always; while they only fail to reach the server,
    /// all but one checkout login per [`UNREACHABLE_TRIAL_GAP`] (that one is claimed).
    pub fn should_wait(&self, now: Instant) -> bool {
        let mut s = self.state();
        if s.refused_since.is_some() {
            return true;
        }
        if s.failing_since.is_none() {
            return false;
        }
        if s.next_trial.is_some_and(|t| now < t) {
            return true;
        }
        s.next_trial = Some(now + UNREACHABLE_TRIAL_GAP);
        false
    }
}

/// Records a login's outcome in [`LoginHealth`]. A login dropped before its outcome was recorded counts
/// as failed only if it ran for `limit` (cut off by `create_timeout`); one dropped sooner
/// was abandoned by its caller (a request cancelled, a client gone) and says nothing
/// about whether logins work.
pub struct LoginAttempt<'a> {
    health: &'a LoginHealth,
    recorded: bool,
    started: Instant,
    limit: Option<Duration>,
}

impl<'a> LoginAttempt<'a> {
    /// A login starting now, which counts as failed if dropped after `limit`.
    pub fn start(health: &'a LoginHealth, limit: Option<Duration>) -> Self {
        Self {
            health,
            recorded: false,
            started: Instant::now(),
            limit,
        }
    }

    /// Records how the login ended.
    pub fn record(mut self, outcome: LoginOutcome) {
        self.recorded = true;
        self.health.record(outcome, Instant::now());
    }
}

impl Drop for LoginAttempt<'_> {
    fn drop(&mut self) {
        let cut_off = self.limit.is_some_and(|l| self.started.elapsed() >= l);
        if !self.recorded && cut_off {
            self.health.failed(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::Instant;

    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[tokio::test(start_paused = true)]
    async fn login_health_pauses_on_failure_and_resumes_on_success() {
        let t0 = Instant::now();
        let h = LoginHealth::new(t0);
        assert_eq!(h.ok_since(), Some(t0));
        tokio::time::advance(secs(5.0)).await;
        h.failed(Instant::now());
        h.failed(Instant::now() + secs(1.0));
        assert_eq!(h.ok_since(), None);
        assert_eq!(
            h.failing_since(),
            Some(t0 + secs(5.0)),
            "the first failure counts"
        );
        tokio::time::advance(secs(5.0)).await;
        h.succeeded(Instant::now());
        assert_eq!(h.ok_since(), Some(t0 + secs(10.0)));
        assert_eq!(h.failing_since(), None);
        // A success while fine does not move `ok_since`.
        h.succeeded(t0 + secs(20.0));
        assert_eq!(h.ok_since(), Some(t0 + secs(10.0)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_login_cut_off_by_its_limit_counts_as_failed_an_abandoned_one_does_not() {
        let h = LoginHealth::new(Instant::now());
        let limit = Some(secs(10.0));
        // Abandoned by its caller after 1 s: no verdict.
        let a = LoginAttempt::start(&h, limit);
        tokio::time::advance(secs(1.0)).await;
        drop(a);
        assert!(h.failing_since().is_none());
        // Cut off at the create timeout: failed.
        let a = LoginAttempt::start(&h, limit);
        tokio::time::advance(secs(10.0)).await;
        drop(a);
        assert!(h.failing_since().is_some());
        LoginAttempt::start(&h, limit).record(LoginOutcome::Ok);
        assert!(h.failing_since().is_none());
        LoginAttempt::start(&h, None).record(LoginOutcome::Refused);
        assert!(h.failing_since().is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn refusals_make_checkouts_wait_unreachable_logins_only_space_them() {
        let t0 = Instant::now();
        let h = LoginHealth::new(t0);
        assert!(!h.should_wait(t0), "logins work: log in");
        h.record(LoginOutcome::Unreachable, t0);
        assert_eq!(
            h.ok_since(),
            None,
            "an unreachable login pauses retirements too"
        );
        assert!(!h.should_wait(t0), "the first checkout login is a trial");
        assert!(h.should_wait(t0), "the next waits for the gap");
        assert!(h.should_wait(t0 + UNREACHABLE_TRIAL_GAP - secs(0.001)));
        assert!(
            !h.should_wait(t0 + UNREACHABLE_TRIAL_GAP),
            "one trial per gap"
        );
        h.record(LoginOutcome::Refused, t0 + secs(1.0));
        assert!(
            h.should_wait(t0 + secs(5.0)),
            "a refusal: wait for a session"
        );
        h.record(LoginOutcome::Ok, t0 + secs(6.0));
        assert!(!h.should_wait(t0 + secs(6.0)));
        assert!(
            !h.should_wait(t0 + secs(6.0)),
            "no spacing once logins work"
        );
        assert_eq!(h.ok_since(), Some(t0 + secs(6.0)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_is_unreachable_logins_after_a_pool_that_worked() {
        let t0 = Instant::now();
        let h = LoginHealth::new(t0);
        h.record(LoginOutcome::Unreachable, t0);
        assert!(
            !h.outage(),
            "never logged in: a configuration problem, reported at once"
        );
        h.record(LoginOutcome::Ok, t0);
        assert!(!h.outage(), "logins work");
        h.record(LoginOutcome::Unreachable, t0);
        assert!(h.outage());
        h.record(LoginOutcome::Refused, t0);
        assert!(!h.outage(), "a refusal is the request's answer");
        h.record(LoginOutcome::Ok, t0);
        h.record(LoginOutcome::Unreachable, t0);
        assert!(h.outage());
    }
}
