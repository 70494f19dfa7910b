//! The principal registry: each registered Entra ID principal and the PostgreSQL role it
//! maps to.

use std::collections::HashMap;

/// A registered Entra ID principal and the PostgreSQL role it maps to.
#[derive(Clone, Debug)]
pub(crate) enum PrincipalKind {
    Identity(crate::entra::identity::ManagedIdentity),
    User {
        upn: String,
        object_id: String,
    },
    App(crate::entra::apps::ServicePrincipal),
    /// An Entra group: its members log in to its role with their own tokens.
    Group {
        object_id: String,
        /// Object ids of the members.
        members: Vec<String>,
    },
}

#[derive(Clone, Debug)]
pub(crate) struct Principal {
    pub kind: PrincipalKind,
}

/// The principal type `pgaadauth_create_principal` records in a role's security label
/// (`aadauth,oid=...,type=...`); Azure checks a token's type against it at login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RoleType {
    /// A user (UPN): only user tokens log in.
    User,
    /// A service principal (an app, a managed identity): only application tokens with
    /// the recorded object id log in.
    Service,
    /// A group: its members log in with their own tokens.
    Group,
}

impl RoleType {
    /// The `type` of the security label.
    pub fn label(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Service => "service",
            Self::Group => "group",
        }
    }
}

impl Principal {
    pub fn object_id(&self) -> &str {
        match &self.kind {
            PrincipalKind::Identity(mi) => &mi.object_id,
            PrincipalKind::User { object_id, .. } => object_id,
            PrincipalKind::App(sp) => &sp.object_id,
            PrincipalKind::Group { object_id, .. } => object_id,
        }
    }

    /// The type its role was created with.
    pub fn role_type(&self) -> RoleType {
        match &self.kind {
            PrincipalKind::Identity(_) | PrincipalKind::App(_) => RoleType::Service,
            PrincipalKind::User { .. } => RoleType::User,
            PrincipalKind::Group { .. } => RoleType::Group,
        }
    }

    /// Whether a token for the principal with object id `oid` logs in to this
    /// principal's role: its own, or a member's of a group.
    pub fn admits(&self, oid: &str) -> bool {
        match &self.kind {
            PrincipalKind::Group { members, .. } => members.iter().any(|m| m == oid),
            _ => self.object_id() == oid,
        }
    }

    /// Who its tokens are for: the claims that name the principal (`None`: a group,
    /// which gets no tokens of its own).
    pub fn subject(&self) -> Option<crate::entra::token::Subject<'_>> {
        Some(match &self.kind {
            PrincipalKind::Identity(mi) => crate::entra::token::Subject {
                object_id: &mi.object_id,
                app_id: &mi.client_id,
                upn: None,
                mi_resource_id: Some(mi.resource_id.as_str()),
            },
            PrincipalKind::User { upn, object_id } => crate::entra::token::Subject {
                object_id,
                app_id: crate::entra::token::AZURE_CLI_APP_ID,
                upn: Some(upn),
                mi_resource_id: None,
            },
            PrincipalKind::App(sp) => crate::entra::token::Subject {
                object_id: &sp.object_id,
                app_id: &sp.client_id,
                upn: None,
                mi_resource_id: None,
            },
            PrincipalKind::Group { .. } => return None,
        })
    }
}

#[derive(Default)]
pub(crate) struct Registry {
    /// Entra principals by name (identity name or UPN); the role has the same name.
    pub principals: HashMap<String, Principal>,
    /// Static-password roles.
    pub passwords: HashMap<String, String>,
    /// Federated identity credentials (workload identity).
    pub federated: Vec<crate::entra::apps::FederatedCredential>,
    /// Certificates registered on apps (service principals).
    pub certificates: Vec<crate::entra::app_certs::RegisteredCertificate>,
}

impl Registry {
    /// The principal (app or managed identity) whose client id is `client_id`, by name.
    pub fn by_client_id(&self, client_id: &str) -> Option<(String, Principal)> {
        self.principals.iter().find_map(|(name, p)| {
            let id = match &p.kind {
                PrincipalKind::Identity(mi) => &mi.client_id,
                PrincipalKind::App(sp) => &sp.client_id,
                PrincipalKind::User { .. } | PrincipalKind::Group { .. } => return None,
            };
            (id == client_id).then(|| (name.clone(), p.clone()))
        })
    }

    pub fn identity_by(
        &self,
        f: impl Fn(&crate::entra::identity::ManagedIdentity) -> bool,
    ) -> Option<crate::entra::identity::ManagedIdentity> {
        self.principals.values().find_map(|p| match &p.kind {
            PrincipalKind::Identity(mi) if f(mi) => Some(mi.clone()),
            _ => None,
        })
    }
}
