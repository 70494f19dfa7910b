//! Serving an axum router over TLS (HTTP/1.1), for the Entra authority: the credentials
//! that talk to it refuse anything but HTTPS.

use std::sync::Arc;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::state::{Shared, bump};

/// Accepts connections on `listener` for ever; each one is a TLS handshake with
/// `acceptor`, then HTTP/1.1 served by `router`. While the identity outage fault is on,
/// new connections are closed at once, as the plain-HTTP endpoints do.
pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    shared: Arc<Shared>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        if shared.identity_outage() {
            bump(&shared.counters.identity_requests);
            bump(&shared.counters.identity_requests_refused);
            drop(tcp);
            continue;
        }
        let _ = tcp.set_nodelay(true);
        let (acceptor, service) = (acceptor.clone(), TowerToHyperService::new(router.clone()));
        tokio::spawn(async move {
            // A client that fails the handshake (it does not trust the CA) just goes away.
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}
