//! Errors of the PostgreSQL backend that the generic [`crate::Error`]
//! has no variant for; they reach callers of the [`crate::Lock`] trait
//! as [`crate::Error::Backend`], sorted by [`PgError::kind`], and come
//! back out with `error.downcast_ref::<PgError>()`.

use crate::backend_error::BackendError;
use crate::error_kind::ErrorKind;

/// What can go wrong talking to the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PgError {
    /// The connection URL could not be read. The URL itself is never
    /// repeated: it may hold a password.
    #[error("invalid PostgreSQL URL: {0}")]
    InvalidUrl(String),

    /// Connecting to the server, or setting up the session, failed.
    #[error("connecting to {server}: {}{hint}", with_causes(cause))]
    Connect {
        /// `host:port/dbname`, never the password.
        server: String,
        /// The driver's error.
        cause: postgres::Error,
        /// Empty, or `"; "` and where no password was found (a password
        /// file ignored for its mode, or no entry), when the login failed.
        hint: String,
    },

    /// The TLS settings cannot be used (a root certificate missing for
    /// `sslmode=verify-full`, an unreadable file, a key others can read):
    /// the reason names the file or setting and the fix.
    #[error("TLS for {server}: {reason}")]
    Tls {
        /// `host:port/dbname`.
        server: String,
        /// What is wrong, and what to do.
        reason: String,
    },

    /// The server has no database of the name the URL (or `PGDATABASE`,
    /// or the user name by default) gives.
    #[error(
        "the database {database:?} does not exist on {server}: create it (createdb {database}, \
         or CREATE DATABASE) or name an existing one in the URL (postgres://USER@HOST/DB) or \
         PGDATABASE"
    )]
    NoDatabase {
        /// `host:port/dbname`.
        server: String,
        /// The database asked for.
        database: String,
    },

    /// The server has no role of the name the URL (or `PGUSER`, or the
    /// user name by default) gives.
    #[error(
        "the role {role:?} does not exist on {server}: create it (createuser {role}, or \
         CREATE ROLE ... LOGIN) or name an existing role as the URL's user \
         (postgres://USER@HOST/DB) or PGUSER"
    )]
    NoRole {
        /// `host:port/dbname`.
        server: String,
        /// The role asked for.
        role: String,
    },

    /// The session runs through a connection pooler that shares server
    /// sessions between clients, where a session-level advisory lock would
    /// stay behind for others.
    #[error(
        "{server} looks like a transaction-mode connection pooler (pgbouncer): {evidence}; \
         session advisory locks need a direct connection: point --url at the server or at a \
         session-mode pool"
    )]
    Pooler {
        /// `host:port/dbname`.
        server: String,
        /// What was seen.
        evidence: String,
    },

    /// The session no longer held the lock it was releasing: the lock was
    /// lost while held (another session could have taken it meanwhile).
    #[error("the lock was no longer held at release on {server}")]
    NotHeld {
        /// `host:port/dbname`.
        server: String,
    },

    /// The role may not create or use withlock's state (the schema
    /// `withlock`, see [`crate::pg::state`]); the lock was released again.
    #[error(
        "withlock's state (schema withlock, which keeps the fencing tokens) on {server}: this \
         role lacks {privilege}; an administrator can {fix}: {sql}"
    )]
    FenceTable {
        /// `host:port/dbname`.
        server: String,
        /// The privilege missing, in words.
        privilege: &'static str,
        /// What the SQL does: "create it once, as ..., with", "grant them with".
        fix: &'static str,
        /// The SQL an administrator runs.
        sql: String,
    },

    /// withlock's state on the server is incomplete or was set back, so
    /// its fencing tokens or hand-over records can no longer be trusted to
    /// go on; nothing is granted until an administrator creates it again.
    #[error(
        "withlock's state (schema withlock) on {server} is damaged: {what}; it cannot \
         promise tokens that only grow or a safe hand-over, so no lock is granted: once no \
         withlock command runs on this database, an administrator runs \
         DROP SCHEMA withlock CASCADE, and the next withlock creates it again, with tokens \
         above every earlier one"
    )]
    StateDamaged {
        /// `host:port/dbname`.
        server: String,
        /// What is missing or wrong.
        what: String,
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
    /// What sort of failure it is: a bad URL is bad usage; refused
    /// credentials, a role that does not exist or one that may not use
    /// withlock's state are a permission problem; TLS or a pooler that
    /// rule the lock out, a database that does not exist and damaged state
    /// are configuration; the rest means the server is not available.
    pub fn kind(&self) -> ErrorKind {
        match self {
            PgError::InvalidUrl(_) => ErrorKind::Usage,
            err if err.is_refused_credentials() => ErrorKind::Permission,
            PgError::NoRole { .. } | PgError::FenceTable { .. } => ErrorKind::Permission,
            PgError::Tls { .. }
            | PgError::Pooler { .. }
            | PgError::NoDatabase { .. }
            | PgError::StateDamaged { .. } => ErrorKind::Config,
            PgError::Connect { .. } | PgError::NotHeld { .. } | PgError::Query { .. } => {
                ErrorKind::Unavailable
            }
        }
    }

    /// True when the server refused the role or its password (SQLSTATE
    /// class 28), so that retrying as is cannot help.
    pub fn is_refused_credentials(&self) -> bool {
        match self {
            PgError::Connect { cause, .. } => cause
                .code()
                .is_some_and(|code| code.code().starts_with("28")),
            PgError::NoRole { .. } => true,
            _ => false,
        }
    }
}

impl From<PgError> for crate::Error {
    fn from(error: PgError) -> Self {
        crate::Error::Backend(BackendError::new(error.kind(), error))
    }
}

/// The driver's error with its causes ("error connecting to server:
/// Connection refused (os error 111)"): its own text alone rarely says
/// what to fix.
pub(crate) fn with_causes(error: &postgres::Error) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> String {
        "db:5432/app".into()
    }

    #[test]
    fn a_bad_url_is_usage() {
        assert_eq!(PgError::InvalidUrl("x".into()).kind(), ErrorKind::Usage);
    }

    #[test]
    fn what_rules_the_server_out_is_config() {
        for error in [
            PgError::Tls {
                server: server(),
                reason: "no root certificate".into(),
            },
            PgError::Pooler {
                server: server(),
                evidence: "backend pid changed".into(),
            },
            PgError::NoDatabase {
                server: server(),
                database: "app".into(),
            },
            PgError::StateDamaged {
                server: server(),
                what: "no table".into(),
            },
        ] {
            assert_eq!(error.kind(), ErrorKind::Config, "{error}");
        }
    }

    #[test]
    fn a_refused_role_is_permission() {
        let role = PgError::NoRole {
            server: server(),
            role: "app".into(),
        };
        let state = PgError::FenceTable {
            server: server(),
            privilege: "CREATE",
            fix: "grant it with",
            sql: "GRANT ...".into(),
        };
        assert_eq!(role.kind(), ErrorKind::Permission);
        assert_eq!(state.kind(), ErrorKind::Permission);
    }

    #[test]
    fn a_lost_session_is_unavailable() {
        let lost = PgError::NotHeld { server: server() };
        assert_eq!(lost.kind(), ErrorKind::Unavailable);
    }
}
