//! Shared by the test files that run against the emulator: an emulator, a counted
//! token source, a builder pointed at it.
#![allow(dead_code)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use deadpool_entra::{FnSource, Pool, PoolBuilder, Token};
use entra_emulator::{Emulator, OSSRDBMS_SCOPE};

pub const HOUR: Duration = Duration::from_secs(3600);

pub async fn emulator() -> Arc<Emulator> {
    Arc::new(Emulator::start().await.expect("emulator starts"))
}

/// Tokens for `principal`, each valid for `lifetime`, counted.
pub fn source(
    emu: &Arc<Emulator>,
    principal: &str,
    lifetime: Duration,
) -> (FnSource, Arc<AtomicU64>) {
    let calls = Arc::new(AtomicU64::new(0));
    let (emu, c, p) = (emu.clone(), calls.clone(), principal.to_owned());
    let s = FnSource::new("EmulatorTokens", move |scope| {
        c.fetch_add(1, Ordering::SeqCst);
        let t = emu.issue_token(&p, &scope, lifetime);
        async move { Ok(Token::expiring_in(t, lifetime)) }
    });
    (s, calls)
}

pub fn builder(emu: &Emulator) -> PoolBuilder {
    Pool::builder()
        .host(emu.pg_host())
        .port(emu.pg_port())
        .dbname(emu.database())
        .ssl_root_cert(emu.ca_cert_path())
        .scope(OSSRDBMS_SCOPE)
}

/// `tasks` tasks check out, run `SELECT 1` and think `think`, until `until`; returns
/// the errors.
pub async fn light_load(pool: &Pool, tasks: usize, think: Duration, run: Duration) -> usize {
    let until = tokio::time::Instant::now() + run;
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let pool = pool.clone();
        handles.push(tokio::spawn(async move {
            let mut errors = 0;
            while tokio::time::Instant::now() < until {
                match pool.get().await {
                    Ok(c) => errors += usize::from(c.simple_query("SELECT 1").await.is_err()),
                    Err(e) => {
                        eprintln!("{e}");
                        errors += 1;
                    }
                }
                tokio::time::sleep(think).await;
            }
            errors
        }));
    }
    let mut errors = 0;
    for h in handles {
        errors += h.await.unwrap();
    }
    errors
}
