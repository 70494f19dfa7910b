//! Managed identities: what to register, and what was registered.

/// What to register as a managed identity.
#[derive(Clone, Debug, Default)]
pub struct IdentitySpec {
    /// Name of the identity, and of its PostgreSQL role.
    pub name: String,
    /// User-assigned (tokens carry `xms_mirid`) or system-assigned.
    pub user_assigned: bool,
    /// Client (application) id; generated when `None`.
    pub client_id: Option<String>,
    /// Object (principal) id; generated when `None`.
    pub object_id: Option<String>,
}

impl IdentitySpec {
    /// A user-assigned identity with generated ids.
    pub fn user_assigned(name: &str) -> Self {
        IdentitySpec {
            name: name.to_string(),
            user_assigned: true,
            client_id: None,
            object_id: None,
        }
    }
    /// A system-assigned identity with generated ids.
    pub fn system_assigned(name: &str) -> Self {
        IdentitySpec {
            name: name.to_string(),
            user_assigned: false,
            client_id: None,
            object_id: None,
        }
    }
}

/// A registered managed identity. Its PostgreSQL role is named after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedIdentity {
    /// Name, and PostgreSQL role.
    pub name: String,
    /// Client id (`appid` claim; `client_id` query parameter).
    pub client_id: String,
    /// Object id (`oid` claim; `object_id`/`principal_id` query parameter).
    pub object_id: String,
    /// Azure resource id (`xms_mirid` claim for user-assigned; `mi_res_id` query parameter).
    pub resource_id: String,
    /// User-assigned or system-assigned.
    pub user_assigned: bool,
}
