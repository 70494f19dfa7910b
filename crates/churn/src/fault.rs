//! Faults on a timeline: `KIND[=VALUE][@START][+DURATION]`.
//!
//! Kinds: `identity-outage`, `identity-latency=D`, `identity-error=STATUS`,
//! `identity-throttle=D` (429 with `Retry-After`), `refuse-logins`, `login-latency=D`,
//! `failover` (every session killed, instantaneous) and `token-lifetime=D`.
//! Without `@START` a fault starts with the run; without `+DURATION` it lasts to the end.

use std::time::Duration;

use serde::Serialize;

use crate::cli::parse_duration;

/// What a fault does.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum FaultKind {
    /// The identity endpoint refuses connections.
    IdentityOutage,
    /// The identity endpoint answers after this delay.
    IdentityLatency(#[serde(with = "secs")] Duration),
    /// The identity endpoint answers with this HTTP status.
    IdentityError(u16),
    /// The identity endpoint throttles (429) with this `Retry-After`.
    IdentityThrottle(#[serde(with = "secs")] Duration),
    /// The PostgreSQL front refuses every token login.
    RefuseLogins,
    /// Every login takes this much longer.
    LoginLatency(#[serde(with = "secs")] Duration),
    /// Every open session is killed (an instantaneous failover).
    Failover,
    /// Tokens issued from now on have this lifetime.
    TokenLifetime(#[serde(with = "secs")] Duration),
}

mod secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// A fault and when it acts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultSpec {
    /// What it does.
    pub kind: FaultKind,
    /// When it starts, from the start of the measured run.
    #[serde(serialize_with = "secs::serialize")]
    pub start: Duration,
    /// How long it lasts; `None` until the end (ignored for `failover`).
    #[serde(serialize_with = "opt_secs")]
    pub duration: Option<Duration>,
    /// The text it was parsed from.
    pub spec: String,
}

fn opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

impl FaultSpec {
    /// Parses `KIND[=VALUE][@START][+DURATION]`.
    pub fn parse(s: &str) -> Result<FaultSpec, String> {
        let spec = s.trim().to_string();
        let (head, duration) = match spec.split_once('+') {
            Some((h, d)) => (h, Some(parse_duration(d)?)),
            None => (spec.as_str(), None),
        };
        let (head, start) = match head.split_once('@') {
            Some((h, t)) => (h, parse_duration(t)?),
            None => (head, Duration::ZERO),
        };
        let (name, value) = match head.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (head.trim(), None),
        };
        let need = |v: Option<&str>| {
            v.ok_or_else(|| format!("fault {name:?} needs a value: {name}=..."))
                .map(str::to_string)
        };
        let kind = match name {
            "identity-outage" => FaultKind::IdentityOutage,
            "identity-latency" => FaultKind::IdentityLatency(parse_duration(&need(value)?)?),
            "identity-error" => FaultKind::IdentityError(
                need(value)?
                    .parse()
                    .map_err(|e| format!("bad HTTP status: {e}"))?,
            ),
            "identity-throttle" => FaultKind::IdentityThrottle(parse_duration(&need(value)?)?),
            "refuse-logins" => FaultKind::RefuseLogins,
            "login-latency" => FaultKind::LoginLatency(parse_duration(&need(value)?)?),
            "failover" => FaultKind::Failover,
            "token-lifetime" => FaultKind::TokenLifetime(parse_duration(&need(value)?)?),
            other => {
                return Err(format!(
                    "unknown fault {other:?}; known: identity-outage, identity-latency=D, \
                     identity-error=STATUS, identity-throttle=D, refuse-logins, login-latency=D, \
                     failover, token-lifetime=D"
                ));
            }
        };
        Ok(FaultSpec {
            kind,
            start,
            duration,
            spec,
        })
    }

    /// The fault's start and (when it ends on its own) end as timeline events.
    pub fn events(&self) -> Vec<FaultEvent> {
        let mut out = vec![FaultEvent {
            at: self.start,
            kind: self.kind.clone(),
            on: true,
            label: self.spec.clone(),
        }];
        if let (Some(d), false) = (self.duration, self.kind == FaultKind::Failover) {
            out.push(FaultEvent {
                at: self.start + d,
                kind: self.kind.clone(),
                on: false,
                label: format!("end of {}", self.spec),
            });
        }
        out
    }
}

/// One change on the fault timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultEvent {
    /// When, from the start of the measured run.
    pub at: Duration,
    /// Which fault.
    pub kind: FaultKind,
    /// Switched on (true) or off (false).
    pub on: bool,
    /// For reports.
    pub label: String,
}

/// Something that can apply faults (the emulator).
pub trait FaultSink: Send + Sync {
    /// Switches `kind` on or off.
    fn apply(&self, kind: &FaultKind, on: bool);
}

/// Every event of `specs`, sorted by time.
pub fn timeline(specs: &[FaultSpec]) -> Vec<FaultEvent> {
    let mut all: Vec<FaultEvent> = specs.iter().flat_map(FaultSpec::events).collect();
    all.sort_by_key(|e| e.at);
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        let f = FaultSpec::parse("identity-outage@10s+20s").unwrap();
        assert_eq!(f.kind, FaultKind::IdentityOutage);
        assert_eq!(f.start, Duration::from_secs(10));
        assert_eq!(f.duration, Some(Duration::from_secs(20)));
        assert_eq!(f.events().len(), 2);

        let f = FaultSpec::parse("failover@30s").unwrap();
        assert_eq!(f.kind, FaultKind::Failover);
        assert_eq!(f.events().len(), 1);

        let f = FaultSpec::parse("identity-latency=1s").unwrap();
        assert_eq!(f.kind, FaultKind::IdentityLatency(Duration::from_secs(1)));
        assert_eq!(f.start, Duration::ZERO);
        assert_eq!(f.duration, None);

        assert!(FaultSpec::parse("identity-latency").is_err());
        assert!(FaultSpec::parse("meteor@1s").is_err());
    }
}
