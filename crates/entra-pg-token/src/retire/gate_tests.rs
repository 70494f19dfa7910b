//! The retirement gate as a function of the plan, the pool's state and the time.

use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::retire::{RetirePolicy, SpreadSequence, plan};
use crate::token::cache::RECENT_TOKENS;

const LIFE: Duration = Duration::from_secs(30);

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A 30 s token's connections with default policy and no maximum lifetime: the window
/// is `[E - 16.5 s, E - 3 s]` (margin 3 s, spread 13.5 s).
fn token_policy() -> RetirePolicy {
    RetirePolicy {
        max_lifetime: None,
        ..RetirePolicy::default()
    }
}

/// Gate with a valid token that expires at `expiry`, cached at `cached` (and usable
/// since then), logins fine since `t0`.
fn gate_with(t0: Instant, cached: Instant, expiry: Instant) -> Gate {
    let mut recent: RecentTokens = [None; RECENT_TOKENS];
    recent[0] = Some((cached, Some(expiry)));
    Gate {
        unconditional: false,
        token: Some(ReadyToken {
            expiry: Some(expiry),
            usable_since: cached,
        }),
        recent,
        logins_ok_since: Some(t0),
    }
}

/// Retire times (the first moment `decide` says Retire, scanning in 10 ms steps).
fn retire_time(p: &RetirePlan, gate: &Gate, from: Instant, to: Instant) -> Option<Instant> {
    let mut t = from;
    while t <= to {
        if let Decision::Retire(_) = decide(p, gate, t) {
            return Some(t);
        }
        t += Duration::from_millis(10);
    }
    None
}

#[tokio::test(start_paused = true)]
async fn due_connection_stays_while_only_its_own_token_is_cached() {
    let t0 = Instant::now();
    let expiry = t0 + LIFE;
    let p = plan(&token_policy(), t0, Some(expiry), 0.5, 0.5);
    // The refresher has not renewed: the cached token is the connection's own.
    let gate = gate_with(t0, t0, expiry);
    let due = p.token_due().unwrap();
    assert_eq!(decide(&p, &gate, due - secs(0.01)), Decision::Keep);
    assert_eq!(
        decide(&p, &gate, due),
        Decision::Overdue(RetireReason::TokenAge)
    );
    // Past the token's expiry too: the session keeps serving.
    assert_eq!(
        decide(&p, &gate, expiry + secs(60.0)),
        Decision::Overdue(RetireReason::TokenAge)
    );
}

#[tokio::test(start_paused = true)]
async fn due_connection_stays_while_no_token_is_ready() {
    let t0 = Instant::now();
    let expiry = t0 + LIFE;
    let p = plan(&token_policy(), t0, Some(expiry), 0.0, 0.5);
    let gate = Gate {
        token: None,
        ..gate_with(t0, t0 + secs(15.0), t0 + secs(45.0))
    };
    for at in [secs(27.0), secs(31.0), secs(600.0)] {
        assert_eq!(
            decide(&p, &gate, t0 + at),
            Decision::Overdue(RetireReason::TokenAge)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn due_connection_stays_while_logins_fail() {
    let t0 = Instant::now();
    let expiry = t0 + LIFE;
    let p = plan(&token_policy(), t0, Some(expiry), 0.0, 0.5);
    let gate = Gate {
        logins_ok_since: None,
        ..gate_with(t0, t0 + secs(15.0), t0 + secs(45.0))
    };
    assert_eq!(
        decide(&p, &gate, t0 + secs(29.0)),
        Decision::Overdue(RetireReason::TokenAge)
    );
    // Logins work again at 40 s: it leaves within half its window after that.
    let back = t0 + secs(40.0);
    let gate = Gate {
        logins_ok_since: Some(back),
        ..gate
    };
    let t = retire_time(&p, &gate, t0, t0 + secs(120.0)).unwrap();
    assert!(t >= back && t <= back + secs(13.5 / 2.0), "{:?}", t - t0);
}

#[tokio::test(start_paused = true)]
async fn broken_state_never_keeps_a_connection_that_is_not_due() {
    let t0 = Instant::now();
    let p = plan(&token_policy(), t0, Some(t0 + LIFE), 0.3, 0.5);
    let gate = gate_with(t0, t0, t0 + LIFE);
    assert_eq!(decide(&p, &gate, t0 + secs(1.0)), Decision::Keep);
}

#[tokio::test(start_paused = true)]
async fn in_normal_rotation_none_leaves_before_the_newer_token_and_all_leave_before_expiry() {
    // The refresher renews at half-life (15 s), inside the window [13.5 s, 27 s].
    let t0 = Instant::now();
    let expiry = t0 + LIFE;
    let refreshed = t0 + secs(15.0);
    let gate = gate_with(t0, refreshed, refreshed + LIFE);
    let seq = SpreadSequence::new();
    let mut times = Vec::new();
    for _ in 0..8 {
        let p = plan(&token_policy(), t0, Some(expiry), seq.next(), 0.5);
        let t = retire_time(&p, &gate, t0, expiry).expect("retires before expiry");
        assert!(t >= refreshed, "left at {:?}, before the refresh", t - t0);
        assert!(
            t <= expiry - secs(3.0),
            "left at {:?}, inside the margin",
            t - t0
        );
        times.push((t - t0).as_secs_f64());
    }
    // Spread over the 12 s that remain: no quarter of it holds more than 3 of 8.
    times.sort_by(f64::total_cmp);
    for (i, t) in times.iter().enumerate() {
        let inside = times[i..].iter().take_while(|u| **u < t + 3.0).count();
        assert!(inside <= 3, "{times:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn overdue_connections_leave_spread_out_after_an_outage_past_expiry() {
    // The identity endpoint was down from 10 s to 70 s; the new token arrives at 70 s.
    let t0 = Instant::now();
    let expiry = t0 + LIFE;
    let back = t0 + secs(70.0);
    let seq = SpreadSequence::new();
    let plans: Vec<_> = (0..8)
        .map(|_| plan(&token_policy(), t0, Some(expiry), seq.next(), 0.5))
        .collect();
    let outage = Gate {
        token: None,
        ..gate_with(t0, t0, expiry)
    };
    for p in &plans {
        assert_eq!(
            decide(p, &outage, back - secs(0.01)),
            Decision::Overdue(RetireReason::TokenAge)
        );
    }
    let recovered = gate_with(t0, back, back + LIFE);
    let mut times: Vec<f64> = plans
        .iter()
        .map(|p| {
            let t = retire_time(p, &recovered, back - secs(1.0), back + secs(60.0)).unwrap();
            (t - back).as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    // Within half the 13.5 s window after recovery, not all at once.
    assert!(times[0] >= 0.0 && times[7] <= 6.75 + 0.01, "{times:?}");
    assert!(times[7] - times[0] > 3.0, "all at once: {times:?}");
}

#[tokio::test(start_paused = true)]
async fn release_counts_from_the_first_newer_token_not_the_latest() {
    // A connection held through two refreshes: a newer token came at 15 s, another at
    // 45 s. It is due from the first one, not pushed past the second.
    let t0 = Instant::now();
    let expiry = t0 + LIFE;
    let p = plan(&token_policy(), t0, Some(expiry), 0.99, 0.5);
    let mut gate = gate_with(t0, t0 + secs(45.0), t0 + secs(75.0));
    gate.recent[0] = Some((t0, Some(expiry)));
    gate.recent[1] = Some((t0 + secs(15.0), Some(t0 + secs(45.0))));
    gate.recent[2] = Some((t0 + secs(45.0), Some(t0 + secs(75.0))));
    gate.token = Some(ReadyToken {
        expiry: Some(t0 + secs(75.0)),
        usable_since: t0,
    });
    assert_eq!(
        decide(&p, &gate, t0 + secs(46.0)),
        Decision::Retire(RetireReason::TokenAge)
    );
}

#[tokio::test(start_paused = true)]
async fn a_gap_without_a_valid_token_moves_the_release_to_its_end() {
    let t0 = Instant::now();
    let expiry = t0 + LIFE;
    let p = plan(&token_policy(), t0, Some(expiry), 0.5, 0.5);
    let mut gate = gate_with(t0, t0 + secs(15.0), t0 + secs(45.0));
    // The newer token of 15 s expired unused; the next came at 100 s.
    gate.recent[1] = Some((t0 + secs(100.0), Some(t0 + secs(130.0))));
    gate.token = Some(ReadyToken {
        expiry: Some(t0 + secs(130.0)),
        usable_since: t0 + secs(100.0),
    });
    assert_eq!(
        decide(&p, &gate, t0 + secs(100.0)),
        Decision::Overdue(RetireReason::TokenAge)
    );
    let t = retire_time(&p, &gate, t0 + secs(100.0), t0 + secs(200.0)).unwrap();
    assert!(t <= t0 + secs(100.0 + 6.75 + 0.01), "{:?}", t - t0);
}

#[tokio::test(start_paused = true)]
async fn max_lifetime_waits_for_a_usable_token_then_spreads() {
    let policy = RetirePolicy {
        by_token_age: false,
        max_lifetime: Some(Duration::from_secs(60)),
        ..RetirePolicy::default()
    };
    let t0 = Instant::now();
    let seq = SpreadSequence::new();
    let plans: Vec<_> = (0..8)
        .map(|_| plan(&policy, t0, Some(t0 + LIFE), seq.next(), 0.0))
        .collect();
    // No usable token from 50 s to 120 s.
    let outage = Gate {
        token: None,
        ..gate_with(t0, t0, t0 + LIFE)
    };
    assert_eq!(
        decide(&plans[0], &outage, t0 + secs(61.0)),
        Decision::Overdue(RetireReason::MaxLifetime)
    );
    let back = t0 + secs(120.0);
    let recovered = gate_with(t0, back, back + LIFE);
    let width = plans[0].recovery_spread;
    assert!(width > Duration::ZERO);
    let times: Vec<_> = plans
        .iter()
        .map(|p| retire_time(p, &recovered, back, back + secs(600.0)).unwrap() - back)
        .collect();
    assert!(
        times.iter().all(|t| *t <= width),
        "{times:?} (width {width:?})"
    );
    assert!(
        times.iter().max().unwrap() > &(width / 2),
        "not spread: {times:?}"
    );
    // Without an outage it leaves at its deadline.
    let fine = gate_with(t0, t0, t0 + secs(600.0));
    assert_eq!(
        retire_time(&plans[0], &fine, t0, t0 + secs(600.0)),
        Some(t0 + secs(60.0))
    );
}

#[tokio::test(start_paused = true)]
async fn retire_without_replacement_keeps_the_schedule() {
    let policy = RetirePolicy {
        retire_without_replacement: true,
        ..token_policy()
    };
    let t0 = Instant::now();
    let p = plan(&policy, t0, Some(t0 + LIFE), 0.5, 0.5);
    let gate = Gate {
        unconditional: true,
        token: None,
        logins_ok_since: None,
        ..gate_with(t0, t0, t0 + LIFE)
    };
    let due = p.token_due().unwrap();
    assert_eq!(decide(&p, &gate, due - secs(0.01)), Decision::Keep);
    assert_eq!(
        decide(&p, &gate, due),
        Decision::Retire(RetireReason::TokenAge)
    );
}

#[tokio::test(start_paused = true)]
async fn a_password_connection_retires_by_lifetime_only() {
    let policy = RetirePolicy {
        max_lifetime: Some(Duration::from_secs(60)),
        max_lifetime_jitter: 0.0,
        ..RetirePolicy::default()
    };
    let t0 = Instant::now();
    let p = plan(&policy, t0, None, 0.5, 0.5);
    let gate = Gate {
        token: Some(ReadyToken {
            expiry: None,
            usable_since: t0,
        }),
        recent: [None; RECENT_TOKENS],
        ..gate_with(t0, t0, t0)
    };
    assert_eq!(decide(&p, &gate, t0 + secs(59.0)), Decision::Keep);
    assert_eq!(
        decide(&p, &gate, t0 + secs(60.0)),
        Decision::Retire(RetireReason::MaxLifetime)
    );
}

#[tokio::test(start_paused = true)]
async fn a_token_within_its_retirement_margin_is_not_ready_for_a_replacement() {
    use std::time::SystemTime;

    use crate::{token::FnSource, token::RefreshPolicy, token::Token, token::cache::TokenCache};

    let source = FnSource::new("fake", |_scope| {
        Box::pin(async {
            Ok(Token::new(
                "secret",
                SystemTime::now() + Duration::from_secs(60),
            ))
        })
    });
    let cache = TokenCache::new(Box::new(source), "scope/.default", RefreshPolicy::default());
    let policy = RetirePolicy::default();
    assert_eq!(
        ready_token(&cache, Instant::now(), &policy),
        None,
        "none cached"
    );
    cache.get().await.unwrap();
    // Valid, with more than its retirement margin (6 s of 60) left: ready.
    assert!(ready_token(&cache, Instant::now(), &policy).is_some());
    // Within the margin (the last 6 s) but still valid (the last 5 s are withheld): not
    // ready for a replacement.
    tokio::time::sleep(Duration::from_millis(54_500)).await;
    assert!(cache.valid_now().is_some());
    assert_eq!(ready_token(&cache, Instant::now(), &policy), None);
}
