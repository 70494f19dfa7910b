//! App registrations: service principals that get tokens with a client secret, and the
//! federated credentials that let a workload (AKS workload identity) trade its platform's
//! token for an Entra one.

use std::fmt;

/// The audience Entra requires of a federated token (`aud` of the service account token).
pub const FEDERATION_AUDIENCE: &str = "api://AzureADTokenExchange";

/// A registered service principal: an app registration with a client secret. Its
/// PostgreSQL role is named after it.
#[derive(Clone, PartialEq, Eq)]
pub struct ServicePrincipal {
    /// Name, and PostgreSQL role.
    pub name: String,
    /// Client (application) id: `AZURE_CLIENT_ID`, the `appid` claim.
    pub client_id: String,
    /// Object id of the service principal: the `oid` claim.
    pub object_id: String,
    /// The client secret: `AZURE_CLIENT_SECRET`.
    pub secret: String,
}

impl fmt::Debug for ServicePrincipal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServicePrincipal")
            .field("name", &self.name)
            .field("client_id", &self.client_id)
            .field("object_id", &self.object_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A federated identity credential on an app or a user-assigned managed identity: a
/// token from `issuer` for `subject`, with audience [`FEDERATION_AUDIENCE`], is exchanged
/// for the principal's Entra token (AKS: `issuer` is the cluster's OIDC issuer, `subject`
/// `system:serviceaccount:NAMESPACE:NAME`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FederatedCredential {
    /// Client id of the app or managed identity it belongs to.
    pub client_id: String,
    /// The trusted issuer (`iss` of the presented token).
    pub issuer: String,
    /// The trusted subject (`sub` of the presented token).
    pub subject: String,
}
