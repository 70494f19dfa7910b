//! The doctor: checks a deployment end to end, in the order a login needs them, and says
//! for each check what it found and, when it fails, the fix (feature `doctor`; the
//! `deadpool-entra doctor` command, feature `cli`, prints it).
//!
//! 1. configuration: which variables were read and which ignored, the authentication
//!    method, the cloud and scope the host name gives;
//! 2. credential: each link of the chain, and which one answered;
//! 3. token: its claims against the scope and the server's cloud, its lifetime, its size;
//! 4. user: the configured user against the one the token names;
//! 5. dns, 6. tcp, 7. tls (verified as the pool verifies it);
//! 8. login, with the token already fetched; on a refusal, the SQL that fixes it;
//! 9. optionally, the same login on PgBouncer's port, 6432.
//!
//! A token never appears in the report: claims, lengths and names only.
//!
//! ```no_run
//! # async fn f() {
//! let report = deadpool_entra::doctor::diagnose_env(std::env::vars(), Default::default()).await;
//! println!("{report}");
//! assert!(report.login_works, "{:?}", report.first_failure());
//! # }
//! ```

mod configuration;
mod credential;
mod login;
mod network;
mod report;
mod tls;
mod token;
mod user;

use std::collections::HashMap;

pub use report::{Check, CheckName, Fact, Report, Verdict};

use crate::config::Config;
use entra_pg_token::{cloud::scope_for, token::claims::user_from_token};

/// What to check besides the configuration.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Options {
    /// A connection URL or key=value string, read as `DATABASE_URL` is (over the other
    /// variables).
    pub url: Option<String>,
    /// Also log in through PgBouncer's port, 6432.
    pub pgbouncer: bool,
}

impl Options {
    /// With this connection URL (see [`Options::url`]).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Also log in through PgBouncer's port (see [`Options::pgbouncer`]).
    pub fn pgbouncer(mut self, yes: bool) -> Self {
        self.pgbouncer = yes;
        self
    }
}

/// Checks the deployment that these environment variables configure, as
/// [`Pool::from_env`](crate::pool::Pool::from_env) reads them (plus `options.url`). The
/// credentials read the process environment too, as `azure_identity` does.
pub async fn diagnose_env<K, V>(vars: impl IntoIterator<Item = (K, V)>, options: Options) -> Report
where
    K: Into<String>,
    V: Into<String>,
{
    let mut env: HashMap<String, String> = vars
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    if let Some(url) = &options.url {
        env.insert("DATABASE_URL".to_owned(), url.clone());
    }
    let (check, cfg) = configuration::check_env(&env);
    run(check, cfg, env, &options).await
}

/// Checks the deployment `cfg` describes (a configuration built in code; the credential
/// chain reads the process environment).
pub async fn diagnose(cfg: &Config) -> Report {
    let check = configuration::check_config(cfg);
    run(
        check,
        Some(cfg.clone()),
        std::env::vars().collect(),
        &Options::default(),
    )
    .await
}

async fn run(
    config_check: Check,
    cfg: Option<Config>,
    env: HashMap<String, String>,
    options: &Options,
) -> Report {
    let mut checks = vec![config_check];
    let later = [
        CheckName::Credential,
        CheckName::Token,
        CheckName::User,
        CheckName::Dns,
        CheckName::Tcp,
        CheckName::Tls,
        CheckName::Login,
    ];
    let cfg = match cfg {
        Some(cfg) if checks[0].verdict != Verdict::Failed => cfg,
        _ => {
            checks.extend(later.map(|n| Check::skipped(n, "the configuration failed")));
            return Report {
                checks,
                login_works: false,
            };
        }
    };
    let host = cfg.first_host().to_owned();
    let port = cfg.port_of(0);

    // 2 to 4: the identity.
    let mut token = None;
    let mut claims = None;
    if cfg.uses_password() {
        for n in [CheckName::Credential, CheckName::Token, CheckName::User] {
            checks.push(Check::skipped(n, "password mode: no token"));
        }
    } else {
        let (scope, _) = scope_for(cfg.scope.as_deref(), &host);
        let (check, fetched) = credential::check(&cfg, &env, &scope).await;
        let source = check
            .found
            .split(' ')
            .next()
            .unwrap_or("credential")
            .to_owned();
        checks.push(check);
        match fetched {
            None => {
                checks.push(Check::skipped(CheckName::Token, "no token"));
                checks.push(Check::skipped(CheckName::User, "no token"));
            }
            Some(t) => {
                let (check, c) = token::check(&t, &cfg, &env, &scope, port);
                checks.push(check);
                match &c {
                    Some(c) => {
                        let (check, _) = user::check(&cfg, c, user_from_token(t.secret()));
                        checks.push(check);
                    }
                    None => checks.push(Check::skipped(CheckName::User, "no claims")),
                }
                claims = c;
                token = Some((t, source));
            }
        }
    }

    // 5 to 7: the way to the server.
    let mut reached = None;
    if host.starts_with('/') {
        for n in [CheckName::Dns, CheckName::Tcp, CheckName::Tls] {
            checks.push(Check::skipped(n, format!("{host} is a Unix socket")));
        }
    } else {
        let (check, addrs) = network::dns(&cfg, &host, port).await;
        let resolved = check.verdict != Verdict::Failed;
        checks.push(check);
        if resolved {
            let (check, addr) = network::tcp(&cfg, &addrs).await;
            checks.push(check);
            match addr {
                Some(addr) => {
                    checks.push(tls::check(&cfg, &host, addr).await);
                    reached = Some(addr);
                }
                None => checks.push(Check::skipped(CheckName::Tls, "no TCP connection")),
            }
        } else {
            checks.push(Check::skipped(CheckName::Tcp, "the name does not resolve"));
            checks.push(Check::skipped(CheckName::Tls, "the name does not resolve"));
        }
    }

    // 8: the login, when nothing before it failed.
    let failed = checks.iter().any(|c| c.verdict == Verdict::Failed);
    let login = if failed {
        Check::skipped(CheckName::Login, "an earlier check failed")
    } else {
        login::check(CheckName::Login, &cfg, token.clone(), claims.as_ref()).await
    };
    let login_works = !failed && login.verdict != Verdict::Failed;
    checks.push(login);

    // 9: PgBouncer.
    if options.pgbouncer {
        if failed || reached.is_none() {
            checks.push(Check::skipped(
                CheckName::Pgbouncer,
                "an earlier check failed",
            ));
        } else {
            let mut bouncer = cfg.clone();
            bouncer.port = Some(token::PGBOUNCER_PORT);
            bouncer.ports.clear();
            checks.push(login::check(CheckName::Pgbouncer, &bouncer, token, claims.as_ref()).await);
        }
    }
    Report {
        checks,
        login_works,
    }
}
