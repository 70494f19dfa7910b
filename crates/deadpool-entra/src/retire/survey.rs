//! What the pool's sessions are doing at one moment (overdue, past their token's
//! expiry), for stats and the sweeper's warnings.

use tokio::time::Instant;

use super::{
    ConnTable, RetirePlan,
    gate::{Decision, Gate, decide},
};

/// The live connections seen at one moment, for stats and the sweeper's warnings.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Survey {
    /// Due for retirement, kept in service until a replacement can log in.
    pub(crate) overdue: usize,
    /// Serving on a session whose login token has expired (the server allows it).
    pub(crate) past_token_expiry: usize,
    /// The earliest expiry among the tokens live sessions logged in with.
    pub(crate) oldest_token_expiry: Option<Instant>,
}

impl Survey {
    /// Counts one session with retirement plan `plan`.
    pub(crate) fn count(&mut self, plan: &RetirePlan, gate: &Gate, now: Instant) {
        if matches!(decide(plan, gate, now), Decision::Overdue(_)) {
            self.overdue += 1;
        }
        if let Some(e) = plan.token_expiry {
            if e <= now {
                self.past_token_expiry += 1;
            }
            self.oldest_token_expiry = Some(self.oldest_token_expiry.map_or(e, |o| o.min(e)));
        }
    }
}

impl ConnTable {
    /// Counts what the live connections are doing at `now`, given `gate`, into `s`.
    pub(crate) fn survey_into(&self, s: &mut Survey, gate: &Gate, now: Instant) {
        let map = self.read();
        for info in map.values().filter(|i| i.alive.strong_count() > 0) {
            s.count(&info.plan, gate, now);
        }
    }
}
