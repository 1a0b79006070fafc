//! Several locks taken together: all or none, in one global order.
//!
//! A [`LockSet`] holds any number of [`AnyLock`]s, each with its own mode.
//! [`LockSet::acquire_with`] takes them one after another in the set's
//! order and keeps the ones it has while it waits for the next; if any of
//! them fails (busy, timed out, interrupted, an error), every lock already
//! taken is released before the error is returned, so the caller holds
//! either all of them or none.
//!
//! **The global order.** Two callers that name the same locks in opposite
//! orders would deadlock if each took them in the order given: each would
//! hold one and wait for the other. So the set sorts its locks by a key
//! that every caller computes the same way for the same lock, whatever the
//! order or the spelling it was given in (see [`LockKey`]):
//!
//! 1. file locks first, by the identity of their directory (device and
//!    inode number, so every path to it gives one order: through symbolic
//!    links, bind mounts or another container's mount point), then by the
//!    lock file's name;
//! 2. then socket locks: TCP by address and port, then Unix sockets by
//!    their directory's identity and file name, then abstract names by
//!    their bytes;
//! 3. then PostgreSQL locks, by server (`host:port/dbname`) and advisory
//!    key.
//!
//! Since every caller takes its locks in increasing key order while
//! holding only locks with smaller keys, no cycle of waiters can form.
//!
//! **One lock named twice** (even spelt differently: `a` and
//! `/run/lock/a.lock`, `tcp:4711` and `tcp:127.0.0.1:4711`) is taken once;
//! if the two namings ask for different modes, exclusive wins, since it
//! grants everything shared does.
//!
//! **A deadline** ([`Wait::For`]) is shared: it is the time for the whole
//! set, not for each lock. The set makes one [`Deadline`] and every lock
//! waits by it, so one that times out counts the whole wait, and a set
//! whose time ran out before its last lock is timed out, not busy.
//!
//! **Per-lock modes** in a spec ([`parse_spec`]): `NAME=shared` or
//! `NAME=exclusive`, read as [`crate::spec`] says.
//!
//! ```no_run
//! use withlock::{LockSet, Mode};
//!
//! let set = LockSet::parse(&["build", "artifacts=shared"], None, Mode::Exclusive)?;
//! let guard = set.acquire()?; // both, or an error and neither
//! guard.release()?;
//! # Ok::<(), withlock::Error>(())
//! ```

use std::os::fd::BorrowedFd;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::any_lock::{AnyGuard, AnyLock, LockKey};
use crate::cancelled::Cancelled;
use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::lock::{Lock, NoHooks, WaitHooks};
use crate::lock_loss::LockLoss;
use crate::request::{Mode, Wait};
use crate::spec::LockSpec;

/// What a caller wants to hear while a set of locks is being taken: the
/// [`WaitHooks`] of each wait, and which lock is tried next.
pub trait SetHooks: WaitHooks {
    /// Called before each lock of the set is tried, in acquisition order;
    /// [`WaitHooks::waiting`] may follow if that lock turns out to be held.
    fn taking(&mut self, _lock: &AnyLock) {}
}

impl SetHooks for NoHooks {}

/// The lock `spec` names on this machine, in the mode it gives itself
/// (`artifacts=shared`, `./x.lock=exclusive`) or else `default`; the spec
/// is read by [`LockSpec::parse`].
pub fn parse_spec(spec: &str, dir: Option<&Path>, default: Mode) -> Result<AnyLock> {
    let spec = LockSpec::parse(spec)?;
    AnyLock::at(&spec.target, &spec.label, dir)?.with_mode(spec.mode.unwrap_or(default))
}

/// Several locks, each with its own mode, taken all or none in the global
/// order (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockSet {
    /// In acquisition order, each with its key.
    locks: Vec<(LockKey, AnyLock)>,
}

impl LockSet {
    /// The set of `locks`: sorted into the global order, a lock named twice
    /// kept once (exclusive if either naming asked for it).
    pub fn new(locks: impl IntoIterator<Item = AnyLock>) -> Result<LockSet> {
        let mut keyed: Vec<(LockKey, AnyLock)> = Vec::new();
        for lock in locks {
            let key = LockKey::of(&lock);
            match keyed.iter_mut().find(|(k, _)| *k == key) {
                Some((_, kept)) => {
                    if lock.mode() == Mode::Exclusive && kept.mode() != Mode::Exclusive {
                        *kept = kept.clone().with_mode(Mode::Exclusive)?;
                    }
                }
                None => keyed.push((key, lock)),
            }
        }
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(LockSet { locks: keyed })
    }

    /// Parses each spec with [`parse_spec`] and makes a set of them.
    pub fn parse<S: AsRef<str>>(specs: &[S], dir: Option<&Path>, default: Mode) -> Result<LockSet> {
        let locks = specs
            .iter()
            .map(|spec| parse_spec(spec.as_ref(), dir, default))
            .collect::<Result<Vec<_>>>()?;
        LockSet::new(locks)
    }

    /// The locks in the order they are taken.
    pub fn locks(&self) -> impl ExactSizeIterator<Item = &AnyLock> + '_ {
        self.locks.iter().map(|(_, lock)| lock)
    }

    /// The locks with their keys, in the order they are taken.
    pub fn keyed(&self) -> &[(LockKey, AnyLock)] {
        &self.locks
    }

    /// How many locks the set has.
    pub fn len(&self) -> usize {
        self.locks.len()
    }

    /// True for a set of no locks (acquiring it holds nothing).
    pub fn is_empty(&self) -> bool {
        self.locks.is_empty()
    }

    /// Takes every lock, in order, waiting as `wait` says for the whole
    /// set; on any failure releases those already taken and returns the
    /// error (a [`Error::TimedOut`] then counts the whole wait).
    pub fn acquire_with(&self, wait: Wait, hooks: &mut dyn SetHooks) -> Result<SetGuard> {
        self.acquire_until(Deadline::new(wait), hooks)
    }

    /// Takes every lock, in order, each waiting until the one `deadline`;
    /// on any failure releases those already taken and returns the error.
    pub fn acquire_until(&self, deadline: Deadline, hooks: &mut dyn SetHooks) -> Result<SetGuard> {
        let mut guards = Vec::with_capacity(self.locks.len());
        for (_, lock) in &self.locks {
            hooks.taking(lock);
            match lock.acquire_until(deadline, hooks) {
                Ok(guard) => guards.push(guard),
                Err(err) => {
                    let _ = release_all(guards);
                    return Err(err);
                }
            }
        }
        Ok(SetGuard {
            guards,
            acquired: Instant::now(),
        })
    }

    /// Waits as long as it takes.
    pub fn acquire(&self) -> Result<SetGuard> {
        self.acquire_with(Wait::Forever, &mut NoHooks)
    }

    /// Takes the locks only if all are free now, else [`Error::Busy`].
    pub fn try_acquire(&self) -> Result<SetGuard> {
        self.acquire_with(Wait::NoWait, &mut NoHooks)
    }

    /// Waits at most `timeout` for all of them, else [`Error::TimedOut`];
    /// a zero `timeout` does not wait, as [`LockSet::try_acquire`].
    pub fn acquire_timeout(&self, timeout: Duration) -> Result<SetGuard> {
        self.acquire_with(Wait::For(timeout), &mut NoHooks)
    }
}

/// Releases `guards` in the reverse of the order they were taken.
fn release_all(guards: Vec<AnyGuard>) -> Result<()> {
    let mut first_error = None;
    for guard in guards.into_iter().rev() {
        if let Err(err) = guard.release() {
            first_error.get_or_insert(err);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Every lock of a [`LockSet`], held; dropping it releases them all.
#[derive(Debug)]
pub struct SetGuard {
    guards: Vec<AnyGuard>,
    acquired: Instant,
}

impl SetGuard {
    /// The held locks, in the order they were taken.
    pub fn guards(&self) -> &[AnyGuard] {
        &self.guards
    }

    /// The descriptors that hold the locks, for handing to a child process.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.guards.iter().filter_map(AnyGuard::as_fd).collect()
    }

    /// How long the last lock has been held, that is the whole set.
    pub fn held_for(&self) -> Duration {
        self.acquired.elapsed()
    }

    /// Releases every lock now, in reverse order, for every process sharing
    /// their descriptors; all are released even if one fails, and the first
    /// failure is returned.
    pub fn release(self) -> Result<()> {
        release_all(self.guards)
    }

    /// The guards themselves, to release one by one.
    pub fn into_guards(self) -> Vec<AnyGuard> {
        self.guards
    }

    /// Watches every lock of the set that can be lost while this process
    /// lives ([`AnyGuard::watch_for_loss`]): `on_lost` is called, from a
    /// heartbeat thread, for each one lost while held (a PostgreSQL lock's
    /// within `pg::heartbeat::DETECTION_BOUND`).
    pub fn watch_for_loss(
        &mut self,
        on_lost: impl Fn(LockLoss) + Send + Sync + 'static,
    ) -> Result<()> {
        let on_lost = std::sync::Arc::new(on_lost);
        for guard in &mut self.guards {
            let on_lost = on_lost.clone();
            guard
                .watch_for_loss(Box::new(move |lost| on_lost(lost)))
                .map_err(|e| Error::io("starting the lock's heartbeat thread", e))?;
        }
        Ok(())
    }

    /// When a run under the set's lock last succeeded
    /// ([`AnyGuard::last_success`]); a set of several locks keeps no one
    /// record ([`Error::Unsupported`]).
    pub fn last_success(&mut self) -> Result<Option<crate::LastSuccess>> {
        self.only_guard()?.last_success()
    }

    /// Records that the run under the set's lock succeeded, for a window
    /// of `window` ([`AnyGuard::record_success`]).
    pub fn record_success(&mut self, window: std::time::Duration) -> Result<()> {
        self.only_guard()?.record_success(window)
    }

    fn only_guard(&mut self) -> Result<&mut AnyGuard> {
        match self.guards.as_mut_slice() {
            [guard] => Ok(guard),
            _ => Err(Error::Unsupported {
                lock: "the locks".into(),
                reason: "a record of runs is kept for one lock: give one lock".into(),
            }),
        }
    }

    /// Tells listings when the holder's time limit runs out, for every
    /// lock of the set ([`AnyGuard::announce_deadline`]); call it before
    /// [`SetGuard::watch_for_loss`].
    pub fn announce_deadline(&mut self, deadline: std::time::SystemTime) -> Result<()> {
        self.guards
            .iter_mut()
            .try_for_each(|guard| guard.announce_deadline(deadline))
    }

    /// Has the watch that [`SetGuard::watch_for_loss`] starts also tell
    /// `on_cancel` when a newer cancelling request asks a lock taken as
    /// one that may be cancelled (`PgLock::cancelling`) to give way. Call
    /// it first. A file lock's holder listens with a
    /// [`crate::CancelWatch`] instead.
    pub fn watch_for_cancel(&mut self, on_cancel: impl Fn(Cancelled) + Send + Sync + 'static) {
        let on_cancel = std::sync::Arc::new(on_cancel);
        for guard in &mut self.guards {
            let on_cancel = on_cancel.clone();
            guard.watch_for_cancel(Box::new(move |cancelled| on_cancel(cancelled)));
        }
    }

    /// A loss a watch noticed ([`SetGuard::watch_for_loss`]); with several,
    /// the first lock's in the set's order.
    pub fn lost(&self) -> Option<LockLoss> {
        self.guards.iter().find_map(AnyGuard::lost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::file_lock::FileLock;

    fn set(dir: &tempfile::TempDir, specs: &[&str]) -> LockSet {
        LockSet::parse(specs, Some(dir.path()), Mode::Exclusive).unwrap()
    }

    fn labels(set: &LockSet) -> Vec<String> {
        set.locks().map(|l| l.label().to_owned()).collect()
    }

    #[test]
    fn specs_carry_their_own_mode() {
        let dir = Path::new("/run/lock");
        let shared = parse_spec("artifacts=shared", Some(dir), Mode::Exclusive).unwrap();
        assert_eq!((shared.label(), shared.mode()), ("artifacts", Mode::Shared));
        let exclusive = parse_spec("build=exclusive", Some(dir), Mode::Shared).unwrap();
        assert_eq!(exclusive.mode(), Mode::Exclusive);
        let default = parse_spec("build", Some(dir), Mode::Shared).unwrap();
        assert_eq!(default.mode(), Mode::Shared);
        let path = parse_spec("./x=shared=exclusive", None, Mode::Shared).unwrap();
        assert_eq!((path.label(), path.mode()), ("./x=shared", Mode::Exclusive));
        assert!(matches!(
            parse_spec("build=readonly", Some(dir), Mode::Exclusive),
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(
            parse_spec("tcp:4711=shared", None, Mode::Exclusive),
            Err(Error::Unsupported { .. })
        ));
        let socket = parse_spec("abstract:x=exclusive", None, Mode::Exclusive).unwrap();
        assert_eq!(socket.label(), "abstract:x");
    }

    #[test]
    fn the_order_is_the_same_whatever_order_the_locks_are_given_in() {
        let dir = tempfile::tempdir().unwrap();
        let forward = set(&dir, &["b", "tcp:4711", "a", "abstract:z"]);
        let backward = set(&dir, &["abstract:z", "a", "tcp:4711", "b"]);
        assert_eq!(labels(&forward), ["a", "b", "tcp:4711", "abstract:z"]);
        assert_eq!(labels(&forward), labels(&backward));
    }

    #[test]
    fn a_lock_named_twice_is_taken_once_exclusive_if_asked_so_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.lock");
        let spelt_twice = [format!("{}=shared", path.display()), "a".into()];
        let set = LockSet::parse(&spelt_twice, Some(dir.path()), Mode::Exclusive).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set.locks().next().unwrap().mode(), Mode::Exclusive);
        let set =
            LockSet::parse(&["tcp:4711", "tcp:127.0.0.1:4711"], None, Mode::Exclusive).unwrap();
        assert_eq!(set.len(), 1);
        let guard = self::set(&dir, &["a", "a=shared"]).try_acquire().unwrap();
        assert_eq!(guard.fds().len(), 1);
    }

    #[test]
    fn a_symlinked_directory_gives_the_same_order_and_the_same_lock() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        let a = AnyLock::File(FileLock::named("a", Some(&real)).unwrap());
        let a_again = AnyLock::File(FileLock::named("a", Some(&dir.path().join("link"))).unwrap());
        assert_eq!(LockKey::of(&a), LockKey::of(&a_again));
        assert_eq!(LockSet::new([a, a_again]).unwrap().len(), 1);
    }

    #[test]
    fn all_or_none_a_busy_lock_leaves_nothing_held() {
        let dir = tempfile::tempdir().unwrap();
        let b = FileLock::named("b", Some(dir.path())).unwrap();
        let held_b = b.try_acquire().unwrap();
        let both = set(&dir, &["a", "b"]);
        let err = both.try_acquire().unwrap_err();
        assert!(
            matches!(&err, Error::Busy { lock, .. } if lock == "b"),
            "{err:?}"
        );
        let a = FileLock::named("a", Some(dir.path())).unwrap();
        assert!(a.holders().unwrap().is_empty(), "a was released");
        drop(held_b);
        let guard = both.try_acquire().unwrap();
        assert_eq!(guard.fds().len(), 2);
        assert!(a.try_acquire().unwrap_err().is_conflict());
        guard.release().unwrap();
        assert!(a.holders().unwrap().is_empty() && b.holders().unwrap().is_empty());
    }

    #[test]
    fn local_locks_need_no_loss_watch_and_are_never_lost() {
        let dir = tempfile::tempdir().unwrap();
        let abstract_name = format!("abstract:withlock-test-{}", std::process::id());
        let both = set(&dir, &["a", &abstract_name]);
        let mut guard = both.try_acquire().unwrap();
        guard.watch_for_loss(|lost| panic!("{lost}")).unwrap();
        assert!(guard.lost().is_none());
        guard.release().unwrap();
    }

    #[test]
    fn a_deadline_is_shared_by_the_whole_set() {
        let dir = tempfile::tempdir().unwrap();
        let _held = FileLock::named("b", Some(dir.path()))
            .unwrap()
            .try_acquire()
            .unwrap();
        match set(&dir, &["a", "b"]).acquire_timeout(Duration::from_millis(30)) {
            Err(Error::TimedOut { lock, waited, .. }) => {
                assert_eq!(lock, "b");
                assert!(waited >= Duration::from_millis(30));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn mixed_modes_share_what_is_shared() {
        let dir = tempfile::tempdir().unwrap();
        let _first = set(&dir, &["build", "artifacts=shared"])
            .try_acquire()
            .unwrap();
        set(&dir, &["artifacts=shared"]).try_acquire().unwrap();
        assert!(
            set(&dir, &["build"])
                .try_acquire()
                .unwrap_err()
                .is_conflict()
        );
        assert!(
            set(&dir, &["artifacts"])
                .try_acquire()
                .unwrap_err()
                .is_conflict()
        );
    }
}
