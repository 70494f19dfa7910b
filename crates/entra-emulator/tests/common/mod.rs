//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use entra_emulator::Emulator;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// rustls client config trusting only the emulator's CA, with an explicit provider.
pub fn tls(ca: &std::path::Path) -> MakeRustlsConnect {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read CA") {
        roots.add(cert.expect("parse CA")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    MakeRustlsConnect::new(cfg)
}

/// Connection settings for the front as `user` with `password`, TLS required.
pub fn config(
    host: &str,
    port: u16,
    db: &str,
    user: &str,
    password: &str,
) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    c.host(host)
        .port(port)
        .dbname(db)
        .user(user)
        .password(password)
        .ssl_mode(SslMode::Require)
        .connect_timeout(Duration::from_secs(10));
    c
}

/// Log in through the front (verifying the CA and the host name `localhost`).
pub async fn login(
    emu: &Emulator,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let cfg = config(emu.pg_host(), emu.pg_port(), emu.database(), user, password);
    let (client, conn) = cfg.connect(tls(emu.ca_cert_path())).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// SQLSTATE and message of a refused login.
pub fn db_error(e: &tokio_postgres::Error) -> (String, String) {
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("expected a server error, got {e}"));
    (db.code().code().to_string(), db.message().to_string())
}

/// Bounded: every test step gets at most this long.
pub async fn bounded<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), f)
        .await
        .expect("test step timed out")
}
