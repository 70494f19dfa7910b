//! The emulator's CA and the server certificate of the front and the authority (rcgen),
//! and their rustls server configurations.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::Error;

pub(crate) struct Tls {
    pub(crate) ca_cert: PathBuf,
    pub(crate) server_cert: PathBuf,
    pub(crate) server_key: PathBuf,
    pub(crate) server_config: Arc<rustls::ServerConfig>,
    /// The same certificate, with HTTP/1.1 as its application protocol (the authority).
    pub(crate) https_config: Arc<rustls::ServerConfig>,
}

pub(crate) fn make_tls(root: &Path) -> Result<Tls, Error> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        SanType,
    };
    let c = |e: rcgen::Error| Error::Crypto(e.to_string());
    let ca_key = KeyPair::generate().map_err(c)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(c)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "entra-emulator test CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).map_err(c)?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().map_err(c)?;
    let mut sp = CertificateParams::new(Vec::<String>::new()).map_err(c)?;
    sp.distinguished_name.push(DnType::CommonName, "localhost");
    sp.subject_alt_names = vec![
        SanType::DnsName("localhost".try_into().map_err(c)?),
        SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])),
        SanType::IpAddress(std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST)),
    ];
    // The nodes of the Azure network (see `network`): every server name, as Azure's
    // wildcard certificates cover them, and the standbys' addresses.
    for domain in crate::network::AZURE_DOMAINS {
        sp.subject_alt_names.push(SanType::DnsName(
            format!("*.{domain}").try_into().map_err(c)?,
        ));
    }
    for node in [
        crate::network::Node::Standby,
        crate::network::Node::ReadOnlyStandby,
    ] {
        sp.subject_alt_names
            .push(SanType::IpAddress(std::net::IpAddr::V4(node.ip())));
    }
    sp.use_authority_key_identifier_extension = true;
    sp.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    sp.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = sp.signed_by(&key, &issuer).map_err(c)?;

    let ca_path = root.join("ca.crt");
    let cert_path = root.join("server.crt");
    let key_path = root.join("server.key");
    let w = |p: &Path, s: String| {
        fs::write(p, s).map_err(|e| Error::io(format!("cannot write {}", p.display()), e))
    };
    w(&ca_path, ca_cert.pem())?;
    w(&cert_path, format!("{}{}", cert.pem(), ca_cert.pem()))?;
    w(&key_path, key.serialize_pem())?;
    fs::set_permissions(&key_path, fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io("cannot chmod the key", e))?;

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Crypto(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone(), ca_cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .map_err(|e| Error::Crypto(e.to_string()))?;
    let mut https = cfg.clone();
    https.alpn_protocols = vec![b"http/1.1".to_vec()];
    cfg.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(Tls {
        ca_cert: ca_path,
        server_cert: cert_path,
        server_key: key_path,
        server_config: Arc::new(cfg),
        https_config: Arc::new(https),
    })
}
