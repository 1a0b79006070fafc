//! Errors of the PostgreSQL backend that the generic [`crate::Error`]
//! has no variant for; they reach callers of the [`crate::Lock`] trait
//! as [`crate::Error::Io`], with what was being done as context.

/// What can go wrong talking to the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// The connection URL could not be read. The URL itself is never
    /// repeated: it may hold a password.
    #[error("invalid PostgreSQL URL: {0}")]
    InvalidUrl(String),

    /// The URL names no host (a Unix-socket-only URL is not supported yet).
    #[error("the PostgreSQL URL names no TCP host")]
    NoHost,

    /// Connecting to the server, or setting up the session, failed.
    #[error("connecting to {server}: {cause}")]
    Connect {
        /// `host:port/dbname`, never the password.
        server: String,
        /// The driver's error.
        cause: postgres::Error,
    },

    /// The session no longer held the lock it was releasing: the lock was
    /// lost while held (another session could have taken it meanwhile).
    #[error("the lock was no longer held at release on {server}")]
    NotHeld {
        /// `host:port/dbname`.
        server: String,
    },

    /// A query on an established session failed.
    #[error("{context} on {server}: {cause}")]
    Query {
        /// What was being done.
        context: &'static str,
        /// `host:port/dbname`.
        server: String,
        /// The driver's error.
        cause: postgres::Error,
    },
}

impl From<PgError> for crate::Error {
    fn from(e: PgError) -> crate::Error {
        crate::Error::Io {
            context: "PostgreSQL lock".into(),
            cause: std::io::Error::other(e.to_string()),
        }
    }
}
