//! Errors of the PostgreSQL backend that the generic [`crate::Error`]
//! has no variant for; they reach callers of the [`crate::Lock`] trait
//! as [`crate::Error::Postgres`].

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
    #[error("connecting to {server}: {}", with_causes(cause))]
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
    #[error("{context} on {server}: {}", with_causes(cause))]
    Query {
        /// What was being done.
        context: &'static str,
        /// `host:port/dbname`.
        server: String,
        /// The driver's error.
        cause: postgres::Error,
    },
}

impl PgError {
    /// True when the server refused the role or its password (SQLSTATE
    /// class 28), so that retrying as is cannot help.
    pub fn is_refused_credentials(&self) -> bool {
        match self {
            PgError::Connect { cause, .. } => cause
                .code()
                .is_some_and(|code| code.code().starts_with("28")),
            _ => false,
        }
    }
}

/// The driver's error with its causes ("error connecting to server:
/// Connection refused (os error 111)"): its own text alone rarely says
/// what to fix.
fn with_causes(error: &postgres::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        source = cause.source();
    }
    text
}
