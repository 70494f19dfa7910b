//! The Azure CLI (`az`) and Azure Developer CLI (`azd`) stand-ins: the emulator's own binary
//! answers as either, behind a two-line shell shim that [`crate::emulator::Emulator`] writes into
//! [`crate::emulator::Emulator::az_bin_dir`]:
//!
//! ```sh
//! #!/bin/sh
//! ENTRA_EMULATOR_CLI_PORT=40123 exec '/path/to/entra-emulator' az "$@"
//! ```
//!
//! They implement what `azure_identity`'s `AzureCliCredential` and
//! `AzureDeveloperCliCredential` run, and what a developer types to get a token for `psql`:
//!
//! - `az account get-access-token` with `--scope`/`--scopes`, `--resource`,
//!   `--resource-type`, `--tenant`, `--subscription`, `--query FIELD` and `-o json|jsonc|tsv|none`;
//! - `az account show`, `az login`, `az logout`, `az version`/`az --version`;
//! - `azd auth token -o json [--no-prompt] --scope S [--tenant-id T]`, `azd version`.
//!
//! They ask the emulator's identity port over loopback HTTP, as the real tools ask their
//! MSAL cache and Entra: the emulator serves the cached token for the signed-in user while
//! it has more than the refresh window left. Errors go to standard error in each tool's
//! format (`ERROR: ...` for `az`; azd's JSON console message), with exit status 1 for a
//! refused request and 2 for a command line the stand-in does not understand.

mod az;
mod azd;
mod client;
mod shims;

use std::ffi::OsString;

pub(crate) use shims::{resolve_program, write_shims};

/// A stand-in's command line: `--version`, or one of the tool's commands `C`.
#[derive(clap::Parser)]
#[command(disable_version_flag = true, disable_help_subcommand = true)]
struct Tool<C: clap::Subcommand> {
    /// Print the version.
    #[arg(long)]
    version: bool,
    #[command(subcommand)]
    command: Option<C>,
}

/// Parses the arguments of `tool` (after its name); when they do not parse, prints clap's
/// message (or the help asked for) and returns the exit status to end with.
fn parse<C: clap::Subcommand>(
    tool: &'static str,
    about: &'static str,
    args: Vec<OsString>,
) -> Result<Tool<C>, i32> {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let mut command = Tool::<C>::command().name(tool).about(about);
    command
        .try_get_matches_from_mut(std::iter::once(OsString::from(tool)).chain(args))
        .and_then(|m| Tool::<C>::from_arg_matches(&m))
        .map_err(|e| {
            let e = e.format(&mut command);
            let _ = e.print();
            e.exit_code()
        })
}

/// The environment variable the shims set to the emulator's identity port.
pub const PORT_ENV: &str = "ENTRA_EMULATOR_CLI_PORT";

/// Run a stand-in. `args` starts with the tool's name (`az` or `azd`), followed by its
/// arguments, as a `main` receives them after its own name; the emulator's port comes from
/// [`PORT_ENV`]. Prints to standard output and error as the tool does and returns the exit
/// status.
///
/// A binary's `main` that answers as both tools (`PROGRAM az ...`, `PROGRAM azd ...`):
///
/// ```no_run
/// let status = entra_emulator::standin::run(std::env::args_os().skip(1));
/// std::process::exit(status);
/// ```
pub fn run(args: impl IntoIterator<Item = OsString>) -> i32 {
    let mut args = args.into_iter();
    let tool = args.next().unwrap_or_default();
    let rest: Vec<OsString> = args.collect();
    let port = std::env::var(PORT_ENV)
        .ok()
        .and_then(|p| p.trim().parse::<u16>().ok());
    match (tool.to_str(), port) {
        (Some("az"), Some(port)) => az::run(rest, port),
        (Some("azd"), Some(port)) => azd::run(rest, port),
        (Some("az" | "azd"), None) => {
            eprintln!(
                "ERROR: {PORT_ENV} is not set to the emulator's port: run this through the \
                 `az`/`azd` shims that entra-emulator writes (Emulator::az_bin_dir, or the \
                 PATH that `entra-emulator up` prints)"
            );
            1
        }
        _ => {
            eprintln!(
                "ERROR: entra-emulator's stand-ins are `az` and `azd`, not {:?}",
                tool.to_string_lossy()
            );
            2
        }
    }
}
