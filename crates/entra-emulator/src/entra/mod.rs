//! Entra ID's model: the tokens it issues and signs, its error answers, and the
//! principals that ask for tokens (managed identities, service principals with secrets,
//! certificates or federated credentials). The endpoints that serve them are in
//! `serve` (the authority, the identity endpoints).

pub(crate) mod app_certs;
pub(crate) mod apps;
pub(crate) mod error_answer;
pub(crate) mod identity;
pub(crate) mod ids;
pub(crate) mod issued;
pub(crate) mod rate_limit;
pub(crate) mod token;
