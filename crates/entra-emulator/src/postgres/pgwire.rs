//! The few PostgreSQL wire-protocol pieces the front and the cluster admin need.

use std::path::Path;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub(crate) const SSL_REQUEST: i32 = 80877103;
pub(crate) const GSSENC_REQUEST: i32 = 80877104;
pub(crate) const CANCEL_REQUEST: i32 = 80877102;

/// Largest startup packet we accept (PostgreSQL's own limit is 10000).
const MAX_STARTUP: usize = 10_000;

/// Read a startup-phase packet (no type byte): returns the code and the rest of the body.
pub(crate) async fn read_startup<S: AsyncRead + Unpin>(
    s: &mut S,
) -> std::io::Result<(i32, Vec<u8>)> {
    let len = s.read_i32().await?;
    let len = usize::try_from(len).unwrap_or(0);
    if !(8..=MAX_STARTUP).contains(&len) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "bad startup packet length",
        ));
    }
    let code = s.read_i32().await?;
    let mut body = vec![0u8; len - 8];
    s.read_exact(&mut body).await?;
    Ok((code, body))
}

/// Parse the key/value pairs of a StartupMessage body (after the protocol version).
pub(crate) fn parse_params(body: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut it = body.split(|&b| b == 0);
    while let Some(k) = it.next() {
        if k.is_empty() {
            break;
        }
        let v = it.next().unwrap_or_default();
        out.push((
            String::from_utf8_lossy(k).into_owned(),
            String::from_utf8_lossy(v).into_owned(),
        ));
    }
    out
}

/// Encode a StartupMessage (protocol `version`, params).
pub(crate) fn startup_message(version: i32, params: &[(String, String)]) -> Vec<u8> {
    let mut body = BytesMut::new();
    body.put_i32(version);
    for (k, v) in params {
        body.put_slice(k.as_bytes());
        body.put_u8(0);
        body.put_slice(v.as_bytes());
        body.put_u8(0);
    }
    body.put_u8(0);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Read one typed message: (type, body).
pub(crate) async fn read_message<S: AsyncRead + Unpin>(
    s: &mut S,
    max: usize,
) -> std::io::Result<(u8, Vec<u8>)> {
    let ty = s.read_u8().await?;
    let len = s.read_i32().await?;
    let len = usize::try_from(len).unwrap_or(0);
    if len < 4 || len - 4 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "bad message length",
        ));
    }
    let mut body = vec![0u8; len - 4];
    s.read_exact(&mut body).await?;
    Ok((ty, body))
}

/// Encode a typed message.
pub(crate) fn message(ty: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(ty);
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// An ErrorResponse with severity FATAL.
pub(crate) fn fatal(code: &str, msg: &str) -> Vec<u8> {
    let mut b = Vec::new();
    for (t, v) in [(b'S', "FATAL"), (b'V', "FATAL"), (b'C', code), (b'M', msg)] {
        b.push(t);
        b.extend_from_slice(v.as_bytes());
        b.push(0);
    }
    b.push(0);
    message(b'E', &b)
}

/// Parse an ErrorResponse body into (SQLSTATE, message).
pub(crate) fn parse_error(body: &[u8]) -> (String, String) {
    let (mut code, mut msg) = (String::new(), String::new());
    for field in body.split(|&b| b == 0) {
        if let Some((&t, v)) = field.split_first() {
            match t {
                b'C' => code = String::from_utf8_lossy(v).into_owned(),
                b'M' => msg = String::from_utf8_lossy(v).into_owned(),
                _ => {}
            }
        }
    }
    (code, msg)
}

/// Run SQL with the simple-query protocol over the cluster's unix socket, trust auth.
/// Returns the rows of the last statement as text.
pub(crate) async fn simple_query(
    socket_dir: &Path,
    port: u16,
    user: &str,
    database: &str,
    sql: &str,
) -> Result<Vec<Vec<Option<String>>>, (String, String)> {
    let io = |e: std::io::Error| ("08006".to_string(), e.to_string());
    let path = socket_dir.join(format!(".s.PGSQL.{port}"));
    let mut s = tokio::net::UnixStream::connect(&path).await.map_err(io)?;
    let params = vec![
        ("user".to_string(), user.to_string()),
        ("database".to_string(), database.to_string()),
    ];
    s.write_all(&startup_message(196608, &params))
        .await
        .map_err(io)?;
    loop {
        let (ty, body) = read_message(&mut s, 1 << 20).await.map_err(io)?;
        match ty {
            b'E' => return Err(parse_error(&body)),
            b'R' if body.get(..4) != Some(&[0, 0, 0, 0]) => {
                return Err(("28000".into(), "cluster asked for a password".into()));
            }
            b'Z' => break,
            _ => {}
        }
    }
    let mut q = sql.as_bytes().to_vec();
    q.push(0);
    s.write_all(&message(b'Q', &q)).await.map_err(io)?;
    let mut rows = Vec::new();
    let mut err = None;
    loop {
        let (ty, body) = read_message(&mut s, 1 << 24).await.map_err(io)?;
        match ty {
            b'E' => err = Some(parse_error(&body)),
            b'T' => rows.clear(),
            b'D' => rows.push(parse_data_row(&body)),
            b'Z' => break,
            _ => {}
        }
    }
    let _ = s.write_all(&message(b'X', &[])).await;
    match err {
        Some(e) => Err(e),
        None => Ok(rows),
    }
}

fn parse_data_row(body: &[u8]) -> Vec<Option<String>> {
    let mut out = Vec::new();
    if body.len() < 2 {
        return out;
    }
    let n = u16::from_be_bytes([body[0], body[1]]);
    let mut pos = 2;
    for _ in 0..n {
        let Some(lb) = body.get(pos..pos + 4) else {
            break;
        };
        let len = i32::from_be_bytes([lb[0], lb[1], lb[2], lb[3]]);
        pos += 4;
        if len < 0 {
            out.push(None);
        } else {
            let end = pos + len as usize;
            out.push(
                body.get(pos..end)
                    .map(|v| String::from_utf8_lossy(v).into_owned()),
            );
            pos = end;
        }
    }
    out
}

/// Quote an SQL identifier.
pub(crate) fn ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Quote an SQL string literal.
pub(crate) fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Write all, then flush.
pub(crate) async fn send<S: AsyncWrite + Unpin>(s: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    s.write_all(bytes).await?;
    s.flush().await
}
