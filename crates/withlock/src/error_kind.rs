//! The kinds an [`crate::Error`] is sorted into, once, for every caller
//! that acts on what went wrong rather than on its words: the command-line
//! tool's exit status and quiet rule, and a binding's exception classes.

/// What sort of failure an [`crate::Error`] is, whatever kind of lock
/// raised it ([`crate::Error::kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// Bad input: a lock name, spec or server URL that breaks the rules,
    /// or a lock asked for in a way it cannot be taken.
    Usage,
    /// The set-up rules the lock out until someone fixes it: an unusable
    /// or unsafe lock directory, a foreign symbolic link, something other
    /// than a lock file or socket at the lock's path, TLS or a pooler the
    /// server URL cannot be used with, a missing database, damaged state.
    Config,
    /// This user (or database role) may not take the lock: a file or
    /// directory it may not open, refused credentials, missing privileges.
    Permission,
    /// The lock is held and the caller asked not to wait.
    Busy,
    /// The lock was still held when the wait ran out.
    TimedOut,
    /// A newer superseding request came while this one waited.
    Superseded,
    /// The caller's interrupt check stopped the wait.
    Interrupted,
    /// The server that keeps the lock could not be reached or failed.
    Unavailable,
    /// Any other failure of the operating system.
    System,
}

impl ErrorKind {
    /// True for [`ErrorKind::Busy`] and [`ErrorKind::TimedOut`]: someone
    /// else holds the lock.
    pub fn is_conflict(self) -> bool {
        matches!(self, ErrorKind::Busy | ErrorKind::TimedOut)
    }
}
