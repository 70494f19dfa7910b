//! Lets the real `azure_identity::ManagedIdentityCredential` reach the in-process emulator.
//!
//! That credential reads `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` from the process
//! environment, but the emulator's endpoint is only known once it has started, when the
//! environment can no longer be changed (`set_var` is `unsafe` and this crate forbids
//! unsafe code). So `churn` picks a free loopback port and a header first, re-runs itself
//! with both in its environment, and the child relays that port to the emulator's identity
//! endpoint, swapping the header for the emulator's. One HTTP request per connection.

use std::net::SocketAddr;
use std::process::{Command, ExitCode};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Set in the child: the relay's port.
pub const PORT_VAR: &str = "CHURN_MI_RELAY_PORT";

/// The relay port when this process is the re-run child.
pub fn child_port() -> Option<u16> {
    std::env::var(PORT_VAR).ok()?.parse().ok()
}

/// Re-runs this program with `IDENTITY_ENDPOINT`/`IDENTITY_HEADER` pointing at a relay
/// port, and returns its exit code. `None` when that cannot be arranged (the caller then
/// goes on in-process with an explicit token source).
pub fn rerun_with_identity_env() -> Option<ExitCode> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let header: String = {
        use rand::Rng;
        let mut rng = rand::rng();
        (0..32)
            .map(|_| char::from_digit(rng.random_range(0..16u32), 16).unwrap_or('0'))
            .collect()
    };
    let exe = std::env::current_exe().ok()?;
    let status = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(
            "IDENTITY_ENDPOINT",
            format!("http://127.0.0.1:{port}/msi/token"),
        )
        .env("IDENTITY_HEADER", header)
        .env(PORT_VAR, port.to_string())
        .status()
        .ok()?;
    Some(ExitCode::from(
        status.code().unwrap_or(2).clamp(0, 255) as u8
    ))
}

/// Serves the relay on `port` until the runtime stops.
pub async fn serve(port: u16, upstream: SocketAddr, emulator_header: String) -> Result<(), String> {
    let ours = std::env::var("IDENTITY_HEADER").unwrap_or_default();
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("identity relay on port {port}: {e}"))?;
    tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                continue;
            };
            let (ours, theirs) = (ours.clone(), emulator_header.clone());
            tokio::spawn(async move {
                let _ = relay_one(conn, upstream, &ours, &theirs).await;
            });
        }
    });
    Ok(())
}

async fn relay_one(
    mut client: TcpStream,
    upstream: SocketAddr,
    ours: &str,
    theirs: &str,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(2048);
    let end = loop {
        let mut tmp = [0u8; 2048];
        let n = client.read(&mut tmp).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 {
            return Ok(());
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut out = String::with_capacity(head.len() + 64);
    for (i, line) in head.split("\r\n").enumerate() {
        if i > 0 {
            let name = line.split(':').next().unwrap_or("").trim();
            if name.eq_ignore_ascii_case("connection") {
                continue;
            }
            if name.eq_ignore_ascii_case("x-identity-header") {
                let value = line.split_once(':').map(|x| x.1.trim()).unwrap_or("");
                // Only the header this process was given is swapped: a wrong one still fails.
                let value = if value == ours { theirs } else { value };
                out.push_str(&format!("{name}: {value}\r\n"));
                continue;
            }
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(out.as_bytes()).await?;
    up.write_all(&buf[end + 4..]).await?;
    tokio::io::copy(&mut up, &mut client).await?;
    client.shutdown().await?;
    Ok(())
}
