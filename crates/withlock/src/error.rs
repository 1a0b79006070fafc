//! Typed errors of the lock protocol.
//!
//! Every error names what it is about (the lock, the path, the holder) so
//! that a caller can print it as one line that says the cause and the fix.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::backend_error::BackendError;
use crate::error_kind::ErrorKind;
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
    #[error("superseded by {} while waiting for {lock}", by.brief())]
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

    /// A kind of lock's own failure, such as a PostgreSQL server that
    /// cannot be reached: the kind of lock sorts it ([`Error::kind`]), and
    /// its typed error is reached with [`Error::downcast_ref`].
    #[error(transparent)]
    Backend(BackendError),

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
        self.kind().is_conflict()
    }

    /// What sort of failure this is: the one place errors are sorted, for
    /// exit statuses, quiet output and a binding's exception classes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidName { .. } | Error::Unsupported { .. } => ErrorKind::Usage,
            Error::UnusableDir { .. }
            | Error::UnsafeDir { .. }
            | Error::ForeignSymlink { .. }
            | Error::NotRegularFile { .. }
            | Error::NotSocket { .. } => ErrorKind::Config,
            Error::PermissionDenied { .. } => ErrorKind::Permission,
            Error::Busy { .. } => ErrorKind::Busy,
            Error::TimedOut { .. } => ErrorKind::TimedOut,
            Error::Superseded { .. } => ErrorKind::Superseded,
            Error::Interrupted { .. } => ErrorKind::Interrupted,
            Error::Backend(err) => err.kind(),
            Error::KeepsChanging { .. } | Error::Io { .. } => ErrorKind::System,
        }
    }

    /// A kind of lock's own error carried by [`Error::Backend`], if it is
    /// an `E`: `err.downcast_ref::<withlock::pg::PgError>()`.
    pub fn downcast_ref<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            Error::Backend(err) => err.downcast_ref(),
            _ => None,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lock() -> String {
        "deploy".into()
    }

    #[test]
    fn bad_input_is_usage() {
        let name = Error::InvalidName {
            name: "a/b".into(),
            reason: "no slash",
        };
        let unsupported = Error::Unsupported {
            lock: lock(),
            reason: "exclusive only".into(),
        };
        assert_eq!(name.kind(), ErrorKind::Usage);
        assert_eq!(unsupported.kind(), ErrorKind::Usage);
    }

    #[test]
    fn what_rules_the_lock_out_is_config() {
        let dir = PathBuf::from("/run/lock");
        for error in [
            Error::UnusableDir {
                dir: dir.clone(),
                reason: "missing".into(),
            },
            Error::UnsafeDir {
                dir: dir.clone(),
                reason: "world-writable".into(),
            },
            Error::ForeignSymlink {
                link: dir.clone(),
                owner: "mallory".into(),
                fix: "remove it".into(),
            },
            Error::NotRegularFile {
                path: dir.clone(),
                kind: "FIFO",
            },
            Error::NotSocket {
                path: dir,
                kind: "regular file",
            },
        ] {
            assert_eq!(error.kind(), ErrorKind::Config, "{error}");
        }
    }

    #[test]
    fn a_refused_open_is_permission() {
        let error = Error::PermissionDenied {
            path: "/run/lock/x.lock".into(),
            detail: "owned by root".into(),
        };
        assert_eq!(error.kind(), ErrorKind::Permission);
    }

    #[test]
    fn busy_and_timed_out_are_conflicts() {
        let busy = Error::Busy {
            lock: lock(),
            holders: Holders::default(),
        };
        let timed_out = Error::TimedOut {
            lock: lock(),
            waited: Duration::from_secs(1),
            holders: Holders::default(),
        };
        assert_eq!(busy.kind(), ErrorKind::Busy);
        assert_eq!(timed_out.kind(), ErrorKind::TimedOut);
        assert!(busy.is_conflict() && timed_out.is_conflict());
    }

    #[test]
    fn superseded_is_its_own_kind_and_not_a_conflict() {
        let by = crate::holder::Holder::of_pid(0, crate::request::Mode::Exclusive);
        let error = Error::Superseded {
            lock: lock(),
            by: Box::new(by),
        };
        assert_eq!(error.kind(), ErrorKind::Superseded);
        assert!(!error.is_conflict());
        assert_eq!(
            error.to_string(),
            "superseded by a request in another PID namespace while waiting for deploy"
        );
    }

    #[test]
    fn interrupted_is_its_own_kind() {
        assert_eq!(
            Error::Interrupted { lock: lock() }.kind(),
            ErrorKind::Interrupted
        );
    }

    #[test]
    fn other_failures_are_system_errors() {
        let changing = Error::KeepsChanging {
            path: "/run/lock/x.lock".into(),
            attempts: 10,
        };
        let io = Error::io("reading /proc/locks", io::ErrorKind::NotFound);
        assert_eq!(changing.kind(), ErrorKind::System);
        assert_eq!(io.kind(), ErrorKind::System);
    }
}
