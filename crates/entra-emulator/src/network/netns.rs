//! A private network and mount namespace for the process, so that the emulator's network
//! faults (packet filter rules, conntrack settings, `/etc/hosts` lines) stay inside it.
//!
//! The process re-runs itself under `unshare --net --mount` (as root) and the real work
//! happens in that child: its network has only a loopback interface, and its `/etc/hosts`
//! is a private copy. Nothing here ever changes the host's network namespace: the setup
//! refuses to run unless the namespaces are provably not the ones the process started in.
//!
//! In a libtest test:
//!
//! ```no_run
//! #[test]
//! fn a_failover_costs_seconds() {
//!     if !entra_emulator::netns::isolated("a_failover_costs_seconds") {
//!         return; // the test ran in a child process, in its own namespace
//!     }
//!     // Here: in the namespace, as root.
//! }
//! ```
//!
//! In a program's `main` ([`reexec_isolated`]):
//!
//! ```no_run
//! if let Some(status) = entra_emulator::netns::reexec_isolated().expect("a network namespace") {
//!     std::process::exit(status.code().unwrap_or(1));
//! }
//! // Here: in the namespace.
//! ```

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::sync::OnceLock;

use super::command::run;
use super::{hosts, iptables};
use crate::error::Error;

/// Set (to `1`) in the child that runs in the namespace.
pub const NETNS_ENV: &str = "ENTRA_EMULATOR_NETNS";
/// The parent's namespaces (`net:[N] mnt:[M]`), which the child must not be in.
const OUTER_ENV: &str = "ENTRA_EMULATOR_NETNS_OUTER";
/// A file the child writes its test's name to, so that the parent knows the test ran.
const RAN_ENV: &str = "ENTRA_EMULATOR_NETNS_RAN";

static SETUP: OnceLock<Result<(), String>> = OnceLock::new();

/// Run the libtest test `test_name` in a private network namespace.
///
/// Outside one: re-runs this test binary as `unshare --net --mount -- <exe> <test_name>
/// --exact --nocapture --test-threads=1`, waits for it, panics if it failed, and returns
/// `false`: the caller returns, the test ran in the child. In the child: sets the
/// namespace up once ([`enter`]) and returns `true`.
///
/// `test_name` is the test's full libtest name, module path included, as `cargo test --
/// --list` shows it (`network::a_partition_heals`). Needs root (CI runs as root): a test
/// run as another user panics and says so.
///
/// # Panics
///
/// When not root, when `unshare` cannot run, when the test failed in the child, when no
/// test of that name ran there, or when the namespace cannot be set up.
pub fn isolated(test_name: &str) -> bool {
    if let Some(thread) = std::thread::current().name()
        && thread != "main"
        && thread != test_name
    {
        panic!(
            "netns::isolated({test_name:?}) called from the test {thread:?}: pass the test's own \
             full name"
        );
    }
    if std::env::var_os(NETNS_ENV).is_some() {
        if let Err(e) = enter() {
            panic!("{e}");
        }
        if let Some(ran) = std::env::var_os(RAN_ENV) {
            let _ = std::fs::write(ran, test_name);
        }
        return true;
    }
    if let Err(e) = require_root() {
        panic!("the test {test_name:?} {e}");
    }
    let ran = tempfile::Builder::new()
        .prefix("entra-emulator-netns-")
        .tempfile()
        .unwrap_or_else(|e| panic!("cannot make a temporary file: {e}"));
    let exe = std::env::current_exe()
        .unwrap_or_else(|e| panic!("cannot find the test executable to re-run: {e}"));
    let args: Vec<OsString> = [
        test_name,
        "--exact",
        "--nocapture",
        "--include-ignored",
        "--test-threads=1",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    let status = unshare(&exe, args)
        .env(RAN_ENV, ran.path())
        .status()
        .unwrap_or_else(|e| panic!("cannot run `unshare` (Debian package util-linux): {e}"));
    if !status.success() {
        panic!(
            "the test {test_name:?} failed in its network namespace ({status}); its output is above"
        );
    }
    let ran_name = std::fs::read_to_string(ran.path()).unwrap_or_default();
    if ran_name != test_name {
        panic!(
            "no test named {test_name:?} ran in the network namespace: pass the test's full \
             libtest name, module path included, as `cargo test -- --list` shows it"
        );
    }
    false
}

/// Run this program again in a private network namespace, with the same arguments.
///
/// Outside one: runs `unshare --net --mount -- <exe> <args...>`, waits, and returns
/// `Ok(Some(status))`: the caller exits with that status. In the child: sets the namespace
/// up ([`enter`]) and returns `Ok(None)`: the caller goes on. Needs root.
///
/// Ctrl-C reaches both processes (they share the terminal's process group); the parent
/// keeps waiting only if it handles the signal.
pub fn reexec_isolated() -> std::io::Result<Option<ExitStatus>> {
    if std::env::var_os(NETNS_ENV).is_some() {
        enter().map_err(std::io::Error::other)?;
        return Ok(None);
    }
    require_root()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::PermissionDenied, e.to_string()))?;
    let exe = std::env::current_exe()?;
    let status = unshare(&exe, std::env::args_os().skip(1).collect())
        .status()
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot run `unshare` (Debian package util-linux): {e}"),
            )
        })?;
    Ok(Some(status))
}

/// Set up the private namespace this process runs in, once: check that it is not the
/// namespace the process was started from (nor pid 1's, when that can be read), bring up
/// the loopback interface, make the kernel track connections (see [`crate::network::Network::idle_drop`]),
/// and bind-mount a private copy of `/etc/hosts`.
///
/// [`isolated`] and [`reexec_isolated`] call it in the child; the emulator calls it when
/// it starts with [`crate::builder::EmulatorBuilder::azure_network`] (idempotent). Outside a
/// namespace made by them, it refuses.
pub fn enter() -> Result<(), Error> {
    SETUP
        .get_or_init(|| setup().map_err(|e| e.to_string()))
        .clone()
        .map_err(Error::Network)
}

/// Whether this process has set up its private namespace ([`enter`] succeeded): only
/// then do the network faults run.
pub fn in_private_namespace() -> bool {
    matches!(SETUP.get(), Some(Ok(())))
}

/// An error unless [`in_private_namespace`].
pub(crate) fn require() -> Result<(), Error> {
    if in_private_namespace() {
        Ok(())
    } else {
        Err(Error::Network(
            "not in a private network namespace: network faults run only there (start the \
             test with entra_emulator::netns::isolated, or the program with \
             netns::reexec_isolated)"
                .into(),
        ))
    }
}

fn setup() -> Result<(), Error> {
    check_private()?;
    run("ip", &["link", "set", "lo", "up"], None)?;
    iptables::track_connections()?;
    hosts::mount_private()?;
    tracing::debug!("in a private network namespace");
    Ok(())
}

/// `net:[N] mnt:[M]` of this process.
fn namespaces(pid: &str) -> std::io::Result<(String, String)> {
    let link = |ns: &str| {
        std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).map(|p| p.to_string_lossy().into_owned())
    };
    Ok((link("net")?, link("mnt")?))
}

/// Refuse unless this process's network and mount namespaces differ from those of the
/// process that re-ran it and from pid 1's; at least one of those must be known.
fn check_private() -> Result<(), Error> {
    let own = namespaces("self")
        .map_err(|e| Error::Network(format!("cannot read this process's namespaces: {e}")))?;
    let mut references = Vec::new();
    if let Some((net, mnt)) = std::env::var(OUTER_ENV).ok().and_then(|s| {
        s.split_once(' ')
            .map(|(n, m)| (n.to_string(), m.to_string()))
    }) {
        references.push(("the process that started this one", (net, mnt)));
    }
    // Often unreadable (it takes ptrace rights over pid 1), then the parent's word counts.
    if let Ok(init) = namespaces("1") {
        references.push(("pid 1", init));
    }
    if references.is_empty() {
        return Err(Error::Network(
            "cannot tell this network namespace from the host's: start through \
             entra_emulator::netns::isolated or netns::reexec_isolated"
                .into(),
        ));
    }
    for (whose, (net, mnt)) in references {
        if own.0 == net || own.1 == mnt {
            return Err(Error::Network(format!(
                "refusing to change the network of {whose}'s namespace ({} {}): network faults \
                 run only in a private network and mount namespace",
                own.0, own.1
            )));
        }
    }
    Ok(())
}

fn require_root() -> Result<(), Error> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    if euid == "0" {
        Ok(())
    } else {
        Err(Error::Network(format!(
            "needs root for a network namespace (unshare --net --mount, iptables); running as \
             uid {euid}"
        )))
    }
}

/// `unshare --net --mount --propagation private -- exe args`, marked as the child.
fn unshare(exe: &Path, args: Vec<OsString>) -> Command {
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "--mount", "--propagation", "private", "--"])
        .arg(exe)
        .args(args)
        .env(NETNS_ENV, "1");
    if let Ok((net, mnt)) = namespaces("self") {
        cmd.env(OUTER_ENV, format!("{net} {mnt}"));
    }
    cmd
}
