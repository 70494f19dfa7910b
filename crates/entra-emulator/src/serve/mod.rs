//! Serving HTTP: the identity endpoints and the admin API over plain HTTP, the authority
//! over HTTPS, and the certificates both use.

pub(crate) mod certs;
pub(crate) mod http;
pub(crate) mod https;
