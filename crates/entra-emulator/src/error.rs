//! The emulator's error type.

/// Everything that can go wrong starting or driving the emulator. Never contains a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The PostgreSQL server binaries are not installed.
    #[error(
        "PostgreSQL server binaries (initdb, postgres, pg_ctl) not found via $ENTRA_EMULATOR_PG_BINDIR, \
         `pg_config --bindir`, /usr/lib/postgresql/*/bin or PATH: install the Debian package `postgresql` \
         (apt-get install postgresql)"
    )]
    MissingPostgres,
    /// Setting up a part of the emulator failed.
    #[error("entra-emulator setup failed: {0}")]
    Setup(String),
    /// An I/O error, with what was being done.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Making keys or certificates failed.
    #[error("key or certificate generation failed: {0}")]
    Crypto(String),
    /// A statement run in the cluster failed.
    #[error("SQL in the emulator's cluster failed ({code}): {message}")]
    Sql {
        /// SQLSTATE.
        code: String,
        /// Server message.
        message: String,
    },
    /// A principal name was invalid or already taken.
    #[error("invalid principal: {0}")]
    Principal(String),
    /// The private network namespace or one of its faults (`iptables`, the hosts file)
    /// could not be set up, or a network fault was asked for outside such a namespace.
    #[error("emulated network: {0}")]
    Network(String),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}
