//! Running the system's network tools (`ip`, `mount`, `iptables-restore`) with errors that
//! say what failed.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::Error;

/// Run `program args`, feeding it `stdin` if given; an error carries the command line,
/// the exit status and what the program said on stderr.
pub(crate) fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<(), Error> {
    let line = || format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            let hint = match program {
                "iptables" | "iptables-restore" => " (install the Debian package `iptables`)",
                "ip" => " (install the Debian package `iproute2`)",
                _ => "",
            };
            Error::Network(format!("cannot run `{}`: {e}{hint}", line()))
        })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .map_err(|e| Error::Network(format!("cannot feed `{}`: {e}", line())))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Network(format!("`{}` did not finish: {e}", line())))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Network(format!(
            "`{}` failed ({}): {}",
            line(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
