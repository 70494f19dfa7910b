//! Certificates on app registrations: made for a service principal (its RSA key and
//! self-signed certificate in one PEM file, as `az ad sp create-for-rbac --create-cert`
//! writes it), with the public part kept to check the client assertions signed with it.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use aws_lc_rs::digest::{SHA1_FOR_LEGACY_USE_ONLY, SHA256, digest};

use crate::error::Error;

/// A certificate of a service principal: `AZURE_CLIENT_CERTIFICATE_PATH` names its file.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// Client id of the app it was made for.
    pub client_id: String,
    /// PEM file with the private key (PKCS#8) and the certificate; mode 0600.
    pub path: PathBuf,
    /// SHA-1 thumbprint of the certificate, upper-case hex, as the Azure portal shows it.
    pub thumbprint: String,
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientCertificate")
            .field("client_id", &self.client_id)
            .field("path", &self.path)
            .field("thumbprint", &self.thumbprint)
            .finish()
    }
}

/// What the directory keeps of a registered certificate: its thumbprint and public key.
#[derive(Clone)]
pub(crate) struct RegisteredCertificate {
    pub client_id: String,
    /// SHA-1 of the certificate's DER (the client assertion's `x5t`).
    pub sha1: Vec<u8>,
    /// SHA-256 of the certificate's DER (`x5t#S256`).
    pub sha256: Vec<u8>,
    /// The RSA public key, PKCS#1 `RSAPublicKey` DER.
    pub public_key: Vec<u8>,
}

/// Make an RSA-2048 key and a self-signed certificate (subject `CN=name`)
/// for the app `client_id`; write both to a new PEM file in `dir`.
pub(crate) fn generate(
    name: &str,
    client_id: &str,
    dir: &Path,
) -> Result<(ClientCertificate, RegisteredCertificate), Error> {
    let c = |e: rcgen::Error| Error::Crypto(format!("cannot make a client certificate: {e}"));
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).map_err(c)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(c)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).map_err(c)?;
    let sha1 = digest(&SHA1_FOR_LEGACY_USE_ONLY, cert.der())
        .as_ref()
        .to_vec();
    let thumbprint: String = sha1.iter().map(|b| format!("{b:02X}")).collect();
    let path = dir.join(format!("client-cert-{}.pem", &thumbprint[..12]));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(format!("{}{}", key.serialize_pem(), cert.pem()).as_bytes()))
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    Ok((
        ClientCertificate {
            client_id: client_id.to_owned(),
            path,
            thumbprint,
        },
        RegisteredCertificate {
            client_id: client_id.to_owned(),
            sha1,
            sha256: digest(&SHA256, cert.der()).as_ref().to_vec(),
            public_key: key.public_key_raw().to_vec(),
        },
    ))
}
