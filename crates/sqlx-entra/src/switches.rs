//! Which token each session logged in with.
//!
//! sqlx reads the pool's connect options at the start of each login and tells a hook
//! only a session's age, not which options it used. The pool changes the token in those
//! options itself ([`crate::watcher`]), so it records when it did: a session created at
//! `c` logged in with the token in force at `c - window`, where `window` bounds how long
//! a login takes (a login that began before a switch and ended after it used the older
//! token). Erring towards the older token retires a session early (one more login);
//! erring the other way would keep it past its token's expiry, which the server allows.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use arc_swap::ArcSwap;
use entra_pg_token::token::cache::RecentTokens;
use tokio::time::Instant;

/// How many switches are kept: a session older than the oldest is attributed to it (its
/// token is older still, and long expired).
const KEPT: usize = 8;

/// The shortest and longest login window.
pub(crate) const MIN_WINDOW: Duration = Duration::from_millis(250);
pub(crate) const MAX_WINDOW: Duration = Duration::from_secs(5);

/// One change of the token in the connect options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Switch {
    /// When the options began to carry the token.
    pub(crate) at: Instant,
    /// The token's generation in the cache.
    pub(crate) generation: u64,
    /// When it expires (`None`: never, a password).
    pub(crate) expiry: Option<Instant>,
}

/// The history: switches oldest first, and the login window.
#[derive(Clone)]
struct History {
    list: VecDeque<Switch>,
    window: Duration,
}

/// The switches and the login window. Read at every checkout without a lock (a snapshot
/// swapped in whole); written at each switch and each slower login seen, rarely.
pub(crate) struct Switches {
    history: ArcSwap<History>,
}

impl Switches {
    /// The history with its first switch (the token the pool was built with).
    pub(crate) fn new(first: Switch) -> Self {
        Self {
            history: ArcSwap::from_pointee(History {
                list: VecDeque::from([first]),
                window: MIN_WINDOW,
            }),
        }
    }

    /// Records a switch.
    pub(crate) fn record(&self, s: Switch) {
        self.history.rcu(|h| {
            let mut h = History::clone(h);
            if h.list.len() == KEPT {
                h.list.pop_front();
            }
            h.list.push_back(s);
            Arc::new(h)
        });
    }

    /// The token in the options now.
    pub(crate) fn latest(&self) -> Switch {
        *self
            .history
            .load()
            .list
            .back()
            .expect("the history starts with one switch and never empties")
    }

    /// Widens the login window to cover a login that took `took` (four times it, within
    /// [`MIN_WINDOW`], [`MAX_WINDOW`]); it never narrows.
    pub(crate) fn saw_login(&self, took: Duration) {
        let w = took.saturating_mul(4).clamp(MIN_WINDOW, MAX_WINDOW);
        if w <= self.history.load().window {
            return;
        }
        self.history.rcu(|h| {
            let mut h = History::clone(h);
            h.window = h.window.max(w);
            Arc::new(h)
        });
    }

    /// How long a login is taken to last: four times the slowest seen, 250 ms to 5 s.
    pub(crate) fn window(&self) -> Duration {
        self.history.load().window
    }

    /// The token a session created at `created` logged in with.
    pub(crate) fn token_of(&self, created: Instant) -> Switch {
        let h = self.history.load();
        let began = created.checked_sub(h.window).unwrap_or(created);
        h.list
            .iter()
            .rev()
            .find(|s| s.at <= began)
            .or_else(|| h.list.front())
            .copied()
            .unwrap_or_else(|| self.latest())
    }

    /// The latest switches as the retirement gate reads token history: when each token
    /// entered the options, and its expiry, oldest first.
    pub(crate) fn recent(&self) -> RecentTokens {
        let h = self.history.load();
        let mut out: RecentTokens = Default::default();
        let n = out.len();
        let kept = h.list.iter().skip(h.list.len().saturating_sub(n));
        for (slot, s) in out.iter_mut().zip(kept) {
            *slot = Some((s.at, s.expiry));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn switch(at: Instant, generation: u64) -> Switch {
        Switch {
            at,
            generation,
            expiry: Some(at + Duration::from_secs(3600)),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_is_attributed_to_the_token_in_force_when_its_login_began() {
        let t0 = Instant::now();
        let s = Switches::new(switch(t0, 1));
        let t1 = t0 + Duration::from_secs(3000);
        s.record(switch(t1, 2));
        // Created well after the switch: the new token.
        assert_eq!(s.token_of(t1 + Duration::from_secs(1)).generation, 2);
        // Created just after it, inside the login window: the login may have begun
        // before it, so the older token.
        assert_eq!(s.token_of(t1 + Duration::from_millis(100)).generation, 1);
        assert_eq!(s.token_of(t1 - Duration::from_secs(1)).generation, 1);
        // A slow login seen widens the window.
        s.saw_login(Duration::from_millis(500));
        assert_eq!(s.token_of(t1 + Duration::from_millis(1500)).generation, 1);
        assert_eq!(s.token_of(t1 + Duration::from_millis(2100)).generation, 2);
        // Never past the longest window, never narrower again.
        s.saw_login(Duration::from_secs(60));
        assert_eq!(
            s.token_of(t1 + MAX_WINDOW + Duration::from_millis(1))
                .generation,
            2
        );
        s.saw_login(Duration::ZERO);
        assert_eq!(
            s.token_of(t1 + MAX_WINDOW - Duration::from_millis(1))
                .generation,
            1
        );
        assert_eq!(s.latest().generation, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn the_history_keeps_the_latest_switches_and_feeds_the_gate_oldest_first() {
        let t0 = Instant::now();
        let s = Switches::new(switch(t0, 1));
        for g in 2..=12u64 {
            s.record(switch(t0 + Duration::from_secs(g * 100), g));
        }
        // A session older than every kept switch is attributed to the oldest kept.
        assert_eq!(s.token_of(t0).generation, 12 - KEPT as u64 + 1);
        let recent = s.recent();
        let ats: Vec<_> = recent.iter().flatten().map(|(at, _)| *at).collect();
        assert_eq!(ats.len(), recent.len());
        assert!(ats.windows(2).all(|w| w[0] < w[1]), "oldest first");
        assert_eq!(*ats.last().unwrap(), t0 + Duration::from_secs(1200));
    }
}
