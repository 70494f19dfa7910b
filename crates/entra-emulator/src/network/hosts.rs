//! The name → address table: the namespace's private `/etc/hosts`.
//!
//! glibc reads `/etc/hosts` again on every lookup (`hosts: files dns`, no nscd), so
//! rewriting the file changes what a name resolves to at the next login, as a DNS change
//! does. The file is a private copy bind-mounted over `/etc/hosts` in the namespace's own
//! mount namespace ([`mount_private`]). It is rewritten in place: the mount shows that one
//! inode (renaming a new file over a mount point fails), and a flip between the nodes
//! keeps the file's length, so a reader never finds it empty or half-written.

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::unix::fs::FileExt;
use std::sync::Mutex;

use super::command::run;
use crate::error::Error;

const HOSTS: &str = "/etc/hosts";
/// Prefix of the temporary directory the private copy is made in; the mount's source in
/// `/proc/self/mountinfo` starts with it, which tells our mount from any other.
const COPY_PREFIX: &str = "entra-emulator-hosts-";

/// One writer at a time (several emulators may share the namespace).
static LOCK: Mutex<()> = Mutex::new(());

/// Whether `/etc/hosts` is our private copy (in this mount namespace).
pub(crate) fn is_private() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines().any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() > 4 && f[4] == HOSTS && f[3].contains(COPY_PREFIX)
            })
        })
        .unwrap_or(false)
}

/// Bind-mount a private copy of `/etc/hosts` over it, unless one is there already (another
/// process of the same namespace made it). Only for a private mount namespace: the caller
/// has checked.
pub(crate) fn mount_private() -> Result<(), Error> {
    if is_private() {
        return Ok(());
    }
    let dir = tempfile::Builder::new()
        .prefix(COPY_PREFIX)
        .tempdir()
        .map_err(|e| Error::io("cannot make a directory for the private hosts file", e))?;
    let copy = dir.path().join("hosts");
    let original = std::fs::read_to_string(HOSTS).unwrap_or_default();
    std::fs::write(&copy, original)
        .map_err(|e| Error::io(format!("cannot write {}", copy.display()), e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644))
        .map_err(|e| Error::io("cannot chmod the private hosts file", e))?;
    let copy_str = copy.to_string_lossy();
    run("mount", &["--bind", &copy_str, HOSTS], None)?;
    // The mount holds the file: the directory can go, so nothing is left behind when the
    // namespace ends.
    let _ = dir.close();
    Ok(())
}

/// Point `names` at `addr` for server `server` as written by `owner` (one [`Network`]
/// of this namespace): its lines replace every line for `server` (the last server started
/// under a name has it).
///
/// [`Network`]: super::Network
pub(crate) fn set(
    server: &str,
    owner: &str,
    addr: Ipv4Addr,
    names: &[String],
) -> Result<(), Error> {
    let line = format!("{addr} {} {}", names.join(" "), marker(server, owner));
    rewrite(|old| with_line(old, server, owner, Some(&line)))
}

/// Remove `owner`'s lines for `server` (another owner's stay).
pub(crate) fn remove(server: &str, owner: &str) -> Result<(), Error> {
    rewrite(|old| with_line(old, server, owner, None))
}

const MARKER: &str = "# entra-emulator server ";

fn marker(server: &str, owner: &str) -> String {
    format!("{MARKER}{server} {owner}")
}

fn rewrite(change: impl FnOnce(&str) -> String) -> Result<(), Error> {
    if !is_private() {
        return Err(Error::Network(
            "/etc/hosts is not the namespace's private copy: refusing to change it".into(),
        ));
    }
    let _one = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let io = |e| Error::io(format!("cannot rewrite {HOSTS}"), e);
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(HOSTS)
        .map_err(io)?;
    let mut old = String::new();
    f.read_to_string(&mut old).map_err(io)?;
    let new = change(&old);
    if new == old {
        return Ok(());
    }
    // In place, from the start, then cut to length: the same inode, and no moment when
    // the file is empty.
    f.write_all_at(new.as_bytes(), 0).map_err(io)?;
    f.set_len(new.len() as u64).map_err(io)?;
    f.flush().map_err(io)
}

/// `hosts` with `line` in place of every line for `server` (or, removing, without
/// `owner`'s lines for it), everything else kept; a new line goes at the end.
fn with_line(hosts: &str, server: &str, owner: &str, line: Option<&str>) -> String {
    let mine = marker(server, owner);
    let of_server = format!("{server} ");
    let replaced = |l: &str| match line {
        Some(_) => l
            .rsplit_once(MARKER)
            .is_some_and(|(_, rest)| rest.starts_with(&of_server)),
        None => l.ends_with(&mine),
    };
    let mut out = String::with_capacity(hosts.len() + 160);
    let mut placed = line.is_none();
    for l in hosts.lines() {
        if !replaced(l) {
            out.push_str(l);
            out.push('\n');
        } else if !placed {
            out.push_str(line.unwrap_or_default());
            out.push('\n');
            placed = true;
        }
    }
    if !placed {
        out.push_str(line.unwrap_or_default());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_lines_are_replaced_in_place_and_the_rest_kept() {
        let original = "127.0.0.1 localhost\n::1 localhost ip6-localhost\n";
        let line = |ip, owner| format!("{ip} a.postgres.database.azure.com {}", marker("a", owner));
        let one = with_line(original, "a", "1.1", Some(&line("127.0.0.1", "1.1")));
        assert_eq!(
            one,
            format!(
                "{original}127.0.0.1 a.postgres.database.azure.com # entra-emulator server a 1.1\n"
            )
        );
        let two = with_line(&one, "a", "1.1", Some(&line("127.0.0.2", "1.1")));
        assert_eq!(two.len(), one.len(), "a flip keeps the length");
        assert!(two.contains("127.0.0.2 a.postgres") && !two.contains("127.0.0.1 a.postgres"));
        // Another server's lines are not ours.
        let b = format!("127.0.0.3 b {}", marker("b", "1.1"));
        let other = with_line(&two, "b", "1.1", Some(&b));
        assert_eq!(with_line(&other, "b", "1.1", None), two);
        assert_eq!(with_line(&two, "a", "1.1", None), original);
        // A later network of the same name takes the name; the earlier one's removal
        // leaves it.
        let later = with_line(&two, "a", "1.2", Some(&line("127.0.0.1", "1.2")));
        assert_eq!(
            later,
            with_line(original, "a", "1.2", Some(&line("127.0.0.1", "1.2")))
        );
        assert_eq!(with_line(&later, "a", "1.1", None), later);
        // A file without a final newline keeps its lines.
        assert_eq!(
            with_line("127.0.0.1 localhost", "a", "1.1", None),
            "127.0.0.1 localhost\n"
        );
    }
}
