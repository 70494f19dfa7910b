//! Configures and starts an [`crate::emulator::Emulator`].

use std::path::PathBuf;
use std::time::Duration;

use crate::{
    emulator::Emulator, entra::identity::IdentitySpec, error::Error, names::DEFAULT_DATABASE,
    names::DEFAULT_IDENTITY, names::DEFAULT_USER,
};

/// Configures and starts an [`Emulator`].
#[derive(Clone, Debug)]
pub struct EmulatorBuilder {
    pub(crate) token_lifetime: Duration,
    pub(crate) default_identity: String,
    pub(crate) identities: Vec<IdentitySpec>,
    pub(crate) user: String,
    pub(crate) password_roles: Vec<(String, String)>,
    pub(crate) database: String,
    pub(crate) max_connections: u32,
    pub(crate) cluster_tls: bool,
    pub(crate) token_cache: bool,
    pub(crate) token_cache_window: Option<Duration>,
    pub(crate) cli_program: Option<PathBuf>,
    pub(crate) azure_network: Option<String>,
}

impl Default for EmulatorBuilder {
    fn default() -> Self {
        EmulatorBuilder {
            token_lifetime: Duration::from_secs(3600),
            default_identity: DEFAULT_IDENTITY.into(),
            identities: Vec::new(),
            user: DEFAULT_USER.into(),
            password_roles: Vec::new(),
            database: DEFAULT_DATABASE.into(),
            max_connections: 200,
            cluster_tls: true,
            token_cache: true,
            token_cache_window: None,
            cli_program: None,
            azure_network: None,
        }
    }
}

impl EmulatorBuilder {
    /// Lifetime of issued tokens (default 3600 s; seconds work).
    pub fn token_lifetime(mut self, d: Duration) -> Self {
        self.token_lifetime = d.max(Duration::from_secs(1));
        self
    }
    /// Whether the identity endpoints serve their cached token again while it has more than
    /// the refresh window left, as Azure's do (default `true`). `false` mints a token per
    /// call, which is kinder than Azure: a test that needs it should say why.
    pub fn token_cache(mut self, on: bool) -> Self {
        self.token_cache = on;
        self
    }
    /// The token cache's refresh window (default: five minutes, or a twelfth of the token's
    /// lifetime when that is under an hour). A cached token with less than this left is
    /// replaced by a new one.
    pub fn token_cache_window(mut self, window: Duration) -> Self {
        self.token_cache_window = Some(window);
        self
    }
    /// Name of the system-assigned identity that always exists (default `app-identity`).
    pub fn default_identity_name(mut self, name: &str) -> Self {
        self.default_identity = name.into();
        self
    }
    /// An extra managed identity (the system-assigned one always exists).
    pub fn identity(mut self, spec: IdentitySpec) -> Self {
        self.identities.push(spec);
        self
    }
    /// The user logged in for `az` (default `dev@contoso.example`).
    pub fn user(mut self, upn: &str) -> Self {
        self.user = upn.into();
        self
    }
    /// A role that logs in with a static password through the same front.
    pub fn password_role(mut self, role: &str, password: &str) -> Self {
        self.password_roles.push((role.into(), password.into()));
        self
    }
    /// The database to create (default `app`).
    pub fn database(mut self, name: &str) -> Self {
        self.database = name.into();
        self
    }
    /// The cluster's `max_connections` (default 200).
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(10);
        self
    }
    /// Whether the cluster's own TCP port offers TLS with the emulator's certificate
    /// (default true; used for direct baselines).
    pub fn cluster_tls(mut self, on: bool) -> Self {
        self.cluster_tls = on;
        self
    }

    /// The `entra-emulator` executable that answers as `az` and `azd` (see
    /// [`crate::standin`]): the shims in [`Emulator::az_bin_dir`] run `PROGRAM az ...` and
    /// `PROGRAM azd ...`. Any binary whose `main` hands its arguments to
    /// [`crate::standin::run`] will do. Default: `ENTRA_EMULATOR_BIN`, else an
    /// `entra-emulator` beside the running executable or one directory up (where cargo
    /// puts it next to a test's `deps/` directory). When none is found, `az` and `azd`
    /// fail with a message that says so.
    pub fn cli_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.cli_program = Some(program.into());
        self
    }

    /// Serve the front as Azure serves a server `server_name` with high availability, on a
    /// network whose faults the kernel makes ([`Emulator::network`]): the names
    /// `server_name.postgres.database.azure.com` (and the China and US Government clouds'
    /// names, [`crate::network::AZURE_DOMAINS`]) in the namespace's private `/etc/hosts`, pointing at
    /// the primary `127.0.0.1`; a read-write standby on `127.0.0.2` and a read-only standby
    /// on `127.0.0.3`, all three on the same port ([`Emulator::pg_port`]) and the same
    /// cluster. The certificate is valid for those names and addresses.
    ///
    /// Needs a private network namespace ([`crate::network::netns`], as root): `start` fails with
    /// [`Error::Network`] elsewhere. `server_name` is 3 to 63 lowercase letters, digits and
    /// hyphens.
    pub fn azure_network(mut self, server_name: &str) -> Self {
        self.azure_network = Some(server_name.into());
        self
    }

    /// Start everything: cluster, principals, identity endpoints, front, admin API.
    pub async fn start(self) -> Result<Emulator, Error> {
        Emulator::start_with(self).await
    }
}

// The builder's entry on the emulator, here so that the emulator's handle knows nothing of
// its builder.
impl Emulator {
    /// A builder with the defaults.
    pub fn builder() -> EmulatorBuilder {
        EmulatorBuilder::default()
    }

    /// Start with the defaults (= `Emulator::builder().start()`).
    pub async fn start() -> Result<Emulator, Error> {
        Self::builder().start().await
    }
}
