//! The doctor's report: one verdict per check, with what was found, the evidence and the
//! fix; as text (one line per check) or JSON.

use std::fmt;

use serde::Serialize;

/// The checks, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum CheckName {
    /// Which variables were read, the authentication method, the cloud and scope.
    Configuration,
    /// Each link of the credential chain, and which one answered.
    Credential,
    /// The token's claims against the scope, its lifetime and size.
    Token,
    /// The configured user against the one the token names.
    User,
    /// The server's addresses.
    Dns,
    /// A TCP connection to the server's port.
    Tcp,
    /// The TLS handshake, verified as the pool verifies it.
    Tls,
    /// A login with the token, as the pool logs in.
    Login,
    /// The same login through PgBouncer's port, 6432 (only when asked for).
    Pgbouncer,
}

impl CheckName {
    /// The check's name as printed (`token`, `login`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Configuration => "configuration",
            Self::Credential => "credential",
            Self::Token => "token",
            Self::User => "user",
            Self::Dns => "dns",
            Self::Tcp => "tcp",
            Self::Tls => "tls",
            Self::Login => "login",
            Self::Pgbouncer => "pgbouncer",
        }
    }
}

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Nothing to fix.
    Ok,
    /// It works, but something is likely not what was meant (see the warnings).
    Warning,
    /// It does not work: see the fix.
    Failed,
    /// Not run: an earlier check failed, or it does not apply.
    Skipped,
}

impl Verdict {
    fn mark(self) -> &'static str {
        match self {
            Self::Ok => "ok  ",
            Self::Warning => "warn",
            Self::Failed => "FAIL",
            Self::Skipped => "skip",
        }
    }
}

/// One piece of evidence: a name and what was found (never a secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fact {
    /// What this is (`aud`, `address`, `AZURE_POSTGRESQL_HOST`, ...).
    pub name: String,
    /// What was found.
    pub value: String,
}

/// One check's verdict, what it found, its evidence, and the fix when it failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Which check.
    pub name: CheckName,
    /// Its outcome.
    pub verdict: Verdict,
    /// What it found, in one line.
    pub found: String,
    /// The evidence, in the order found.
    pub evidence: Vec<Fact>,
    /// What is likely not meant, though it works.
    pub warnings: Vec<String>,
    /// What to do, when the check failed (and for some warnings).
    pub fix: Option<String>,
}

impl Check {
    pub(crate) fn new(name: CheckName, found: impl Into<String>) -> Self {
        Self {
            name,
            verdict: Verdict::Ok,
            found: found.into(),
            evidence: Vec::new(),
            warnings: Vec::new(),
            fix: None,
        }
    }

    pub(crate) fn skipped(name: CheckName, why: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::Skipped,
            ..Self::new(name, why)
        }
    }

    pub(crate) fn failed(
        name: CheckName,
        found: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            verdict: Verdict::Failed,
            fix: Some(fix.into()),
            ..Self::new(name, found)
        }
    }

    pub(crate) fn fact(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.evidence.push(Fact {
            name: name.into(),
            value: value.into(),
        });
    }

    /// Adds a warning; an ok check becomes a warning.
    pub(crate) fn warn(&mut self, warning: impl Into<String>) {
        self.warnings.push(warning.into());
        if self.verdict == Verdict::Ok {
            self.verdict = Verdict::Warning;
        }
    }

    pub(crate) fn fail(&mut self, found: impl Into<String>, fix: impl Into<String>) {
        self.verdict = Verdict::Failed;
        self.found = found.into();
        self.fix = Some(fix.into());
    }
}

/// Every check's verdict, in order. `Display` gives the text the command prints;
/// `serde_json::to_string` the JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The checks, in the order they ran (skipped ones included).
    pub checks: Vec<Check>,
    /// Whether a login with the token worked.
    pub login_works: bool,
}

impl Report {
    /// The first failed check, if any.
    pub fn first_failure(&self) -> Option<&Check> {
        self.checks.iter().find(|c| c.verdict == Verdict::Failed)
    }

    /// The check of this name, if it ran.
    pub fn check(&self, name: CheckName) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.checks {
            writeln!(
                f,
                "[{}] {:<13} {}",
                c.verdict.mark(),
                c.name.as_str(),
                c.found
            )?;
            for w in &c.warnings {
                writeln!(f, "       warning: {w}")?;
            }
            if let Some(fix) = &c.fix {
                writeln!(f, "       fix: {fix}")?;
            }
        }
        match self.first_failure() {
            None if self.login_works => write!(f, "the login works"),
            None => write!(f, "no check failed, but no login was made"),
            Some(c) => write!(f, "failed at {}: see its fix above", c.name.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(login_works: bool, failed: bool) -> Report {
        let mut tls = Check::new(CheckName::Tls, "verified");
        if failed {
            tls.fail("bad chain", "set sslrootcert");
        }
        let mut user = Check::new(CheckName::User, "u");
        user.warn("w");
        Report {
            checks: vec![
                user,
                tls,
                Check::skipped(CheckName::Login, "an earlier check failed"),
            ],
            login_works,
        }
    }

    #[test]
    fn the_text_has_one_line_per_check_then_the_outcome() {
        let text = report(false, true).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "[warn] user          u");
        assert_eq!(lines[1], "       warning: w");
        assert_eq!(lines[2], "[FAIL] tls           bad chain");
        assert_eq!(lines[3], "       fix: set sslrootcert");
        assert_eq!(lines[4], "[skip] login         an earlier check failed");
        assert_eq!(lines[5], "failed at tls: see its fix above");
        let ok = report(true, false).to_string();
        assert!(ok.contains("[ok  ] tls"), "{ok}");
        assert!(ok.ends_with("the login works"), "{ok}");
        assert!(
            report(false, false)
                .to_string()
                .ends_with("no login was made")
        );
    }

    #[test]
    fn checks_are_found_by_name_and_the_first_failure_is_named() {
        let r = report(false, true);
        assert_eq!(r.first_failure().map(|c| c.name), Some(CheckName::Tls));
        assert_eq!(
            r.check(CheckName::Login).map(|c| c.verdict),
            Some(Verdict::Skipped)
        );
        assert!(r.check(CheckName::Dns).is_none());
        assert!(report(true, false).first_failure().is_none());
        let names = [
            CheckName::Configuration,
            CheckName::Credential,
            CheckName::Token,
            CheckName::User,
            CheckName::Dns,
            CheckName::Tcp,
            CheckName::Tls,
            CheckName::Login,
            CheckName::Pgbouncer,
        ];
        for n in names {
            let json = serde_json::to_value(n).unwrap();
            assert_eq!(
                json.as_str(),
                Some(n.as_str()),
                "the text and the JSON agree"
            );
        }
    }
}
