//! The stand-ins' one HTTP request to the emulator's identity port (hyper, HTTP/1.1 over
//! loopback, on a current-thread runtime for the life of the call).

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;

/// The emulator's answer: status code and body text.
pub(crate) struct Answer {
    pub status: u16,
    pub body: String,
}

/// `GET path` on `127.0.0.1:port` with `headers`. The error is a sentence for the user.
pub(crate) fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Result<Answer, String> {
    let unreachable = |e: &dyn std::fmt::Display| {
        format!("cannot reach entra-emulator on 127.0.0.1:{port} (is it running?): {e}")
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime: {e}"))?;
    let mut request = Request::get(path).header(hyper::header::HOST, format!("127.0.0.1:{port}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("invalid request: {e}"))?;
    rt.block_on(async {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| unreachable(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
        tokio::spawn(connection);
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(&e))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(&e))?
            .to_bytes();
        Ok(Answer {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    })
}
