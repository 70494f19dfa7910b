//! The chain's certificate credential (`AZURE_CLIENT_CERTIFICATE_PATH`), with the
//! `client-certificate` feature: `azure_identity`'s `ClientCertificateCredential`, fed
//! either file form that Azure's tools write. A PKCS#12 file (the portal's, Key Vault's)
//! goes to it as is, with `AZURE_CLIENT_CERTIFICATE_PASSWORD`; a PEM file with the private
//! key and the certificate (`az ad sp create-for-rbac --create-cert`, and what the other
//! Azure SDKs accept) is repacked as PKCS#12 first, since `azure_identity` reads only that.

use std::sync::Arc;

use azure_core::credentials::TokenCredential;

/// The credential for the app `client` of `tenant` with the certificate file at `path`.
/// The error is the chain link's failure text (it never holds the password).
#[cfg(feature = "client-certificate")]
pub(crate) fn certificate_credential(
    tenant: String,
    client: String,
    path: String,
    password: Option<String>,
) -> Result<Arc<dyn TokenCredential>, String> {
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let (pkcs12, password) = if is_pem(&bytes) {
        let repacked = pem_to_pkcs12(&bytes, password.as_deref())
            .map_err(|why| format!("cannot read the PEM file {path}: {why}"))?;
        (repacked, None)
    } else {
        (bytes, password)
    };
    let options = azure_identity::ClientCertificateCredentialOptions {
        password: password.map(Into::into),
        ..Default::default()
    };
    azure_identity::ClientCertificateCredential::new(tenant, client, pkcs12.into(), Some(options))
        .map(|c| c as Arc<dyn TokenCredential>)
        .map_err(|e| format!("cannot use the certificate file {path}: {e}"))
}

/// Without the feature the variable is not ignored: the link says what would read it.
#[cfg(not(feature = "client-certificate"))]
pub(crate) fn certificate_credential(
    _tenant: String,
    _client: String,
    _path: String,
    _password: Option<String>,
) -> Result<Arc<dyn TokenCredential>, String> {
    Err("AZURE_CLIENT_CERTIFICATE_PATH is set but the pool was built without the `client-certificate` feature (of deadpool-entra, sqlx-entra or entra-pg-token)".into())
}

/// A PEM file starts (after any blank lines or comments) with a `-----BEGIN` line; a
/// PKCS#12 file is DER, which starts with a SEQUENCE byte.
#[cfg(feature = "client-certificate")]
fn is_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// The private key and the certificates of a PEM file as an unprotected PKCS#12 bundle:
/// the certificate whose public key matches the key first, any others as its chain.
/// `password` decrypts an encrypted key.
#[cfg(feature = "client-certificate")]
fn pem_to_pkcs12(pem: &[u8], password: Option<&str>) -> Result<Vec<u8>, &'static str> {
    use openssl::{pkcs12::Pkcs12, pkey::PKey, stack::Stack, x509::X509};
    let key = match password {
        Some(p) => PKey::private_key_from_pem_passphrase(pem, p.as_bytes()),
        // Never OpenSSL's default, which would ask for a passphrase on the terminal.
        None => PKey::private_key_from_pem_callback(pem, |_| Ok(0)),
    }
    .map_err(|_| match password {
        Some(_) => "its private key cannot be read, or not decrypted with AZURE_CLIENT_CERTIFICATE_PASSWORD",
        None => "it holds no private key that can be read (an encrypted key needs AZURE_CLIENT_CERTIFICATE_PASSWORD)",
    })?;
    let mut certs = X509::stack_from_pem(pem).map_err(|_| "its certificates cannot be read")?;
    let leaf = certs
        .iter()
        .position(|c| c.public_key().is_ok_and(|k| k.public_eq(&key)))
        .ok_or("none of its certificates matches its private key")?;
    let leaf = certs.remove(leaf);
    let mut builder = Pkcs12::builder();
    builder.pkey(&key).cert(&leaf);
    if !certs.is_empty() {
        let mut chain = Stack::new().map_err(|_| "cannot build the certificate chain")?;
        for c in certs {
            chain
                .push(c)
                .map_err(|_| "cannot build the certificate chain")?;
        }
        builder.ca(chain);
    }
    builder
        .build2("")
        .and_then(|p| p.to_der())
        .map_err(|_| "cannot repack its key and certificate as PKCS#12")
}

#[cfg(all(test, feature = "client-certificate"))]
mod tests {
    use super::*;

    #[test]
    fn pem_files_are_told_from_pkcs12_files() {
        assert!(is_pem(b"-----BEGIN PRIVATE KEY-----\nMII"));
        assert!(is_pem(b"Bag Attributes\n-----BEGIN CERTIFICATE-----\n"));
        // DER: a SEQUENCE, longer than the marker looked for.
        let der = [
            0x30, 0x82, 0x0a, 0x01, 0x02, 0x01, 0x03, 0x30, 0x82, 0x09, 0xc7, 0x06,
        ];
        assert!(!is_pem(&der));
    }

    #[test]
    fn a_pem_file_without_a_key_or_with_a_foreign_certificate_is_refused_clearly() {
        use openssl::{asn1::Asn1Time, hash::MessageDigest, pkey::PKey, rsa::Rsa, x509::X509};
        let key = |bits| PKey::from_rsa(Rsa::generate(bits).unwrap()).unwrap();
        let cert_for = |k: &PKey<openssl::pkey::Private>| {
            let mut b = X509::builder().unwrap();
            b.set_pubkey(k).unwrap();
            b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
                .unwrap();
            b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
                .unwrap();
            b.sign(k, MessageDigest::sha256()).unwrap();
            b.build().to_pem().unwrap()
        };
        let (k1, k2) = (key(2048), key(2048));
        let key_pem = k1.private_key_to_pem_pkcs8().unwrap();
        let good = [key_pem.clone(), cert_for(&k2), cert_for(&k1)].concat();
        let bundle = openssl::pkcs12::Pkcs12::from_der(&pem_to_pkcs12(&good, None).unwrap())
            .unwrap()
            .parse2("")
            .unwrap();
        let leaf = bundle.cert.unwrap();
        assert!(
            leaf.public_key().unwrap().public_eq(&k1),
            "the key's certificate leads"
        );
        assert_eq!(
            bundle.ca.map_or(0, |c| c.len()),
            1,
            "the other certificate is its chain"
        );
        let foreign = [key_pem.clone(), cert_for(&k2)].concat();
        assert_eq!(
            pem_to_pkcs12(&foreign, None).unwrap_err(),
            "none of its certificates matches its private key"
        );
        assert!(
            pem_to_pkcs12(&cert_for(&k1), None)
                .unwrap_err()
                .contains("no private key")
        );
        let encrypted = k1
            .private_key_to_pem_pkcs8_passphrase(openssl::symm::Cipher::aes_256_cbc(), b"pw")
            .unwrap();
        let encrypted = [encrypted, cert_for(&k1)].concat();
        assert!(
            pem_to_pkcs12(&encrypted, None)
                .unwrap_err()
                .contains("needs AZURE_CLIENT_CERTIFICATE_PASSWORD")
        );
        assert!(
            pem_to_pkcs12(&encrypted, Some("not-it"))
                .unwrap_err()
                .contains("not decrypted with AZURE_CLIENT_CERTIFICATE_PASSWORD")
        );
        assert!(pem_to_pkcs12(&encrypted, Some("pw")).is_ok());
    }
}
