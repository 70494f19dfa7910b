//! The enumerated settings: TLS mode, channel binding, authentication method, and the
//! multi-host choices (which server to accept, in which order to try them).

use std::str::FromStr;

use super::error::ConfigError;

/// libpq's `sslmode`.
///
/// `Require` and `VerifyFull` both verify the certificate chain and the host name here
/// (stricter than libpq's `require`): a token is never offered to an unauthenticated
/// server. `VerifyCa` verifies the chain only. `Disable`, `Allow` and `Prefer` would send
/// the token in clear text and are refused, except on loopback with
/// [`crate::builder::PoolBuilder::dangerous_allow_plaintext_on_loopback`], where they mean no TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// No TLS (libpq: TLS only if the server insists).
    Allow,
    /// No TLS here (libpq: TLS if the server offers it, which can silently fall back).
    Prefer,
    /// TLS, chain and host name verified.
    Require,
    /// TLS, chain verified, host name not checked.
    VerifyCa,
    /// TLS, chain and host name verified (default).
    #[default]
    VerifyFull,
}

impl SslMode {
    /// libpq's spelling (`verify-full`, `require`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// Does this mode use TLS?
    pub fn uses_tls(self) -> bool {
        matches!(self, Self::Require | Self::VerifyCa | Self::VerifyFull)
    }
}

impl FromStr for SslMode {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" | "verify_ca" => Self::VerifyCa,
            "verify-full" | "verify_full" => Self::VerifyFull,
            other => {
                return Err(ConfigError::new(
                    "sslmode",
                    format!(
                        "unknown sslmode {other:?}; use verify-full (default), verify-ca or require"
                    ),
                ));
            }
        })
    }
}

/// libpq's `channel_binding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "lowercase"))]
pub enum ChannelBinding {
    /// Never use channel binding.
    Disable,
    /// Use it when the server offers SCRAM with channel binding (default).
    #[default]
    Prefer,
    /// Require it (incompatible with token logins, which are cleartext-password logins).
    Require,
}

impl FromStr for ChannelBinding {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        Ok(match s.trim().to_ascii_lowercase().as_str() {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            other => {
                return Err(ConfigError::new(
                    "channel_binding",
                    format!("unknown channel_binding {other:?}; use disable, prefer or require"),
                ));
            }
        })
    }
}

/// `AZURE_AUTH_METHOD`: how the pool authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum AuthMethod {
    /// A managed identity (system-assigned, or user-assigned with `client_id`).
    ManagedIdentity,
    /// A static password (`PGPASSWORD` / `AZURE_POSTGRESQL_PASSWORD`).
    Password,
    /// A password if one is configured, otherwise the credential chain (environment,
    /// workload identity, managed identity, Azure CLI, Azure Developer CLI). Default.
    #[default]
    Auto,
}

impl FromStr for AuthMethod {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        Ok(
            match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
                "managed_identity" | "managedidentity" => Self::ManagedIdentity,
                "password" => Self::Password,
                "auto" | "" => Self::Auto,
                other => {
                    return Err(ConfigError::new(
                        "AZURE_AUTH_METHOD",
                        format!(
                            "unknown auth method {other:?}; use managed_identity, password or auto"
                        ),
                    ));
                }
            },
        )
    }
}

/// libpq's `target_session_attrs`: which of several hosts to accept. With several hosts,
/// each is tried in turn (see [`LoadBalanceHosts`]) until one fits; a session on a server
/// that does not fit is closed at once.
///
/// `ReadWrite` and `ReadOnly` ask the server whether its sessions accept writes
/// (`SHOW transaction_read_only`); `Primary`, `Standby` and `PreferStandby` (libpq 14)
/// ask whether it is in recovery (`pg_is_in_recovery()`): a read replica is a standby,
/// whereas a primary with `default_transaction_read_only=on` is read-only but a primary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
#[non_exhaustive]
pub enum TargetSessionAttrs {
    /// The first host that accepts the login (default).
    #[default]
    Any,
    /// A server that accepts writes (the primary of an HA pair or a replica set).
    ReadWrite,
    /// A server in read-only mode (a read replica).
    ReadOnly,
    /// A server not in recovery: the primary.
    Primary,
    /// A server in recovery: a standby (a read replica).
    Standby,
    /// A standby if any host is one, otherwise the first host that accepts the login.
    PreferStandby,
}

impl TargetSessionAttrs {
    /// libpq's spelling (`read-write`, `prefer-standby`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Any => "any",
            Self::ReadWrite => "read-write",
            Self::ReadOnly => "read-only",
            Self::Primary => "primary",
            Self::Standby => "standby",
            Self::PreferStandby => "prefer-standby",
        }
    }
}

impl FromStr for TargetSessionAttrs {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        Ok(match s.trim() {
            "any" => Self::Any,
            "read-write" => Self::ReadWrite,
            "read-only" => Self::ReadOnly,
            "primary" => Self::Primary,
            "standby" => Self::Standby,
            "prefer-standby" => Self::PreferStandby,
            _ => {
                return Err(ConfigError::new(
                    "target_session_attrs",
                    "use any, read-write, read-only, primary, standby or prefer-standby",
                ));
            }
        })
    }
}

/// libpq's `load_balance_hosts`: the order in which several hosts are tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize, serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "kebab-case"))]
pub enum LoadBalanceHosts {
    /// In the order given (default).
    #[default]
    Disable,
    /// In a random order, for each connection.
    Random,
}

impl FromStr for LoadBalanceHosts {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        Ok(match s.trim() {
            "disable" => Self::Disable,
            "random" => Self::Random,
            _ => {
                return Err(ConfigError::new(
                    "load_balance_hosts",
                    "use disable or random",
                ));
            }
        })
    }
}
