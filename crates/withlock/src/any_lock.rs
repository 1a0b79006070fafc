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
use std::time::{Duration, SystemTime};

use crate::cancelled::Cancelled;
use crate::deadline::Deadline;
use crate::error::{Error, Result};
#[cfg(feature = "etcd")]
use crate::etcd::{EtcdGuard, EtcdLock};
use crate::file::file_key::FileKey;
use crate::file::file_lock::{FileGuard, FileLock};
use crate::file::listing;
use crate::holder::Holders;
use crate::lock::{Lock, WaitHooks};
use crate::lock_loss::LockLoss;
use crate::lock_status::LockStatus;
#[cfg(feature = "postgres")]
use crate::pg::{PgGuard, PgLock};
use crate::request::Mode;
use crate::run_record::LastSuccess;
use crate::socket::listing as socket_listing;
use crate::socket::socket_key::SocketKey;
use crate::socket::socket_lock::{SocketGuard, SocketLock};
use crate::spec::LockTarget;

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
    /// A key in line on an etcd cluster.
    #[cfg(feature = "etcd")]
    Etcd,
}

impl Kind {
    /// The kind as a word for messages: "file", "socket" or "PostgreSQL".
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Socket => "socket",
            #[cfg(feature = "postgres")]
            Kind::Pg => "PostgreSQL",
            #[cfg(feature = "etcd")]
            Kind::Etcd => "etcd",
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
    /// A key in line on an etcd cluster.
    #[cfg(feature = "etcd")]
    Etcd(Box<EtcdLock>),
}

impl AnyLock {
    /// A socket spec (`tcp:PORT`, `tcp:HOST:PORT`, `unix:PATH`,
    /// `abstract:NAME`), a lock file path or a lock name, as
    /// [`LockTarget::parse`] reads it (without a mode of its own).
    pub fn parse(spec: &str, dir: Option<&Path>) -> Result<AnyLock> {
        AnyLock::at(&LockTarget::parse(spec)?, spec, dir)
    }

    /// The lock `target` names, exclusive, labelled `label` in messages; a
    /// name is a lock file in `dir`, or in [`crate::lock_dir::default_dir`].
    pub fn at(target: &LockTarget, label: &str, dir: Option<&Path>) -> Result<AnyLock> {
        match target {
            LockTarget::File(target) => FileLock::at(target, dir).map(AnyLock::File),
            LockTarget::Socket(address) => Ok(AnyLock::Socket(
                SocketLock::new(address.clone()).labelled(label),
            )),
        }
    }

    /// The kind of lock; it prints as a word for messages.
    pub fn kind(&self) -> Kind {
        match self {
            AnyLock::File(_) => Kind::File,
            AnyLock::Socket(_) => Kind::Socket,
            #[cfg(feature = "postgres")]
            AnyLock::Pg(_) => Kind::Pg,
            #[cfg(feature = "etcd")]
            AnyLock::Etcd(_) => Kind::Etcd,
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
            #[cfg(feature = "etcd")]
            AnyLock::Etcd(_) => false,
        }
    }

    /// True when a wait for the lock outlives a process that exits while
    /// waiting: an etcd request's key stays in line until its lease runs
    /// out. A process about to exit on a signal then calls
    /// [`abandon_waits`] first. False for the other kinds, whose waits end
    /// with their descriptor or session.
    pub fn wait_outlives_exit(&self) -> bool {
        match self {
            #[cfg(feature = "etcd")]
            AnyLock::Etcd(_) => true,
            _ => false,
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
            #[cfg(feature = "etcd")]
            (AnyLock::Etcd(lock), mode) => Ok(AnyLock::Etcd(Box::new(lock.with_mode(mode)))),
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

    /// True when a holder of the lock can be cancelled by a newer request
    /// ([`crate::cancel`]): its holders can check who asks (a file lock
    /// through `/proc/locks`, a PostgreSQL lock through `pg_locks`, an
    /// etcd lock through the keys in its line); a socket lock cannot.
    pub fn supports_cancel(&self) -> bool {
        !matches!(self, AnyLock::Socket(_))
    }

    /// The semaphore's limit, for a lock made one with
    /// [`AnyLock::with_max`].
    pub fn max(&self) -> Option<u32> {
        match self {
            AnyLock::File(lock) => lock.max(),
            AnyLock::Socket(_) => None,
            #[cfg(feature = "postgres")]
            AnyLock::Pg(lock) => lock.max(),
            #[cfg(feature = "etcd")]
            AnyLock::Etcd(lock) => lock.max(),
        }
    }

    /// The same lock taken as `--cancel-running` does, for a kind that
    /// asks and listens through its server (`PgLock::cancelling`); a file
    /// lock's cancel goes through [`crate::Supersede::announce_cancelling`]
    /// and a [`crate::CancelWatch`], so it and the other kinds stay as
    /// they are (ask [`AnyLock::supports_cancel`] first).
    pub fn cancelling(self) -> AnyLock {
        match self {
            #[cfg(feature = "postgres")]
            AnyLock::Pg(lock) => AnyLock::Pg(Box::new(lock.cancelling())),
            #[cfg(feature = "etcd")]
            AnyLock::Etcd(lock) => AnyLock::Etcd(Box::new(lock.cancelling())),
            other => other,
        }
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
            #[cfg(feature = "etcd")]
            AnyLock::Etcd(lock) => Ok(AnyLock::Etcd(Box::new(lock.with_max(max)))),
        }
    }

    /// The mode it will be taken in.
    pub fn mode(&self) -> Mode {
        match self {
            AnyLock::File(lock) => lock.mode(),
            AnyLock::Socket(_) => Mode::Exclusive,
            #[cfg(feature = "postgres")]
            AnyLock::Pg(lock) => lock.mode(),
            #[cfg(feature = "etcd")]
            AnyLock::Etcd(lock) => lock.mode(),
        }
    }

    /// The spec as a person gave it: name, path or socket spec.
    pub fn label(&self) -> &str {
        match self {
            AnyLock::File(lock) => lock.label(),
            AnyLock::Socket(lock) => lock.label(),
            #[cfg(feature = "postgres")]
            AnyLock::Pg(lock) => lock.name(),
            #[cfg(feature = "etcd")]
            AnyLock::Etcd(lock) => lock.name(),
        }
    }

    /// What a listing shows for this lock ([`crate::list`]): what is at
    /// its path, and its holders and waiters, taking nothing. Each kind
    /// answers for its own: a lock file and its queue's obstruction, a
    /// socket file or spec, a server's advisory lock by its holders.
    pub(crate) fn status(&self) -> Result<LockStatus> {
        match self {
            AnyLock::File(lock) => listing::status(lock),
            AnyLock::Socket(lock) => socket_listing::status(lock),
            #[cfg(feature = "postgres")]
            AnyLock::Pg(lock) => crate::pg::listing::status(lock),
            #[cfg(feature = "etcd")]
            AnyLock::Etcd(lock) => crate::etcd::listing::status(lock),
        }
    }
}

/// The one place a server URL chooses its kind of lock: `etcd://` and
/// `etcds://` an etcd lock, anything else a PostgreSQL lock (a
/// `postgres://` URL or a libpq `key=value` string).
#[cfg(feature = "postgres")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerKind {
    Pg,
    #[cfg(feature = "etcd")]
    Etcd,
}

#[cfg(feature = "postgres")]
fn server_kind(url: &str) -> ServerKind {
    #[cfg(feature = "etcd")]
    if crate::etcd::is_etcd_url(url) {
        return ServerKind::Etcd;
    }
    let _ = url;
    ServerKind::Pg
}

#[cfg(feature = "postgres")]
impl AnyLock {
    /// The lock `name` on the server `url`, of the kind its scheme chooses
    /// (`etcd://`/`etcds://` or PostgreSQL), exclusive, announced to other
    /// clients as this process running `command`, held by a caller that
    /// stops its work within `grace` once told the lock is lost.
    pub fn on_server(
        url: &str,
        name: &str,
        command: &[String],
        grace: Duration,
    ) -> Result<AnyLock> {
        match server_kind(url) {
            ServerKind::Pg => {
                let identity = crate::pg::Identity::running(command);
                let lock = PgLock::announced(url, name, identity)?.with_grace(grace);
                Ok(AnyLock::Pg(Box::new(lock)))
            }
            #[cfg(feature = "etcd")]
            ServerKind::Etcd => {
                let lock = EtcdLock::new(url, name)?.running(command).with_grace(grace);
                Ok(AnyLock::Etcd(Box::new(lock)))
            }
        }
    }
}

/// The locks `names` on the server `url` (every lock it keeps when
/// `names` is empty), of the kind its scheme chooses, for a listing.
#[cfg(feature = "postgres")]
pub fn list_on_server(url: &str, names: &[String]) -> Result<Vec<LockStatus>> {
    match server_kind(url) {
        ServerKind::Pg => crate::pg::list(url, names),
        #[cfg(feature = "etcd")]
        ServerKind::Etcd => crate::etcd::list(url, names),
    }
}

/// True when the server URL `url` carries a password itself, which a
/// command line must not (every local user can read it with ps).
#[cfg(feature = "postgres")]
pub fn server_url_gives_password(url: &str) -> bool {
    match server_kind(url) {
        ServerKind::Pg => crate::pg::connection::gives_password(url),
        #[cfg(feature = "etcd")]
        ServerKind::Etcd => crate::etcd::gives_password(url),
    }
}

/// Gives up every wait in progress in this process whose kind of lock
/// would otherwise keep it after the process exits
/// ([`AnyLock::wait_outlives_exit`]): for a process about to exit on a
/// signal. Safe to call from any thread but a signal handler.
pub fn abandon_waits() {
    #[cfg(feature = "etcd")]
    crate::etcd::abandon_waits();
}

/// Every lock found in the lock directory `dir`, for a listing
/// ([`crate::list`] with no names): the file locks there, the only kind
/// that lives in it.
pub(crate) fn locks_in(dir: &Path) -> Result<Vec<LockStatus>> {
    listing::locks_in(dir)
}

/// The key that puts locks in a [`crate::LockSet`]'s global order; two
/// locks with equal keys are the same lock. Each kind of lock makes its
/// own key, and the kinds come in the order they are registered here:
/// file locks, then socket locks, then PostgreSQL locks.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LockKey(KindKey);

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum KindKey {
    File(FileKey),
    Socket(SocketKey),
    #[cfg(feature = "postgres")]
    Pg(crate::pg::OrderKey),
    #[cfg(feature = "etcd")]
    Etcd(crate::etcd::OrderKey),
}

impl LockKey {
    /// The key of `lock`. For a lock on the file system it reads the
    /// lock's directory with stat(2); the lock file itself need not exist.
    pub fn of(lock: &AnyLock) -> LockKey {
        LockKey(match lock {
            AnyLock::File(lock) => KindKey::File(FileKey::of(&lock.path())),
            AnyLock::Socket(lock) => KindKey::Socket(SocketKey::of(lock.address())),
            #[cfg(feature = "postgres")]
            AnyLock::Pg(lock) => KindKey::Pg(crate::pg::OrderKey::new(lock.server(), lock.key())),
            #[cfg(feature = "etcd")]
            AnyLock::Etcd(lock) => KindKey::Etcd(crate::etcd::OrderKey::new(
                lock.cluster(),
                lock.key_prefix(),
            )),
        })
    }

    /// The key as bytes, the same in every process for the same lock (for
    /// naming things after the lock, such as supersede notices).
    pub fn to_bytes(&self) -> Vec<u8> {
        match &self.0 {
            KindKey::File(key) => key.to_bytes(),
            KindKey::Socket(key) => key.to_bytes(),
            #[cfg(feature = "postgres")]
            KindKey::Pg(key) => key.to_bytes(),
            #[cfg(feature = "etcd")]
            KindKey::Etcd(key) => key.to_bytes(),
        }
    }
}

impl Lock for AnyLock {
    type Guard = AnyGuard;

    fn acquire_until(&self, deadline: Deadline, hooks: &mut dyn WaitHooks) -> Result<AnyGuard> {
        match self {
            AnyLock::File(lock) => lock.acquire_until(deadline, hooks).map(AnyGuard::File),
            AnyLock::Socket(lock) => lock.acquire_until(deadline, hooks).map(AnyGuard::Socket),
            #[cfg(feature = "postgres")]
            AnyLock::Pg(lock) => lock.acquire_until(deadline, hooks).map(AnyGuard::Pg),
            #[cfg(feature = "etcd")]
            AnyLock::Etcd(lock) => lock.acquire_until(deadline, hooks).map(AnyGuard::Etcd),
        }
    }

    fn holders(&self) -> Result<Holders> {
        match self {
            AnyLock::File(lock) => lock.holders(),
            AnyLock::Socket(lock) => lock.holders(),
            #[cfg(feature = "postgres")]
            AnyLock::Pg(lock) => lock.holders(),
            #[cfg(feature = "etcd")]
            AnyLock::Etcd(lock) => lock.holders(),
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
    /// A held etcd lock.
    #[cfg(feature = "etcd")]
    Etcd(EtcdGuard),
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
            #[cfg(feature = "etcd")]
            AnyGuard::Etcd(_) => None,
        }
    }

    /// How long the lock has been held.
    pub fn held_for(&self) -> Duration {
        match self {
            AnyGuard::File(guard) => guard.held_for(),
            AnyGuard::Socket(guard) => guard.held_for(),
            #[cfg(feature = "postgres")]
            AnyGuard::Pg(guard) => guard.held_for(),
            #[cfg(feature = "etcd")]
            AnyGuard::Etcd(guard) => guard.held_for(),
        }
    }

    /// The grant's fencing token, for a kind of lock that draws one (a
    /// PostgreSQL lock: `pg::fence`); None for a file or socket lock.
    pub fn fence(&self) -> Option<i64> {
        match self {
            AnyGuard::File(_) | AnyGuard::Socket(_) => None,
            #[cfg(feature = "postgres")]
            AnyGuard::Pg(guard) => Some(guard.fence()),
            #[cfg(feature = "etcd")]
            AnyGuard::Etcd(guard) => Some(guard.fence()),
        }
    }

    /// When a run under this lock last succeeded (`--once-per`): a lock
    /// file's record beside it, a PostgreSQL lock's row on the server; a
    /// socket lock keeps none ([`Error::Unsupported`]); an etcd lock's is a
    /// key whose lease runs out with the window. Read it while
    /// holding the lock exclusively, before [`AnyGuard::watch_for_loss`].
    pub fn last_success(&mut self) -> Result<Option<LastSuccess>> {
        match self {
            AnyGuard::File(guard) => guard.last_success(),
            AnyGuard::Socket(_) => Err(no_record()),
            #[cfg(feature = "postgres")]
            AnyGuard::Pg(guard) => guard.last_success().map_err(Error::from),
            #[cfg(feature = "etcd")]
            AnyGuard::Etcd(guard) => guard.last_success().map_err(Error::from),
        }
    }

    /// Records that the run under this hold succeeded, as
    /// [`AnyGuard::last_success`] reads it, for a window of `window`: an
    /// etcd record lasts that long from when the run took the lock (file
    /// and PostgreSQL records last until replaced).
    pub fn record_success(&mut self, window: Duration) -> Result<()> {
        // Only etcd's record needs the window; a build without it has no use for it.
        #[cfg(not(feature = "etcd"))]
        let _ = window;
        match self {
            AnyGuard::File(guard) => guard.record_success(),
            AnyGuard::Socket(_) => Err(no_record()),
            #[cfg(feature = "postgres")]
            AnyGuard::Pg(guard) => guard.record_success().map_err(Error::from),
            #[cfg(feature = "etcd")]
            AnyGuard::Etcd(guard) => guard.record_success(window).map_err(Error::from),
        }
    }

    /// Which of the N places of a `--max N` lock this holder has, 0 to
    /// N-1, unique among the lock's current holders (a lock file's slot
    /// byte, a server's slot key, an etcd holder record's claimed place);
    /// `None` for any other lock, a socket lock, and a file lock this user
    /// can only read.
    pub fn slot(&self) -> Option<u32> {
        match self {
            AnyGuard::File(guard) => guard.slot(),
            AnyGuard::Socket(_) => None,
            #[cfg(feature = "postgres")]
            AnyGuard::Pg(guard) => guard.slot(),
            #[cfg(feature = "etcd")]
            AnyGuard::Etcd(guard) => guard.slot(),
        }
    }

    /// Watches the lock for loss while held, for a kind of lock that can
    /// lose it while this process lives (a PostgreSQL lock:
    /// `PgGuard::watch`); file and socket locks cannot, and need no
    /// watch. Fails only if the watch cannot start.
    pub fn watch_for_loss(
        &mut self,
        on_lost: Box<dyn FnOnce(LockLoss) + Send>,
    ) -> std::io::Result<()> {
        match self {
            AnyGuard::File(_) | AnyGuard::Socket(_) => {
                drop(on_lost);
                Ok(())
            }
            #[cfg(feature = "postgres")]
            AnyGuard::Pg(guard) => guard.watch(Box::new(move |lost| on_lost(LockLoss::new(lost)))),
            #[cfg(feature = "etcd")]
            AnyGuard::Etcd(guard) => {
                guard.watch(Box::new(move |lost| on_lost(LockLoss::new(lost))));
                Ok(())
            }
        }
    }

    /// Tells listings when this holder's time limit runs out (a file
    /// lock's deadline stamp, a PostgreSQL lock's `application_name`, an
    /// etcd lock's holder record);
    /// a socket lock has nowhere to say it. Call it before
    /// [`AnyGuard::watch_for_loss`].
    pub fn announce_deadline(&mut self, deadline: SystemTime) -> Result<()> {
        match self {
            AnyGuard::File(guard) => {
                guard.announce_deadline(deadline);
                Ok(())
            }
            AnyGuard::Socket(_) => Ok(()),
            #[cfg(feature = "postgres")]
            AnyGuard::Pg(guard) => guard.announce_deadline(deadline).map_err(Error::from),
            #[cfg(feature = "etcd")]
            AnyGuard::Etcd(guard) => guard.announce_deadline(deadline).map_err(Error::from),
        }
    }

    /// For a lock that may be cancelled by a newer request through its
    /// server (see `pg::cancel`): `on_cancel` is called from the watch
    /// [`AnyGuard::watch_for_loss`] starts. Other kinds drop it.
    pub fn watch_for_cancel(&mut self, on_cancel: Box<dyn FnOnce(Cancelled) + Send>) {
        match self {
            AnyGuard::File(_) | AnyGuard::Socket(_) => drop(on_cancel),
            #[cfg(feature = "postgres")]
            AnyGuard::Pg(guard) => guard.on_cancel(on_cancel),
            #[cfg(feature = "etcd")]
            AnyGuard::Etcd(guard) => {
                // Without its thread the holder is just not cancelled.
                let _ = guard.on_cancel(on_cancel);
            }
        }
    }

    /// A loss the watch noticed ([`AnyGuard::watch_for_loss`]), if any.
    pub fn lost(&self) -> Option<LockLoss> {
        match self {
            AnyGuard::File(_) | AnyGuard::Socket(_) => None,
            #[cfg(feature = "postgres")]
            AnyGuard::Pg(guard) => guard.lost().map(LockLoss::new),
            #[cfg(feature = "etcd")]
            AnyGuard::Etcd(guard) => guard.lost().map(LockLoss::new),
        }
    }

    /// Releases the lock now, for every process sharing its descriptor.
    pub fn release(self) -> Result<()> {
        match self {
            AnyGuard::File(guard) => guard.release(),
            AnyGuard::Socket(guard) => guard.release(),
            #[cfg(feature = "postgres")]
            AnyGuard::Pg(guard) => guard.release().map_err(Error::from),
            #[cfg(feature = "etcd")]
            AnyGuard::Etcd(guard) => guard.release().map_err(Error::from),
        }
    }
}

/// A socket lock has nowhere to keep a record of runs.
fn no_record() -> Error {
    Error::Unsupported {
        lock: "a socket lock".to_owned(),
        reason: "keeps no record of the last run: use a lock name or --url".into(),
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
    fn keys_order_kinds_and_name_each_lock_in_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let key = |spec: &str| LockKey::of(&AnyLock::parse(spec, Some(dir.path())).unwrap());
        let unix = format!("unix:{}", dir.path().join("s").display());
        let in_order = [key("x"), key("tcp:4711"), key(&unix), key("abstract:x")];
        assert!(in_order.is_sorted(), "{in_order:?}");
        let st = nix::sys::stat::stat(dir.path()).unwrap();
        let place = format!("{}:{}", st.st_dev, st.st_ino);
        let bytes: Vec<String> = in_order
            .iter()
            .map(|k| String::from_utf8(k.to_bytes()).unwrap())
            .collect();
        assert_eq!(
            bytes,
            [
                format!("file/{place}/x.lock"),
                "tcp/[::ffff:127.0.0.1]:4711".into(),
                format!("unix/{place}/s"),
                "abstract/x".into(),
            ]
        );
        assert_eq!(key("tcp:4711"), key("tcp:127.0.0.1:4711"));
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
