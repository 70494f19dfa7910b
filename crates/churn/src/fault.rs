//! Faults on a timeline: `KIND[=VALUE][@START][+DURATION]`.
//!
//! Kinds: `identity-outage`, `identity-latency=D`, `identity-error=STATUS`,
//! `identity-throttle=D` (429 with `Retry-After`), `refuse-logins`, `login-latency=D`,
//! `failover` (every session killed, instantaneous) and `token-lifetime=D`.
//! Without `@START` a fault starts with the run; without `+DURATION` it lasts to the end.
//!
//! Network faults, made by the kernel in a private network namespace (see
//! [`FaultKind::is_network`]): `vanish[=NODE]` (the node's open sessions go silent for
//! good), `dns-flip[=NODE]` (the server's name moves; to the standby by default),
//! `partition[=NODE]` (every packet to and from the node dropped until its end) and
//! `idle-drop=D` (a middlebox forgets connections idle longer than `D`; installed before
//! the pools connect, so it takes no `@START` or `+DURATION`). `NODE` is `primary`,
//! `standby` or `read-only` (the read-only standby); `vanish` and `partition` default to
//! the node the name points at when they strike.

use std::time::Duration;

use serde::Serialize;

use crate::duration::parse_duration;

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
    /// The node's open sessions vanish (every packet dropped, no RST); `None`: the node
    /// the name points at.
    Vanish(Option<Node>),
    /// The server's name points at this node from now on.
    DnsFlip(Node),
    /// Every packet to and from the node is dropped; `None`: the node the name points at.
    Partition(Option<Node>),
    /// Connections idle longer than this are forgotten by a middlebox and their later
    /// packets dropped (every node; from the start of the run).
    IdleDrop(#[serde(with = "secs")] Duration),
}

impl FaultKind {
    /// Whether the fault is made in the kernel, which needs a private network namespace
    /// and the server reached by its Azure name.
    pub fn is_network(&self) -> bool {
        matches!(
            self,
            FaultKind::Vanish(_)
                | FaultKind::DnsFlip(_)
                | FaultKind::Partition(_)
                | FaultKind::IdleDrop(_)
        )
    }

    /// Whether the fault acts once (no end event).
    fn instantaneous(&self) -> bool {
        matches!(
            self,
            FaultKind::Failover | FaultKind::Vanish(_) | FaultKind::DnsFlip(_)
        )
    }
}

/// A node of the emulated high-availability server (the emulator's `Node`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Node {
    /// The primary (the name points here at start).
    Primary,
    /// The read-write standby.
    Standby,
    /// The read-only standby.
    ReadOnly,
}

impl Node {
    fn parse(s: &str) -> Result<Node, String> {
        match s {
            "primary" => Ok(Node::Primary),
            "standby" => Ok(Node::Standby),
            "read-only" | "read-only-standby" => Ok(Node::ReadOnly),
            other => Err(format!(
                "unknown node {other:?}; known: primary, standby, read-only"
            )),
        }
    }
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
            "vanish" => FaultKind::Vanish(value.map(Node::parse).transpose()?),
            "dns-flip" => FaultKind::DnsFlip(value.map_or(Ok(Node::Standby), Node::parse)?),
            "partition" => FaultKind::Partition(value.map(Node::parse).transpose()?),
            "idle-drop" => {
                if spec.contains('@') || duration.is_some() {
                    return Err(
                        "idle-drop=D acts from the start of the run to its end (installed \
                         before the pools connect): it takes no @START or +DURATION"
                            .into(),
                    );
                }
                FaultKind::IdleDrop(parse_duration(&need(value)?)?)
            }
            other => {
                return Err(format!(
                    "unknown fault {other:?}; known: identity-outage, identity-latency=D, \
                     identity-error=STATUS, identity-throttle=D, refuse-logins, login-latency=D, \
                     failover, token-lifetime=D, vanish[=NODE], dns-flip[=NODE], \
                     partition[=NODE], idle-drop=D"
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
            index: 0,
        }];
        if let (Some(d), false) = (self.duration, self.kind.instantaneous()) {
            out.push(FaultEvent {
                at: self.start + d,
                kind: self.kind.clone(),
                on: false,
                label: format!("end of {}", self.spec),
                index: 0,
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
    /// The fault's place in the list it came from ([`timeline`]'s `specs`).
    pub index: usize,
}

/// Something that can apply faults (the emulator).
pub trait FaultSink: Send + Sync {
    /// Switches `kind` on or off; returns a note for the report (what it did, or why it
    /// could not). May block for a few milliseconds (network faults run `iptables`).
    fn apply(&self, kind: &FaultKind, on: bool) -> Option<String>;
}

/// Every event of `specs`, sorted by time; at the same time a DNS flip comes last, so that
/// `vanish@10s` and `partition@10s` strike the node the name pointed at before the flip,
/// whatever the order on the command line.
pub fn timeline(specs: &[FaultSpec]) -> Vec<FaultEvent> {
    let mut all: Vec<FaultEvent> = specs
        .iter()
        .enumerate()
        .flat_map(|(index, f)| {
            f.events()
                .into_iter()
                .map(move |e| FaultEvent { index, ..e })
        })
        .collect();
    all.sort_by_key(|e| (e.at, matches!(e.kind, FaultKind::DnsFlip(_))));
    all
}

/// A fault event as it was applied: its fault's index in `RunOptions::faults`, on or
/// off, and when (seconds from the start of the measured run).
#[derive(Debug, Clone, Copy)]
pub struct Applied {
    /// Index of the fault.
    pub index: usize,
    /// Switched on (true) or off.
    pub on: bool,
    /// When.
    pub t: f64,
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

    #[test]
    fn parses_the_network_faults() {
        let f = FaultSpec::parse("vanish@10s").unwrap();
        assert_eq!(f.kind, FaultKind::Vanish(None));
        assert_eq!(f.start, Duration::from_secs(10));
        assert_eq!(f.events().len(), 1, "a vanish has no end");
        assert_eq!(
            FaultSpec::parse("vanish=standby@1s").unwrap().kind,
            FaultKind::Vanish(Some(Node::Standby))
        );

        assert_eq!(
            FaultSpec::parse("dns-flip@10s").unwrap().kind,
            FaultKind::DnsFlip(Node::Standby)
        );
        assert_eq!(
            FaultSpec::parse("dns-flip=read-only@10s").unwrap().kind,
            FaultKind::DnsFlip(Node::ReadOnly)
        );
        let back = FaultSpec::parse("dns-flip=primary@30s+5s").unwrap();
        assert_eq!(back.kind, FaultKind::DnsFlip(Node::Primary));
        assert_eq!(back.events().len(), 1, "a flip has no end");

        let p = FaultSpec::parse("partition@10s+20s").unwrap();
        assert_eq!(p.kind, FaultKind::Partition(None));
        let ev = p.events();
        assert_eq!(ev.len(), 2);
        assert_eq!((ev[1].at, ev[1].on), (Duration::from_secs(30), false));
        assert_eq!(
            FaultSpec::parse("partition=primary@1s+2s").unwrap().kind,
            FaultKind::Partition(Some(Node::Primary))
        );

        let i = FaultSpec::parse("idle-drop=8s").unwrap();
        assert_eq!(i.kind, FaultKind::IdleDrop(Duration::from_secs(8)));
        assert_eq!(i.start, Duration::ZERO);

        assert!(i.kind.is_network() && p.kind.is_network());
        assert!(!FaultSpec::parse("failover@1s").unwrap().kind.is_network());
    }

    #[test]
    fn rejects_bad_network_faults() {
        assert!(FaultSpec::parse("dns-flip=secondary@1s").is_err());
        assert!(FaultSpec::parse("vanish=nowhere").is_err());
        assert!(FaultSpec::parse("idle-drop").is_err(), "needs a duration");
        assert!(FaultSpec::parse("idle-drop=8s@5s").is_err(), "no start");
        assert!(FaultSpec::parse("idle-drop=8s+5s").is_err(), "no end");
    }

    #[test]
    fn at_one_instant_the_flip_comes_after_the_vanish() {
        let specs = [
            FaultSpec::parse("dns-flip@10s").unwrap(),
            FaultSpec::parse("vanish@10s").unwrap(),
        ];
        let kinds: Vec<FaultKind> = timeline(&specs).into_iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [FaultKind::Vanish(None), FaultKind::DnsFlip(Node::Standby)]
        );
    }
}
