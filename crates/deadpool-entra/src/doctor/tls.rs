//! Check 7: the TLS handshake, verified exactly as the pool verifies it (the same rustls
//! configuration, roots and mode), with the certificate the server showed.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use rustls::{
    CertificateError, DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::report::{Check, CheckName};
use crate::{
    config::Config,
    config::SslMode,
    tls::{client_config_watched, roots_text},
};

/// PostgreSQL's SSLRequest: length 8, code 80877103.
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// How long the handshake may take.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(10);

/// Hands every check to the pool's verifier, and keeps the certificate it was shown.
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn ServerCertVerifier>,
    seen: Arc<Mutex<Option<CertificateDer<'static>>>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *entra_pg_token::sync::lock(&self.seen) = Some(end_entity.clone().into_owned());
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The handshake with the server at `addr`, verified for `host`.
pub(crate) async fn check(cfg: &Config, host: &str, addr: SocketAddr) -> Check {
    if !cfg.ssl_mode.uses_tls() {
        return Check::skipped(
            CheckName::Tls,
            format!(
                "sslmode={}: no TLS (allowed for loopback test servers only)",
                cfg.ssl_mode.as_str()
            ),
        );
    }
    let roots = roots_text(cfg.ssl_root_cert.as_deref());
    let seen = Arc::new(Mutex::new(None));
    let recorder_seen = seen.clone();
    let config = match client_config_watched(cfg.ssl_mode, cfg.ssl_root_cert.as_deref(), |inner| {
        Arc::new(Recording {
            inner,
            seen: recorder_seen,
        })
    }) {
        Ok(Some(c)) => c,
        Ok(None) => return Check::skipped(CheckName::Tls, "no TLS"),
        Err(e) => {
            return Check::failed(
                CheckName::Tls,
                format!("the roots cannot be loaded: {e}"),
                "set sslrootcert (PGSSLROOTCERT) to a readable PEM file of the CA that signs the server's certificate, `system` for the system store, or unset it for the built-in Mozilla roots (Azure's certificates chain to them)",
            );
        }
    };
    let mut check = Check::new(CheckName::Tls, "");
    check.fact("sslmode", cfg.ssl_mode.as_str());
    check.fact("roots", &roots);
    let outcome = tokio::time::timeout(HANDSHAKE_LIMIT, handshake(config, host, addr)).await;
    if let Some(der) = entra_pg_token::sync::lock(&seen).take() {
        describe(&mut check, &der);
    }
    match outcome {
        Err(_) => check.fail(
            format!("no TLS handshake with {addr} within {HANDSHAKE_LIMIT:?}"),
            "something on the path holds the connection without answering: check for a proxy or a middlebox between here and the server",
        ),
        Ok(Err(Failure::NoTls)) => check.fail(
            "the server does not accept TLS (it answered the SSLRequest with N)",
            "connect to the PostgreSQL server itself (Azure's servers all accept TLS); a proxy in the way may not",
        ),
        Ok(Err(Failure::Io(e))) => check.fail(
            format!("the handshake with {addr} failed: {e}"),
            "check that the port is PostgreSQL's, not another service's",
        ),
        Ok(Err(Failure::Tls(e))) => {
            let (found, fix) = explain(&e, host, &roots, &check);
            check.fail(found, fix);
        }
        Ok(Ok(())) => {
            let name_check = if cfg.ssl_mode == SslMode::VerifyCa {
                "the chain verified; the host name is not checked (sslmode=verify-ca)"
            } else {
                "the chain and the host name verified"
            };
            check.fact("host name", name_check);
            check.found = format!("{name_check}, against {roots}");
        }
    }
    check
}

enum Failure {
    NoTls,
    Io(std::io::Error),
    Tls(rustls::Error),
}

async fn handshake(
    config: rustls::ClientConfig,
    host: &str,
    addr: SocketAddr,
) -> Result<(), Failure> {
    let mut stream = TcpStream::connect(addr).await.map_err(Failure::Io)?;
    stream.write_all(&SSL_REQUEST).await.map_err(Failure::Io)?;
    let mut answer = [0u8; 1];
    stream.read_exact(&mut answer).await.map_err(Failure::Io)?;
    if answer[0] != b'S' {
        return Err(Failure::NoTls);
    }
    let name = ServerName::try_from(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned(),
    )
    .map_err(|e| Failure::Io(std::io::Error::new(std::io::ErrorKind::InvalidInput, e)))?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    match connector.connect(name, stream).await {
        Ok(_) => Ok(()),
        Err(e) => {
            let tls = e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .cloned();
            Err(match tls {
                Some(t) => Failure::Tls(t),
                None => Failure::Io(e),
            })
        }
    }
}

/// The certificate's subject, issuer, expiry and names.
fn describe(check: &mut Check, der: &CertificateDer<'_>) {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        check.fact("certificate", "not readable as X.509");
        return;
    };
    check.fact("subject", cert.subject().to_string());
    check.fact("issuer", cert.issuer().to_string());
    check.fact("expires", cert.validity().not_after.to_string());
    check.fact("names", names(&cert).join(", "));
}

fn names(cert: &x509_parser::certificate::X509Certificate<'_>) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some((*d).to_owned()),
            GeneralName::IPAddress(b) => match b.len() {
                4 => <[u8; 4]>::try_from(*b)
                    .ok()
                    .map(|a| std::net::IpAddr::from(a).to_string()),
                16 => <[u8; 16]>::try_from(*b)
                    .ok()
                    .map(|a| std::net::IpAddr::from(a).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// What a verification failure means, and the fix.
fn explain(e: &rustls::Error, host: &str, roots: &str, check: &Check) -> (String, String) {
    let names = check
        .evidence
        .iter()
        .find(|f| f.name == "names")
        .map(|f| f.value.clone())
        .unwrap_or_default();
    match e {
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => (
            format!("the server's certificate is for {names}, not for {host}"),
            format!(
                "connect with a name the certificate carries ({names}): the server's own name, not an address or a CNAME of yours; for a private endpoint keep the server's name and set hostaddr (PGHOSTADDR) to the endpoint's address"
            ),
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer | CertificateError::BadSignature,
        ) => (
            format!("the server's certificate does not chain to a root in {roots}"),
            "set sslrootcert (PGSSLROOTCERT) to the PEM file of the CA that signs the server's certificate (Azure: DigiCert Global Root G2, Microsoft RSA Root CA 2017), or `system` for the system store".to_owned(),
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => (
            "the server's certificate has expired".to_owned(),
            "check this machine's clock (`date -u`); a server's certificate is renewed by Azure".to_owned(),
        ),
        other => (
            format!("the TLS handshake failed: {other}"),
            format!("check the server's certificate against {roots}"),
        ),
    }
}
