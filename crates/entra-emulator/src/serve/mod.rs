//! Serving HTTP: the identity endpoints and the admin API over plain HTTP, the Entra
//! authority's token endpoint over HTTPS (with client assertions checked), the faults the
//! identity endpoints share, and the certificates.

pub(crate) mod authority;
pub(crate) mod cert_assertion;
pub(crate) mod certs;
pub(crate) mod http;
pub(crate) mod https;
pub(crate) mod identity_faults;
