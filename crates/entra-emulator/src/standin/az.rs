//! `az`: the Azure CLI commands that credentials and developers run for a token.

use std::ffi::OsString;

use clap::{Args, Subcommand};
use serde_json::Value;

use super::client::{self, Answer};

#[derive(Subcommand)]
enum Command {
    /// Print the version.
    Version,
    /// Sign the emulator's user in again (clears the logged-out fault); prints the account.
    Login(Ignored),
    /// Sign out: later token requests fail as the real `az` does until `az login`.
    Logout(Ignored),
    /// Account commands.
    Account {
        #[command(subcommand)]
        command: Account,
    },
}

/// Options the stand-in accepts and ignores (`az login --use-device-code`, ...).
#[derive(Args)]
struct Ignored {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<String>,
}

#[derive(Subcommand)]
enum Account {
    /// A token for the signed-in user.
    GetAccessToken(GetAccessToken),
    /// The signed-in account.
    Show(Output),
}

#[derive(Args)]
struct GetAccessToken {
    /// Scope(s) of the token (`https://ossrdbms-aad.database.windows.net/.default`).
    #[arg(long = "scope", visible_alias = "scopes", num_args = 1.., conflicts_with_all = ["resource", "resource_type"])]
    scope: Vec<String>,
    /// Resource of the token.
    #[arg(long, conflicts_with = "resource_type")]
    resource: Option<String>,
    /// `oss-rdbms`, `arm`, `ms-graph`, ...
    #[arg(long = "resource-type")]
    resource_type: Option<String>,
    /// Tenant to get the token in (must be the user's).
    #[arg(long, short = 't')]
    tenant: Option<String>,
    /// Subscription (id or name) whose tenant to use.
    #[arg(long, short = 's')]
    subscription: Option<String>,
    #[command(flatten)]
    output: Output,
}

#[derive(Args)]
struct Output {
    /// Output format.
    #[arg(long, short = 'o', default_value = "json", value_parser = ["json", "jsonc", "tsv", "none"])]
    output: String,
    /// A field of the answer (`accessToken`, `expiresOn`, `tenantId`, `user.name`, ...).
    #[arg(long)]
    query: Option<String>,
}

/// Run `az` with `args` (after its name) against the emulator on `port`.
pub(super) fn run(args: Vec<OsString>, port: u16) -> i32 {
    let az =
        match super::parse::<Command>("az", "entra-emulator's stand-in for the Azure CLI", args) {
            Ok(az) => az,
            Err(status) => return status,
        };
    let outcome = match az.command {
        _ if az.version => Ok(version()),
        Some(Command::Version) => Ok(version()),
        None => Err(Refusal::usage(
            "give a command: account, login, logout, version",
        )),
        Some(Command::Login(_)) => ask(port, "/cli/login", &[]).map(|v| render(&v, "json")),
        Some(Command::Logout(_)) => ask(port, "/cli/logout", &[]).map(|_| String::new()),
        Some(Command::Account {
            command: Account::Show(out),
        }) => field_path(&out)
            .and_then(|_| ask(port, "/cli/account", &[]))
            .and_then(|v| answer(&v, &out)),
        Some(Command::Account {
            command: Account::GetAccessToken(t),
        }) => get_access_token(port, &t),
    };
    match outcome {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(r) => {
            eprintln!("ERROR: {}", r.message);
            r.status
        }
    }
}

fn get_access_token(port: u16, t: &GetAccessToken) -> Result<String, Refusal> {
    let resource = match t.resource_type.as_deref() {
        Some("oss-rdbms") => "https://ossrdbms-aad.database.windows.net".to_string(),
        Some("arm") => "https://management.core.windows.net/".to_string(),
        Some("ms-graph") => "https://graph.microsoft.com/".to_string(),
        Some("aad-graph") => "https://graph.windows.net/".to_string(),
        Some("batch") => "https://batch.core.windows.net/".to_string(),
        Some("data-lake") => "https://datalake.azure.net/".to_string(),
        Some("media") => "https://rest.media.azure.net".to_string(),
        Some(other) => {
            return Err(Refusal::usage(format!(
                "argument --resource-type: invalid choice: '{other}' (choose from 'aad-graph', 'arm', 'batch', 'data-lake', 'media', 'ms-graph', 'oss-rdbms')"
            )));
        }
        None => t.resource.clone().unwrap_or_default(),
    };
    if t.scope.len() > 1 {
        return Err(Refusal::usage(
            "entra-emulator's az gets a token for one scope at a time",
        ));
    }
    field_path(&t.output)?;
    if t.tenant.is_some() && t.subscription.is_some() {
        return Err(Refusal::failed(
            "Please specify only one of subscription and tenant, not both",
        ));
    }
    if let Some(s) = t.subscription.as_deref().filter(|s| !s.is_ascii()) {
        return Err(Refusal::failed(format!(
            "Subscription '{s}' not found. Check the spelling and casing and try again."
        )));
    }
    let scope = t.scope.first().map(String::as_str).unwrap_or("");
    let value = ask(
        port,
        "/cli/token",
        &[
            ("x-az-scope", scope),
            ("x-az-resource", &resource),
            ("x-az-tenant", t.tenant.as_deref().unwrap_or("")),
            ("x-az-subscription", t.subscription.as_deref().unwrap_or("")),
        ],
    )?;
    answer(&value, &t.output)
}

/// A failed command: the message (without `ERROR: `) and the exit status.
struct Refusal {
    message: String,
    status: i32,
}

impl Refusal {
    fn usage(message: impl Into<String>) -> Self {
        Refusal {
            message: message.into(),
            status: 2,
        }
    }
    fn failed(message: impl Into<String>) -> Self {
        Refusal {
            message: message.into(),
            status: 1,
        }
    }
}

/// GET `path` and parse the JSON answer; a refusal carries the emulator's text.
fn ask(port: u16, path: &str, headers: &[(&str, &str)]) -> Result<Value, Refusal> {
    let Answer { status, body } = client::get(port, path, headers).map_err(Refusal::failed)?;
    if status != 200 {
        let text = body.trim();
        let text = text.strip_prefix("ERROR: ").unwrap_or(text);
        return Err(Refusal::failed(if text.is_empty() {
            format!("entra-emulator answered {status}")
        } else {
            text.to_string()
        }));
    }
    if body.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&body)
        .map_err(|e| Refusal::failed(format!("entra-emulator's answer is not JSON: {e}")))
}

/// Apply `--query` and `--output` to an answer.
fn answer(value: &Value, out: &Output) -> Result<String, Refusal> {
    let selected = field_path(out)?
        .into_iter()
        .try_fold(value, |v, f| v.get(f))
        .unwrap_or(&Value::Null);
    Ok(render(selected, &out.output))
}

/// The fields of `--query`, checked before anything is asked: the stand-in speaks the part
/// of JMESPath that token scripts use, a field or a dotted path of fields.
fn field_path(out: &Output) -> Result<Vec<&str>, Refusal> {
    let Some(q) = &out.query else {
        return Ok(Vec::new());
    };
    let fields: Vec<&str> = q.trim().split('.').collect();
    let simple = fields
        .iter()
        .all(|f| !f.is_empty() && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    if simple {
        Ok(fields)
    } else {
        Err(Refusal::usage(format!(
            "entra-emulator's az understands --query with a field name or a dotted path only, not {q:?}"
        )))
    }
}

/// Print a value as `az` does in each output format.
fn render(value: &Value, output: &str) -> String {
    match output {
        "none" => String::new(),
        "tsv" => {
            let cells: Vec<String> = match value {
                Value::Object(m) => m.values().map(tsv_cell).collect(),
                Value::Array(a) => a.iter().map(tsv_cell).collect(),
                other => vec![tsv_cell(other)],
            };
            format!("{}\n", cells.join("\t"))
        }
        _ => format!(
            "{}\n",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
    }
}

fn tsv_cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn version() -> String {
    "azure-cli                         2.67.0 (entra-emulator)\n".to_string()
}
