//! The result's computations and renderings.

use super::*;
use crate::fault::Applied;

fn second(t: f64, rps: f64, errors: u64, request_max_ms: f64) -> Sample {
    Sample {
        t,
        dt: 1.0,
        pool: PoolKind::Ours,
        throughput_rps: rps,
        errors,
        checkouts: 0,
        checkout_p50_ms: 0.0,
        checkout_p99_ms: 0.0,
        checkout_max_ms: 0.0,
        request_max_ms,
        waited_for_login: 0,
        logins: 0,
        token_refreshes: 0,
        identity_calls: 0,
        server_identity_requests: 0,
        expired_token_logins: 0,
        pool_size: 0,
        pool_available: 0,
        pool_waiting: 0,
        rss_kib: None,
    }
}

/// 1,000 req/s until 10 s, nothing for 6 s, 400 req/s, then 900 req/s again.
fn series() -> Vec<Sample> {
    (1..=25)
        .map(|t| {
            let t = t as f64;
            match t {
                t if t <= 10.0 => second(t, 1000.0, 0, 2.0),
                t if t <= 16.0 => second(t, 0.0, 0, 0.0),
                17.0 => second(t, 400.0, 8, 6100.0),
                _ => second(t, 900.0, 0, 3.0),
            }
        })
        .collect()
}

#[test]
fn a_vanish_recovers_at_the_first_second_at_half_throughput() {
    let faults = [FaultSpec::parse("vanish@10s").unwrap()];
    let applied = [Applied {
        index: 0,
        on: true,
        t: 10.0,
    }];
    let r = FaultRecovery::compute(&faults, &applied, &series());
    assert_eq!(r.len(), 1);
    let r = &r[0];
    assert_eq!(r.pool, PoolKind::Ours);
    assert!((r.rps_before - 1000.0).abs() < 1e-9);
    // 17 s is below half; 18 s is the first whole second at half or more.
    assert_eq!(r.half_throughput_after_secs, Some(8.0));
    assert_eq!(r.failed_from_fault, 8);
    assert_eq!(r.longest_request_ms, 6100.0);
}

#[test]
fn a_partition_recovers_from_its_heal() {
    let faults = [FaultSpec::parse("partition@10s+6s").unwrap()];
    let applied = [
        Applied {
            index: 0,
            on: true,
            t: 10.0,
        },
        Applied {
            index: 0,
            on: false,
            t: 16.0,
        },
    ];
    let r = FaultRecovery::compute(&faults, &applied, &series());
    assert_eq!(r[0].healed_t, Some(16.0));
    assert_eq!(r[0].half_throughput_after_secs, Some(2.0));
}

#[test]
fn idle_drop_and_other_faults_get_no_record() {
    let faults = [
        FaultSpec::parse("idle-drop=8s").unwrap(),
        FaultSpec::parse("failover@10s").unwrap(),
    ];
    let applied = [
        Applied {
            index: 0,
            on: true,
            t: 0.0,
        },
        Applied {
            index: 1,
            on: true,
            t: 10.0,
        },
    ];
    assert!(FaultRecovery::compute(&faults, &applied, &series()).is_empty());
}

#[test]
fn never_recovering_is_none() {
    let faults = [FaultSpec::parse("vanish@10s").unwrap()];
    let applied = [Applied {
        index: 0,
        on: true,
        t: 10.0,
    }];
    let flat: Vec<Sample> = series().into_iter().take(16).collect();
    let r = FaultRecovery::compute(&faults, &applied, &flat);
    assert_eq!(r[0].half_throughput_after_secs, None);
}
