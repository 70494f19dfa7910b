//! Entra ID: the authority's token endpoint, the tokens it issues and signs, and the
//! principals that ask for them (managed identities, service principals with secrets,
//! certificates or federated credentials).

pub(crate) mod app_certs;
pub(crate) mod apps;
pub(crate) mod authority;
pub(crate) mod cert_assertion;
pub(crate) mod error_answer;
pub(crate) mod federation;
pub(crate) mod identity;
pub(crate) mod ids;
pub(crate) mod issued;
pub(crate) mod rate_limit;
pub(crate) mod token;
