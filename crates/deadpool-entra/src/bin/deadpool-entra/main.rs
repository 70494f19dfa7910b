//! `deadpool-entra doctor`: says why a deployment cannot log in to Azure Database for
//! PostgreSQL with an Entra token, and what to run to fix it.
//!
//! Exit codes: 0 when a login works, 1 when a check fails, 2 for a usage error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use deadpool_entra::doctor::{Options, diagnose_env};

#[derive(Parser)]
#[command(
    name = "deadpool-entra",
    version,
    about = "Tools for deadpool-entra deployments"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Checks the configuration, the credential, the token, the network, TLS and a login,
    /// as `Pool::from_env()` would make them, and prints the fix for what fails.
    Doctor {
        /// A connection URL or key=value string, read as DATABASE_URL (over the other
        /// variables).
        #[arg(long)]
        url: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Also log in through PgBouncer's port, 6432.
        #[arg(long)]
        pgbouncer: bool,
    },
}

fn main() -> ExitCode {
    // clap exits with 2 on a usage error.
    let cli = Cli::parse();
    let Command::Doctor {
        url,
        json,
        pgbouncer,
    } = cli.command;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("deadpool-entra: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let mut options = Options::default().pgbouncer(pgbouncer);
    if let Some(url) = url {
        options = options.url(url);
    }
    let report = runtime.block_on(diagnose_env(std::env::vars(), options));
    if json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("deadpool-entra: cannot write the report as JSON: {e}");
                return ExitCode::from(1);
            }
        }
    } else {
        println!("{report}");
    }
    if report.login_works {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
