//! TLS with rustls and an explicit crypto provider (never a process-wide default).
//!
//! `verify-full` and `require` both verify the chain and the host name: a token is never
//! offered over TLS that does not authenticate the server, so `require` here is stricter
//! than libpq's. `verify-ca` verifies the chain but accepts a name mismatch.

use std::{path::Path, sync::Arc};

use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};

use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{config::ConfigError, config::SslMode};

/// The one place the crypto provider is chosen: aws-lc-rs, the one `azure_identity`'s
/// HTTP stack already brings.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The roots: a CA file (`sslrootcert`), `system` for the platform store, or the
/// webpki (Mozilla) roots by default.
fn roots(root_cert: Option<&Path>) -> Result<RootCertStore, ConfigError> {
    let mut store = RootCertStore::empty();
    match root_cert {
        Some(p) if p.as_os_str() == "system" => load_native(&mut store)?,
        Some(path) => {
            let iter = CertificateDer::pem_file_iter(path).map_err(|e| {
                ConfigError::new(
                    "sslrootcert",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            for cert in iter {
                let cert = cert.map_err(|e| {
                    ConfigError::new("sslrootcert", format!("bad PEM in {}: {e}", path.display()))
                })?;
                store.add(cert).map_err(|e| {
                    ConfigError::new(
                        "sslrootcert",
                        format!("bad certificate in {}: {e}", path.display()),
                    )
                })?;
            }
            if store.is_empty() {
                return Err(ConfigError::new(
                    "sslrootcert",
                    format!("no certificate found in {}", path.display()),
                ));
            }
        }
        None => default_roots(&mut store)?,
    }
    Ok(store)
}

#[cfg(feature = "webpki-roots")]
fn default_roots(store: &mut RootCertStore) -> Result<(), ConfigError> {
    store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    Ok(())
}

#[cfg(not(feature = "webpki-roots"))]
fn default_roots(store: &mut RootCertStore) -> Result<(), ConfigError> {
    load_native(store)
}

#[cfg(feature = "native-roots")]
fn load_native(store: &mut RootCertStore) -> Result<(), ConfigError> {
    let result = rustls_native_certs::load_native_certs();
    store.add_parsable_certificates(result.certs);
    if store.is_empty() {
        return Err(ConfigError::new(
            "sslrootcert",
            "no usable certificate in the system store",
        ));
    }
    Ok(())
}

#[cfg(not(feature = "native-roots"))]
fn load_native(_store: &mut RootCertStore) -> Result<(), ConfigError> {
    Err(ConfigError::new(
        "sslrootcert",
        "the system store needs the `native-roots` feature",
    ))
}

/// The rustls client configuration for `mode`, or `None` for a plaintext mode.
pub(crate) fn client_config(
    mode: SslMode,
    root_cert: Option<&Path>,
) -> Result<Option<ClientConfig>, ConfigError> {
    client_config_watched(mode, root_cert, |verifier| verifier)
}

/// The same configuration, with the server-certificate verifier handed to `wrap` (the
/// doctor wraps it to see the chain it checks); the pool passes it through unchanged.
pub(crate) fn client_config_watched(
    mode: SslMode,
    root_cert: Option<&Path>,
    wrap: impl FnOnce(Arc<dyn ServerCertVerifier>) -> Arc<dyn ServerCertVerifier>,
) -> Result<Option<ClientConfig>, ConfigError> {
    if !mode.uses_tls() {
        return Ok(None);
    }
    let provider = provider();
    let store = Arc::new(roots(root_cert)?);
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::new("sslmode", format!("TLS setup failed: {e}")))?;
    let full = WebPkiServerVerifier::builder_with_provider(store, provider)
        .build()
        .map_err(|e| ConfigError::new("sslrootcert", format!("TLS setup failed: {e}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        SslMode::VerifyCa => Arc::new(ChainOnly { inner: full }),
        _ => full,
    };
    Ok(Some(
        builder
            .dangerous()
            .with_custom_certificate_verifier(wrap(verifier))
            .with_no_client_auth(),
    ))
}

/// Where the roots come from, in words (the doctor's evidence).
#[cfg(feature = "doctor")]
pub(crate) fn roots_text(root_cert: Option<&Path>) -> String {
    match root_cert {
        Some(p) if p.as_os_str() == "system" => "the system store (sslrootcert=system)".to_owned(),
        Some(path) => format!("the CA file {} (sslrootcert)", path.display()),
        None if cfg!(feature = "webpki-roots") => {
            "the Mozilla roots built in (webpki-roots; sslrootcert unset)".to_owned()
        }
        None => "the system store (sslrootcert unset)".to_owned(),
    }
}

/// `verify-ca`: the full webpki verification, except that a host name mismatch is
/// accepted.
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
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

/// TLS connector (or none, for the loopback opt-out).
#[derive(Clone)]
pub(crate) enum Tls {
    Rustls(MakeRustlsConnect),
    Plain,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_modes_build_a_config() {
        assert!(client_config(SslMode::VerifyFull, None).unwrap().is_some());
        assert!(client_config(SslMode::Require, None).unwrap().is_some());
        assert!(client_config(SslMode::VerifyCa, None).unwrap().is_some());
        assert!(client_config(SslMode::Disable, None).unwrap().is_none());
    }

    #[test]
    fn missing_ca_file_names_sslrootcert() {
        let e =
            client_config(SslMode::VerifyFull, Some(Path::new("/nonexistent/ca.pem"))).unwrap_err();
        assert_eq!(e.field, "sslrootcert");
    }
}
