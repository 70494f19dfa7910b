//! What the emulator tests share: the emulator, a configuration for its server, and a
//! counted token source for one of its principals.
#![allow(dead_code)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use deadpool_entra::{Config, RetirePolicy};
use entra_emulator::{Emulator, OSSRDBMS_SCOPE};
use entra_pg_token::{FnSource, Token, TokenSourceError};

/// Short tokens: the refresher renews at half-life, every 2 s.
pub const LIFETIME: Duration = Duration::from_secs(4);

pub async fn emulator() -> Arc<Emulator> {
    Arc::new(Emulator::start().await.expect("emulator starts"))
}

/// The emulator's server, verify-full with its CA, the given user and pool size.
pub fn config(emu: &Emulator, user: &str, size: usize) -> Config {
    let mut c = Config::new();
    for (k, v) in [
        ("host", emu.pg_host().to_owned()),
        ("port", emu.pg_port().to_string()),
        ("dbname", emu.database().to_owned()),
        ("sslrootcert", emu.ca_cert_path().display().to_string()),
        ("user", user.to_owned()),
    ] {
        c.set(k, &v).unwrap();
    }
    c.scope = Some(OSSRDBMS_SCOPE.to_owned());
    c.max_size = Some(size);
    c.min_connections = size;
    c.retire = RetirePolicy {
        sweep_interval: Duration::from_millis(200),
        ..RetirePolicy::default()
    };
    c
}

/// Tokens for `principal`, each valid for `lifetime`, counted; failing while `down`.
pub fn source(
    emu: &Arc<Emulator>,
    principal: &str,
    lifetime: Duration,
    down: Arc<AtomicBool>,
) -> (FnSource, Arc<AtomicU64>) {
    let calls = Arc::new(AtomicU64::new(0));
    let (emu, c, p) = (emu.clone(), calls.clone(), principal.to_owned());
    let s = FnSource::new("EmulatorTokens", move |scope| {
        c.fetch_add(1, Ordering::SeqCst);
        let result = if down.load(Ordering::SeqCst) {
            Err(TokenSourceError::new("identity endpoint down (test)"))
        } else {
            Ok(Token::expiring_in(
                emu.issue_token(&p, &scope, lifetime),
                lifetime,
            ))
        };
        async move { result }
    });
    (s, calls)
}
