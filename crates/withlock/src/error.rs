//! Typed errors of the lock protocol.
//!
//! Every error names what it is about (the lock, the path, the holder) so
//! that a caller can print it as one line that says the cause and the fix.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::holder::Holders;

/// Everything that can go wrong while taking or inspecting a lock.
///
/// Errors raised by the code that runs under the lock are never turned into
/// this type: see [`crate::with_lock`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The lock name breaks the naming rules.
    #[error("invalid lock name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Which rule it breaks and what to do instead.
        reason: &'static str,
    },

    /// The lock directory is missing, not a directory, or cannot be searched.
    #[error("lock directory {}: {reason}", dir.display())]
    UnusableDir {
        /// The directory.
        dir: PathBuf,
        /// Why it cannot be used and how to fix it.
        reason: String,
    },

    /// The lock directory would let another unprivileged user swap lock files.
    #[error("unsafe lock directory {}: {reason}", dir.display())]
    UnsafeDir {
        /// The directory.
        dir: PathBuf,
        /// What makes it unsafe and how to fix it.
        reason: String,
    },

    /// A symbolic link that a user other than root and the caller owns is
    /// on the way to the lock directory or at the lock path: its owner
    /// could point it anywhere, so it is not followed.
    #[error(
        "{} is a symbolic link owned by {owner}, who could point it anywhere: {fix}",
        link.display()
    )]
    ForeignSymlink {
        /// Where the link is.
        link: PathBuf,
        /// Its owner's user name (or uid).
        owner: String,
        /// What to do instead.
        fix: String,
    },

    /// Something other than a regular file sits at the lock path.
    #[error(
        "{} is a {kind}, not a lock file: remove it or choose another lock name",
        path.display()
    )]
    NotRegularFile {
        /// The lock path.
        path: PathBuf,
        /// What is there instead ("symbolic link", "FIFO", ...).
        kind: &'static str,
    },

    /// Something other than a socket sits at a socket lock's path.
    #[error(
        "{} is a {kind}, not a socket: remove it or choose another socket path",
        path.display()
    )]
    NotSocket {
        /// The socket path.
        path: PathBuf,
        /// What is there instead ("symbolic link", "regular file", ...).
        kind: &'static str,
    },

    /// The lock cannot be taken the way it was asked for, such as a shared
    /// socket lock: socket locks are exclusive only.
    #[error("{lock}: {reason}")]
    Unsupported {
        /// The lock, as a person would name it.
        lock: String,
        /// What it cannot do and what to do instead.
        reason: String,
    },

    /// The lock file or its directory may not be opened by this user.
    #[error("permission denied opening {}: {detail}", path.display())]
    PermissionDenied {
        /// The path that could not be opened.
        path: PathBuf,
        /// Who owns it with which mode, and what to do.
        detail: String,
    },

    /// The lock is held and the caller asked not to wait.
    #[error("{lock} is busy: {holders}")]
    Busy {
        /// The lock, as a person would name it.
        lock: String,
        /// Who holds it, as far as this user can see.
        holders: Holders,
    },

    /// The lock was still held when the wait ran out.
    #[error("gave up on {lock} after {:.1}s: {holders}", waited.as_secs_f64())]
    TimedOut {
        /// The lock, as a person would name it.
        lock: String,
        /// How long the call waited.
        waited: Duration,
        /// Who held it at that moment.
        holders: Holders,
    },

    /// The caller's interrupt check asked the wait to stop.
    #[error("stopped waiting for {lock}: interrupted")]
    Interrupted {
        /// The lock, as a person would name it.
        lock: String,
    },

    /// A newer superseding request for the lock came while this one was
    /// still waiting, so it gave up (see [`crate::supersede`]).
    #[error(
        "superseded by {} while waiting for {lock}",
        crate::supersede::describe(by)
    )]
    Superseded {
        /// The lock, as a person would name it.
        lock: String,
        /// The newer request's process: pid, user, command, and the mode
        /// it asked for.
        by: Box<crate::holder::Holder>,
    },

    /// The lock file kept being replaced while we tried to lock it.
    #[error(
        "{} was replaced {attempts} times while being locked: \
         another program keeps deleting or renaming it; stop it or use another directory",
        path.display()
    )]
    KeepsChanging {
        /// The lock path.
        path: PathBuf,
        /// How many times we tried.
        attempts: u32,
    },

    /// Talking to the PostgreSQL server failed: an invalid URL, no
    /// connection, refused credentials, or a query that failed.
    #[cfg(feature = "postgres")]
    #[error(transparent)]
    Postgres(#[from] crate::pg::PgError),

    /// Any other system call failure, with what we were doing.
    #[error("{context}: {cause}")]
    Io {
        /// What was being done, naming the path.
        context: String,
        /// The operating system's error. It is part of this error's message
        /// rather than its `source()`, so that printing the error chain does
        /// not say it twice.
        cause: io::Error,
    },
}

impl Error {
    /// Wraps an I/O error with what was being done when it happened.
    pub(crate) fn io(context: impl Into<String>, source: impl Into<io::Error>) -> Self {
        Error::Io {
            context: context.into(),
            cause: source.into(),
        }
    }

    /// True for the two errors that mean "someone else holds the lock".
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Busy { .. } | Error::TimedOut { .. })
    }

    /// The holders named by a conflict error, if any.
    pub fn holders(&self) -> Option<&Holders> {
        match self {
            Error::Busy { holders, .. } | Error::TimedOut { holders, .. } => Some(holders),
            _ => None,
        }
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
