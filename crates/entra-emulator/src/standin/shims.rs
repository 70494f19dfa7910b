//! The `az` and `azd` shims: two-line shell scripts that run the emulator binary as the
//! tool, with the emulator's port in [`super::PORT_ENV`]; and where that binary is found.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// The executable's name that [`resolve_program`] looks for.
const BINARY: &str = "entra-emulator";

/// The program that answers as `az`/`azd`: `explicit`, else `ENTRA_EMULATOR_BIN`, else an
/// `entra-emulator` beside the running executable or one directory up (cargo puts test
/// executables in `target/debug/deps/` and binaries in `target/debug/`).
pub(crate) fn resolve_program(explicit: Option<PathBuf>) -> Option<PathBuf> {
    resolve_from(
        explicit,
        std::env::var_os("ENTRA_EMULATOR_BIN"),
        std::env::current_exe().ok(),
    )
}

/// [`resolve_program`] with the environment variable's value and the running executable
/// given.
fn resolve_from(
    explicit: Option<PathBuf>,
    from_env: Option<std::ffi::OsString>,
    exe: Option<PathBuf>,
) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p);
    }
    if let Some(p) = from_env.filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let exe = exe?;
    let dir = exe.parent()?;
    [Some(dir), dir.parent()]
        .into_iter()
        .flatten()
        .map(|d| d.join(BINARY))
        .find(|p| p.is_file())
}

/// Write `az` and `azd` into `dir`. With no program, each prints why it cannot run and
/// exits 1 (not 127, which credentials report as "not installed" without the message).
pub(crate) fn write_shims(dir: &Path, program: Option<&Path>, port: u16) -> Result<(), Error> {
    fs::create_dir_all(dir).map_err(|e| Error::io("cannot create the az directory", e))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
        .map_err(|e| Error::io("cannot chmod the az directory", e))?;
    for tool in ["az", "azd"] {
        let body = match program {
            Some(p) => format!(
                "# `{tool}` stand-in written by entra-emulator: the emulator binary answers as {tool},\n\
                 # asking the emulator on 127.0.0.1:{port}.\n\
                 {env}={port} exec {program} {tool} \"$@\"\n",
                env = super::PORT_ENV,
                program = sh_quote(&p.to_string_lossy()),
            ),
            None => format!(
                "echo 'ERROR: entra-emulator wrote this `{tool}` without an emulator binary to run: \
                 build it (cargo build -p entra-emulator) and set ENTRA_EMULATOR_BIN, or give \
                 EmulatorBuilder::cli_program' >&2\nexit 1\n"
            ),
        };
        let path = dir.join(tool);
        fs::write(&path, format!("#!/bin/sh\n{body}"))
            .map_err(|e| Error::io(format!("cannot write {tool}"), e))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io(format!("cannot chmod {tool}"), e))?;
    }
    Ok(())
}

/// `s` as one single-quoted shell word.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_program_is_the_explicit_one_then_the_variable_then_a_sibling() {
        let tmp = tempfile::tempdir().unwrap();
        let deps = tmp.path().join("deps");
        std::fs::create_dir_all(&deps).unwrap();
        let exe = Some(deps.join("scenarios-0123"));
        let explicit = Some(PathBuf::from("/x/explicit"));
        let var = Some(std::ffi::OsString::from("/x/from-env"));
        assert_eq!(
            resolve_from(explicit.clone(), var.clone(), exe.clone()),
            explicit
        );
        assert_eq!(
            resolve_from(None, var, exe.clone()),
            Some(PathBuf::from("/x/from-env"))
        );
        // An empty variable counts as unset; no binary anywhere: none.
        let empty = Some(std::ffi::OsString::new());
        assert_eq!(resolve_from(None, empty.clone(), exe.clone()), None);
        // cargo's layout: the binary one directory above the test's `deps/`.
        std::fs::write(tmp.path().join(BINARY), "").unwrap();
        assert_eq!(
            resolve_from(None, empty, exe),
            Some(tmp.path().join(BINARY))
        );
    }

    #[test]
    fn shell_quoting_keeps_quotes_and_spaces_in_one_word() {
        assert_eq!(sh_quote("/a b/it's"), r"'/a b/it'\''s'");
    }
}
