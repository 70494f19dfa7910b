//! `azd`: `azd auth token` as `AzureDeveloperCliCredential` runs it, for the user `az` is
//! signed in as (`az logout` signs azd out too).

use std::ffi::OsString;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::client;

#[derive(Subcommand)]
enum Command {
    /// Print the version.
    Version,
    /// Authentication commands.
    Auth {
        #[command(subcommand)]
        command: Auth,
    },
}

#[derive(Subcommand)]
enum Auth {
    /// A token for the signed-in user.
    Token(Token),
}

#[derive(Args)]
struct Token {
    /// Scope of the token.
    #[arg(long)]
    scope: Vec<String>,
    /// Tenant to get the token in (must be the user's).
    #[arg(long = "tenant-id")]
    tenant_id: Option<String>,
    /// Output format (`json`).
    #[arg(long, short = 'o', default_value = "json", value_parser = ["json"])]
    output: String,
    /// Never prompt (accepted; the stand-in never prompts).
    #[arg(long = "no-prompt")]
    no_prompt: bool,
}

/// Run `azd` with `args` (after its name) against the emulator on `port`.
pub(super) fn run(args: Vec<OsString>, port: u16) -> i32 {
    let azd = match super::parse::<Command>(
        "azd",
        "entra-emulator's stand-in for the Azure Developer CLI",
        args,
    ) {
        Ok(azd) => azd,
        Err(status) => return status,
    };
    let token = match azd.command {
        _ if azd.version => return version(),
        Some(Command::Version) => return version(),
        None => return fail("give a command: auth token, version", 2),
        Some(Command::Auth {
            command: Auth::Token(t),
        }) => t,
    };
    if token.scope.len() > 1 {
        return fail(
            "entra-emulator's azd gets a token for one scope at a time",
            2,
        );
    }
    let scope = token.scope.first().map(String::as_str).unwrap_or("");
    let answer = match client::get(
        port,
        "/cli/token",
        &[
            ("x-az-scope", scope),
            ("x-az-tenant", token.tenant_id.as_deref().unwrap_or("")),
        ],
    ) {
        Ok(a) => a,
        Err(e) => return fail(&e, 1),
    };
    match answer.status {
        200 => {}
        401 => return fail("not logged in, run `azd auth login` to login", 1),
        _ => {
            let text = answer.body.trim();
            let text = text.strip_prefix("ERROR: ").unwrap_or(text);
            return fail(&format!("fetching token: {text}"), 1);
        }
    }
    let body: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
    let (Some(tok), Some(exp)) = (
        body.get("accessToken").and_then(Value::as_str),
        body.get("expires_on").and_then(Value::as_u64),
    ) else {
        return fail("fetching token: entra-emulator's answer has no token", 1);
    };
    let Some(expires) = rfc3339(exp) else {
        return fail(
            &format!("fetching token: its expiry ({exp}) is out of range"),
            1,
        );
    };
    println!("{}", json!({"token": tok, "expiresOn": expires}));
    0
}

/// `unix` seconds as RFC 3339 in UTC; `None` past the year 9999 (which RFC 3339 cannot
/// write) or beyond what the clock can hold.
fn rfc3339(unix: u64) -> Option<String> {
    use std::fmt::Write as _;
    let at = UNIX_EPOCH.checked_add(Duration::from_secs(unix))?;
    let mut text = String::new();
    write!(text, "{}", humantime::format_rfc3339_seconds(at)).ok()?;
    Some(text)
}

/// Print an error the way azd does (a JSON console message on standard error).
fn fail(message: &str, status: i32) -> i32 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| rfc3339(d.as_secs()))
        .unwrap_or_default();
    eprintln!(
        "{}",
        json!({"type": "consoleMessage", "timestamp": now, "data": {"message": format!("\nERROR: {message}\n")}})
    );
    status
}

fn version() -> i32 {
    println!("azd version 1.11.0 (entra-emulator)");
    0
}
