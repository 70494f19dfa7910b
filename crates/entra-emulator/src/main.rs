//! `entra-emulator`: Entra ID and Azure Database for PostgreSQL on loopback.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use entra_emulator::{ADMIN_API_HELP, Emulator, IdentitySpec};

#[derive(Parser)]
#[command(
    name = "entra-emulator",
    version,
    about = "Microsoft Entra ID and Azure Database for PostgreSQL on loopback, for tests and demos",
    after_long_help = after_help()
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the cluster, the identity endpoints, the front and the admin API; print the
    /// environment as `export` lines, then `ready`; run until Ctrl-C or SIGTERM, then clean up.
    #[command(after_long_help = after_help())]
    Up(Up),
}

#[derive(clap::Args)]
struct Up {
    /// Lifetime of issued tokens (humantime: 60s, 5m, 1h).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    token_lifetime: Duration,
    /// Name of the system-assigned managed identity (and its role); AZURE_POSTGRESQL_USER.
    #[arg(long, default_value = entra_emulator::DEFAULT_IDENTITY)]
    identity: String,
    /// Extra user-assigned managed identity NAME (repeatable).
    #[arg(long = "user-assigned", value_name = "NAME")]
    user_assigned: Vec<String>,
    /// UPN of the user logged in for `az` (and its role).
    #[arg(long, default_value = entra_emulator::DEFAULT_USER)]
    user: String,
    /// A static-password role ROLE:PASSWORD through the same front (repeatable).
    #[arg(long = "password-role", value_name = "ROLE:PASSWORD")]
    password_roles: Vec<String>,
    /// Database to create.
    #[arg(long, default_value = entra_emulator::DEFAULT_DATABASE)]
    database: String,
    /// The cluster's max_connections.
    #[arg(long, default_value_t = 200)]
    max_connections: u32,
    /// Register a service principal NAME (and its role) and print the environment an
    /// application authenticating as it gets instead of the managed identity's:
    /// AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET, AZURE_AUTHORITY_HOST and
    /// SSL_CERT_FILE (the emulator's CA: in that shell, HTTPS clients that read it trust
    /// only the emulator).
    #[arg(long, value_name = "NAME", conflicts_with = "workload_identity")]
    service_principal: Option<String>,
    /// Register a user-assigned identity NAME with a federated credential for the service
    /// account `system:serviceaccount:default:NAME`, write that account's token to a file,
    /// and print the environment of a workload using workload identity (as AKS sets it):
    /// AZURE_FEDERATED_TOKEN_FILE instead of a secret, otherwise as --service-principal.
    #[arg(long, value_name = "NAME")]
    workload_identity: Option<String>,
    /// With --service-principal: register a certificate on it (key and certificate in one
    /// PEM file) and print AZURE_CLIENT_CERTIFICATE_PATH instead of AZURE_CLIENT_SECRET.
    #[arg(long, requires = "service_principal")]
    client_certificate: bool,
    /// Also write the `export` lines to this file (written atomically once everything is up).
    #[arg(long, value_name = "PATH")]
    env_file: Option<PathBuf>,
}

const AFTER_HELP: &str = concat!(
    "Printed variables: IDENTITY_ENDPOINT IDENTITY_HEADER AZURE_POSTGRESQL_HOST AZURE_POSTGRESQL_PORT\n",
    "AZURE_POSTGRESQL_NAME AZURE_POSTGRESQL_USER PGHOST PGPORT PGDATABASE PGUSER PGSSLMODE=verify-full\n",
    "PGSSLROOTCERT PATH (the `az` and `azd` stand-ins first) ENTRA_EMULATOR_ADMIN ENTRA_EMULATOR_PID\n",
    "ENTRA_EMULATOR_CLUSTER_PORT ENTRA_EMULATOR_CLUSTER_SOCKET_DIR (the cluster itself, trust auth)\n",
    "With --service-principal or --workload-identity, instead of IDENTITY_ENDPOINT/IDENTITY_HEADER:\n",
    "AZURE_TENANT_ID AZURE_CLIENT_ID AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH with\n",
    "--client-certificate) or AZURE_FEDERATED_TOKEN_FILE AZURE_AUTHORITY_HOST\n",
    "(the emulator's Entra authority, https://localhost:P) SSL_CERT_FILE (its CA).\n\n",
    "From a shell script:\n",
    "  eval \"$( (entra-emulator up --token-lifetime 60s &) | sed -n '/^ready$/q;p')\"\n",
    "  trap 'kill \"$ENTRA_EMULATOR_PID\"' EXIT   # SIGTERM stops it and cleans up\n",
    "  ...                                  # the emulator keeps running in the background\n",
    "(`sed -n ... q;p` keeps the `ready` line out of eval; without `( ... &)` the shell would wait\n",
    "for the emulator to exit.)\n",
    "or: entra-emulator up --env-file /tmp/emu.env & then wait for the file and `. /tmp/emu.env`.\n\n",
    "`az` and `azd` on that PATH are shims that run `entra-emulator az ...` and `entra-emulator azd ...`.\n\n",
    "psql with a token: PGPASSWORD=\"$(az account get-access-token --resource-type oss-rdbms --query accessToken -o tsv)\" \\\n",
    "  PGUSER=dev@contoso.example psql\n\n",
);

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@,+%".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

fn main() -> std::process::ExitCode {
    // `entra-emulator az ...` and `entra-emulator azd ...`: the CLI stand-ins behind the
    // shims that `up` puts first on PATH.
    let mut args = std::env::args_os().skip(1).peekable();
    if args.peek().is_some_and(|a| a == "az" || a == "azd") {
        let status = entra_emulator::standin::run(args);
        return std::process::ExitCode::from(u8::try_from(status).unwrap_or(1));
    }
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ENTRA_EMULATOR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("entra-emulator: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let Command::Up(up) = cli.command;
    match rt.block_on(run(up)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("entra-emulator: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(up: Up) -> Result<(), Box<dyn std::error::Error>> {
    let mut b = Emulator::builder()
        .token_lifetime(up.token_lifetime)
        .default_identity_name(&up.identity)
        .user(&up.user)
        .database(&up.database)
        .max_connections(up.max_connections);
    // This binary answers as `az` and `azd` itself.
    if let Ok(exe) = std::env::current_exe() {
        b = b.cli_program(exe);
    }
    for name in &up.user_assigned {
        b = b.identity(IdentitySpec::user_assigned(name));
    }
    for rp in &up.password_roles {
        let Some((role, pw)) = rp.split_once(':') else {
            return Err(format!("--password-role wants ROLE:PASSWORD, got {rp:?}").into());
        };
        b = b.password_role(role, pw);
    }
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut sighup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let emu = tokio::select! {
        r = b.start() => r?,
        _ = tokio::signal::ctrl_c() => return Ok(()),
        _ = sigterm.recv() => return Ok(()),
    };
    let mut lines = String::new();
    let mut env = if let Some(name) = &up.service_principal {
        let sp = emu.add_service_principal(name).await?;
        if up.client_certificate {
            let cert = emu.add_client_certificate(&sp)?;
            emu.service_principal_certificate_env(&sp, &cert)
        } else {
            emu.service_principal_env(&sp)
        }
    } else if let Some(name) = &up.workload_identity {
        let mi = emu.add_identity(IdentitySpec::user_assigned(name)).await?;
        let subject = format!("system:serviceaccount:default:{name}");
        emu.add_federated_credential(&mi.client_id, &subject)?;
        let file = emu.write_federated_token_file(&subject)?;
        emu.workload_identity_env(&mi.name, &mi.client_id, &file)
    } else {
        emu.env()
    };
    env.push(("ENTRA_EMULATOR_PID".into(), std::process::id().to_string()));
    // The cluster behind the front (trust authentication), for direct baselines.
    env.push((
        "ENTRA_EMULATOR_CLUSTER_PORT".into(),
        emu.cluster().port().to_string(),
    ));
    env.push((
        "ENTRA_EMULATOR_CLUSTER_SOCKET_DIR".into(),
        emu.cluster().socket_dir().display().to_string(),
    ));
    for (k, v) in &env {
        lines.push_str(&format!("export {k}={}\n", shell_quote(v)));
    }
    if let Some(path) = &up.env_file {
        let tmp = path.with_extension("tmp-entra-emulator");
        // Owner-only: the lines hold IDENTITY_HEADER, and a client secret with
        // --service-principal.
        {
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(lines.as_bytes())?;
        }
        std::fs::rename(&tmp, path)?;
    }
    {
        // A closed stdout (e.g. `sed '/^ready$/q'` has quit) must not stop the emulator.
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(lines.as_bytes());
        let _ = out.write_all(b"ready\n");
        let _ = out.flush();
    }
    eprintln!(
        "entra-emulator: front on localhost:{}, identity endpoint {}, admin API {} (GET / for help); Ctrl-C stops it",
        emu.pg_port(),
        emu.identity_endpoint(),
        emu.admin_url()
    );
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = sigterm.recv() => {}
        _ = sighup.recv() => {}
    }
    if let Some(path) = &up.env_file {
        // Only if it is still ours (another emulator may have been given the same path).
        if std::fs::read_to_string(path).is_ok_and(|s| s == lines) {
            let _ = std::fs::remove_file(path);
        }
    }
    emu.shutdown().await;
    Ok(())
}

fn after_help() -> String {
    format!("{AFTER_HELP}{ADMIN_API_HELP}")
}
