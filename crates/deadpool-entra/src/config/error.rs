//! The error of an invalid configuration value.

/// An invalid configuration value; `field` names the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration `{field}`: {reason}")]
pub struct ConfigError {
    /// The setting at fault (`host`, `port`, `sslmode`, `user`, ...).
    pub field: String,
    /// Why it is invalid and what to do.
    pub reason: String,
}

impl ConfigError {
    /// A new configuration error for `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// No user is configured and the token names none: what to set.
    pub fn no_user() -> Self {
        Self::new(
            "user",
            "no user configured and the token names none (no upn, preferred_username, unique_name or xms_mirid claim): set PGUSER or AZURE_POSTGRESQL_USER to the identity's name (the PostgreSQL role created with pgaadauth_create_principal)",
        )
    }

    /// The setting at fault.
    pub fn field(&self) -> &str {
        &self.field
    }
}

#[cfg(test)]
mod tests {
    use super::ConfigError;

    #[test]
    fn the_error_names_its_field_and_says_why() {
        let e = ConfigError::new("port", "not a number");
        assert_eq!(e.field(), "port");
        assert_eq!(e.to_string(), "invalid configuration `port`: not a number");
        assert_eq!(ConfigError::no_user().field(), "user");
    }
}
