//! Any kind of lock withlock offers, chosen by its spec: a file lock for a
//! lock name or path, a socket lock for `tcp:`, `unix:` or `abstract:`,
//! and (with the `postgres` feature) an advisory lock on a PostgreSQL
//! server, made with [`AnyLock::Pg`] since a name alone does not say which
//! server.
//!
//! This file is where the kinds of lock are registered: the command-line
//! tool and [`crate::LockSet`] take every lock through [`AnyLock`] and
//! [`AnyGuard`], and ask what a kind can do through their methods, never
//! by naming a kind. Adding a kind of lock means its own module and one
//! variant in each enum here.

use std::fmt;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::file::file_lock::{FileGuard, FileLock};
use crate::holder::Holders;
use crate::lock::{Lock, WaitHooks};
#[cfg(feature = "postgres")]
use crate::pg::{PgGuard, PgLock};
use crate::request::{Mode, Wait};
use crate::socket::socket_lock::{SocketGuard, SocketLock};
use crate::socket::socket_spec::SocketAddress;

/// Which kind of lock an [`AnyLock`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// flock(2) on a lock file.
    File,
    /// Listening on a socket address.
    Socket,
    /// An advisory lock on a PostgreSQL server.
    #[cfg(feature = "postgres")]
    Pg,
}

impl Kind {
    /// The kind as a word for messages: "file", "socket" or "PostgreSQL".
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Socket => "socket",
            #[cfg(feature = "postgres")]
            Kind::Pg => "PostgreSQL",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A file lock, a socket lock or a PostgreSQL advisory lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyLock {
    /// flock(2) on a lock file.
    File(FileLock),
    /// Listening on a socket address.
    Socket(SocketLock),
    /// A session-level advisory lock on a PostgreSQL server.
    #[cfg(feature = "postgres")]
    Pg(Box<PgLock>),
}

impl AnyLock {
    /// A socket spec (`tcp:PORT`, `tcp:HOST:PORT`, `unix:PATH`,
    /// `abstract:NAME`), else a lock name or lock file path as
    /// [`FileLock::parse`] reads it.
    pub fn parse(spec: &str, dir: Option<&Path>) -> Result<AnyLock> {
        match SocketAddress::parse(spec) {
            Some(address) => Ok(AnyLock::Socket(SocketLock::new(address?).labelled(spec))),
            None => FileLock::parse(spec, dir).map(AnyLock::File),
        }
    }

    /// The kind of lock; it prints as a word for messages.
    pub fn kind(&self) -> Kind {
        match self {
            AnyLock::File(_) => Kind::File,
            AnyLock::Socket(_) => Kind::Socket,
            #[cfg(feature = "postgres")]
            AnyLock::Pg(_) => Kind::Pg,
        }
    }

    /// True when a child process given the lock's descriptor
    /// ([`AnyGuard::as_fd`]) goes on holding it if this process dies: a
    /// file or socket lock. False for a lock held by this process's own
    /// server session, which ends with it, so a child must not outlive it.
    pub fn can_be_inherited(&self) -> bool {
        match self {
            AnyLock::File(_) | AnyLock::Socket(_) => true,
            #[cfg(feature = "postgres")]
            AnyLock::Pg(_) => false,
        }
    }

    /// True when the lock can be shared ([`Mode::Shared`]).
    pub fn supports_shared(&self) -> bool {
        !matches!(self, AnyLock::Socket(_))
    }

    /// The same lock taken in `mode`; a socket lock refuses
    /// [`Mode::Shared`] with [`Error::Unsupported`].
    pub fn with_mode(self, mode: Mode) -> Result<AnyLock> {
        match (self, mode) {
            (AnyLock::File(lock), mode) => Ok(AnyLock::File(lock.with_mode(mode))),
            #[cfg(feature = "postgres")]
            (AnyLock::Pg(lock), mode) => Ok(AnyLock::Pg(Box::new(lock.with_mode(mode)))),
            (AnyLock::Socket(lock), Mode::Exclusive) => Ok(AnyLock::Socket(lock)),
            (AnyLock::Socket(lock), Mode::Shared) => Err(Error::Unsupported {
                lock: lock.label().to_owned(),
                reason: "socket locks are exclusive only; take it exclusive or use a file lock"
                    .into(),
            }),
        }
    }

    /// True when the lock can be a counting semaphore ([`FileLock::with_max`],
    /// `PgLock::with_max`).
    pub fn supports_max(&self) -> bool {
        !matches!(self, AnyLock::Socket(_))
    }

    /// The same lock as a counting semaphore of up to `max` holders
    /// ([`FileLock::with_max`], `PgLock::with_max`); a socket lock refuses
    /// with [`Error::Unsupported`], and so does a PostgreSQL lock above its
    /// cap (`pg::semaphore::MAX_SLOTS`).
    pub fn with_max(self, max: u32) -> Result<AnyLock> {
        match self {
            AnyLock::File(lock) => Ok(AnyLock::File(lock.with_max(max))),
            AnyLock::Socket(lock) => Err(Error::Unsupported {
                lock: lock.label().to_owned(),
                reason: "socket locks have one holder; drop --max or use a file lock".into(),
            }),
            #[cfg(feature = "postgres")]
            AnyLock::Pg(lock) => Ok(AnyLock::Pg(Box::new(lock.with_max(max)?))),
        }
    }

    /// The mode it will be taken in.
    pub fn mode(&self) -> Mode {
        match self {
            AnyLock::File(lock) => lock.mode(),
            AnyLock::Socket(_) => Mode::Exclusive,
            #[cfg(feature = "postgres")]
            AnyLock::Pg(lock) => lock.mode(),
        }
    }

    /// The spec as a person gave it: name, path or socket spec.
    pub fn label(&self) -> &str {
        match self {
            AnyLock::File(lock) => lock.label(),
            AnyLock::Socket(lock) => lock.label(),
            #[cfg(feature = "postgres")]
            AnyLock::Pg(lock) => lock.name(),
        }
    }
}

impl Lock for AnyLock {
    type Guard = AnyGuard;

    fn acquire_with(&self, wait: Wait, hooks: &mut dyn WaitHooks) -> Result<AnyGuard> {
        match self {
            AnyLock::File(lock) => lock.acquire_with(wait, hooks).map(AnyGuard::File),
            AnyLock::Socket(lock) => lock.acquire_with(wait, hooks).map(AnyGuard::Socket),
            #[cfg(feature = "postgres")]
            AnyLock::Pg(lock) => lock.acquire_with(wait, hooks).map(AnyGuard::Pg),
        }
    }

    fn holders(&self) -> Result<Holders> {
        match self {
            AnyLock::File(lock) => lock.holders(),
            AnyLock::Socket(lock) => lock.holders(),
            #[cfg(feature = "postgres")]
            AnyLock::Pg(lock) => lock.holders(),
        }
    }

    fn describe(&self) -> String {
        self.label().to_owned()
    }
}

/// A held [`AnyLock`]; dropping it releases the lock.
#[derive(Debug)]
pub enum AnyGuard {
    /// A held file lock.
    File(FileGuard),
    /// A held socket lock.
    Socket(SocketGuard),
    /// A held PostgreSQL advisory lock.
    #[cfg(feature = "postgres")]
    Pg(PgGuard),
}

impl AnyGuard {
    /// The descriptor that holds the lock, for handing to a child process:
    /// the locked file or the listening socket. None for a PostgreSQL lock,
    /// whose session must stay with this process (a child sharing the
    /// connection would garble its protocol).
    pub fn as_fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            AnyGuard::File(guard) => Some(guard.as_fd()),
            AnyGuard::Socket(guard) => Some(guard.as_fd()),
            #[cfg(feature = "postgres")]
            AnyGuard::Pg(_) => None,
        }
    }

    /// How long the lock has been held.
    pub fn held_for(&self) -> Duration {
        match self {
            AnyGuard::File(guard) => guard.held_for(),
            AnyGuard::Socket(guard) => guard.held_for(),
            #[cfg(feature = "postgres")]
            AnyGuard::Pg(guard) => guard.held_for(),
        }
    }

    /// The grant's fencing token, for a kind of lock that draws one (a
    /// PostgreSQL lock: `pg::fence`); None for a file or socket lock.
    pub fn fence(&self) -> Option<i64> {
        match self {
            AnyGuard::File(_) | AnyGuard::Socket(_) => None,
            #[cfg(feature = "postgres")]
            AnyGuard::Pg(guard) => Some(guard.fence()),
        }
    }

    /// Watches the lock for loss while held, for a kind of lock that can
    /// lose it while this process lives (a PostgreSQL lock:
    /// [`PgGuard::watch`]); file and socket locks cannot, and need no
    /// watch. Fails only if the watch cannot start.
    #[cfg(feature = "postgres")]
    pub fn watch_for_loss(
        &mut self,
        on_lost: Box<dyn FnOnce(crate::pg::LockLost) + Send>,
    ) -> std::io::Result<()> {
        match self {
            AnyGuard::File(_) | AnyGuard::Socket(_) => Ok(()),
            AnyGuard::Pg(guard) => guard.watch(on_lost),
        }
    }

    /// A loss the watch noticed ([`AnyGuard::watch_for_loss`]), if any.
    #[cfg(feature = "postgres")]
    pub fn lost(&self) -> Option<crate::pg::LockLost> {
        match self {
            AnyGuard::File(_) | AnyGuard::Socket(_) => None,
            AnyGuard::Pg(guard) => guard.lost(),
        }
    }

    /// Releases the lock now, for every process sharing its descriptor.
    pub fn release(self) -> Result<()> {
        match self {
            AnyGuard::File(guard) => guard.release(),
            AnyGuard::Socket(guard) => guard.release(),
            #[cfg(feature = "postgres")]
            AnyGuard::Pg(guard) => guard.release().map_err(Error::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_choose_the_kind_of_lock() {
        let dir = Path::new("/run/lock");
        for (spec, kind) in [
            ("deploy", Kind::File),
            ("./x.lock", Kind::File),
            ("tcp:4711", Kind::Socket),
            ("unix:/run/lock/x.sock", Kind::Socket),
            ("abstract:x", Kind::Socket),
        ] {
            let lock = AnyLock::parse(spec, Some(dir)).unwrap();
            assert_eq!((lock.kind(), lock.label()), (kind, spec));
            assert!(lock.can_be_inherited());
        }
        assert_eq!(Kind::Socket.to_string(), "socket");
        assert!(AnyLock::parse("tcp:0", None).is_err());
    }

    #[test]
    fn socket_locks_refuse_shared_mode() {
        let lock = AnyLock::parse("abstract:x", None).unwrap();
        assert!(!lock.supports_shared());
        assert!(matches!(
            lock.clone().with_mode(Mode::Shared),
            Err(Error::Unsupported { .. })
        ));
        assert_eq!(
            lock.with_mode(Mode::Exclusive).unwrap().mode(),
            Mode::Exclusive
        );
        let file = AnyLock::parse("x", None).unwrap();
        assert_eq!(file.with_mode(Mode::Shared).unwrap().mode(), Mode::Shared);
    }

    #[test]
    fn only_file_locks_count_holders() {
        let socket = AnyLock::parse("abstract:x", None).unwrap();
        assert!(!socket.supports_max());
        assert!(matches!(socket.with_max(2), Err(Error::Unsupported { .. })));
        let file = AnyLock::parse("x", None).unwrap();
        assert!(file.supports_max());
        assert_eq!(file.with_max(3).unwrap().mode(), Mode::Shared);
    }
}
