//! Superseding: a newer request for a lock makes an older one that is
//! still waiting give up.
//!
//! Linux only. A request that may be superseded calls
//! [`Supersede::announce`] before it waits, from the thread that will wait,
//! and waits with [`Supersede::hooks`]:
//!
//! 1. **Announce.** It binds and listens on one Linux abstract Unix socket
//!    per lock of its set, named `withlock-supersede/<lock>/<stamp>/<pid>`,
//!    where `<lock>` is a 64-bit FNV-1a hash of the lock's [`LockKey`] (the
//!    same in every process for the same lock, however it is spelt) and
//!    `<stamp>` the wall-clock time of the announcement in nanoseconds.
//!    Anyone can read these names in `/proc/net/unix` and listen on one
//!    like it, so a name proves nothing; the checks below do.
//! 2. **Meet, once it waits for a lock.** When the wait for one lock of
//!    the set begins ([`crate::WaitHooks::waiting`]; a file lock has set
//!    its waiting stamp by then, a POSIX record lock on the lock file), it
//!    lists `/proc/net/unix` for listening sockets with that lock's
//!    prefix: the other superseding requests for it that have not started
//!    their command. It connects to each older one (smaller stamp; the
//!    pid breaks ties) and sends one byte, its mode (`x` or `s`): that is
//!    the notice. If it finds newer ones instead (up to 8, newest first),
//!    it connects to each without a word and checks the listener, by its
//!    `SO_PEERCRED` pid, as below; one that passes supersedes it at once.
//!    Every request listens before it waits and waits before it lists, so
//!    of two requests waiting together the later one to list sees the
//!    other listening and waiting, and exactly the older one gives up.
//! 3. **Check.** A newer request counts only if it really waits for the
//!    same lock. For a file lock its pid (`SO_PEERCRED`, which the kernel
//!    sets and nobody can forge) must hold a POSIX record lock on the same
//!    lock file (device and inode) in `/proc/locks`: its waiting stamp, or
//!    its "held since" stamp if it has been granted meanwhile. Only a
//!    process that has the lock file open can take one, that is one that
//!    can take the lock. For socket locks there is nothing to check: any
//!    local user can take a `tcp:` or `abstract:` lock or wait for a
//!    `unix:` one, so any may supersede a request for one.
//!
//! Meanwhile a watcher thread sleeps in `poll()` on the sockets. When a
//! connection arrives it `accept()`s it, reads one byte (waiting up to a
//! second), takes the sender's pid from `SO_PEERCRED` and checks it as in
//! 3; a connection that says nothing, says something else or fails the
//! check is closed and ignored. A notice that passes names the newer
//! request (user and command from `/proc/<pid>`, [`Holder::of_pid`]), and
//! the watcher interrupts the waiting thread's blocking wait with
//! [`crate::timer_signal`] (its no-op handler is installed without
//! `SA_RESTART`, so the wait returns `EINTR`), repeating every millisecond
//! until the wait has stopped, so a signal landing just before the thread
//! blocks is not lost; a newer request found in 2 is handed to the
//! watcher through its pipe to the same effect. [`Supersede::hooks`]
//! makes [`crate::WaitHooks::interrupted`] say yes then, and
//! [`Supersede::finish`] turns the resulting [`Error::Interrupted`] into
//! [`Error::Superseded`]. A request whose locks were all taken without
//! waiting never meets anyone, and [`Supersede::finish`] stops listening
//! before the caller runs anything, so a holder is never interrupted.
//! Nothing polls while waiting; nothing is written to disk.
//!
//! Limits: abstract sockets belong to a network namespace, so requests in
//! different network namespaces (containers with their own network) do
//! not supersede each other. Another local user who cannot open a lock
//! file cannot supersede a request for it, by listening or by connecting;
//! a user who can open it can, as they could take the lock and hold it.
//! Anyone can keep a request from hearing a notice (by filling its queue
//! of 64 connections, each held up to a second): superseding then fails,
//! and the request just waits its turn. A waiting stamp can fail to be
//! set (two in one microsecond); that request then cannot supersede. A
//! request in a PID namespace this one cannot see (`SO_PEERCRED` gives pid
//! 0) cannot supersede a request for a file lock either.
//!
//! ```no_run
//! use withlock::{LockSet, Mode, NoHooks, Supersede, Wait};
//!
//! let set = LockSet::parse(&["deploy"], None, Mode::Exclusive)?;
//! let watch = Supersede::announce(&set)?;
//! let acquired = set.acquire_with(Wait::Forever, &mut watch.hooks(&mut NoHooks));
//! match watch.finish(acquired) {
//!     Ok(_guard) => println!("deploying"),
//!     Err(e @ withlock::Error::Superseded { .. }) => eprintln!("{e}"),
//!     Err(e) => return Err(e),
//! }
//! # Ok::<(), withlock::Error>(())
//! ```

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{self, MsgFlags, SockFlag, sockopt};

use crate::announce::{self, Stamp};
use crate::any_lock::AnyLock;
use crate::any_lock::LockKey;
use crate::cancel_request;
use crate::error::{Error, Result};
use crate::holder::Holder;
use crate::lock::WaitHooks;
use crate::lock_set::{LockSet, SetHooks};
use crate::peer_check;
use crate::readable::wait_readable;
use crate::request::Mode;
use crate::timer_signal::{install_noop_handler, timer_signal};

/// The start of every supersede socket's abstract name.
pub const NAME_PREFIX: &str = "withlock-supersede/";

/// How often the waiting thread is signalled again until its wait stops.
const RESIGNAL: Duration = Duration::from_millis(1);
/// How long a notice's one byte may take to arrive after its connection.
const GREETING_WAIT: Duration = Duration::from_secs(1);
/// How many newer requests a request checks for one that really waits.
const MAX_PROBES: usize = 8;

/// The supersede protocol's name prefix for `key`'s lock, with '/' at the end.
pub fn prefix_for(key: &LockKey) -> String {
    announce::prefix(NAME_PREFIX, key)
}

/// What the watcher thread and the waiting thread share.
#[derive(Default)]
struct Shared {
    /// Set once a newer request has sent its notice.
    noticed: AtomicBool,
    /// Set once the wait has stopped (the hook said yes) or the watch ended.
    done: AtomicBool,
    /// The newer request and the lock it named, once noticed.
    by: Mutex<Option<(String, Holder)>>,
}

/// A superseding request's watch for newer ones, from before it waits
/// until [`Supersede::finish`] (see the module docs).
pub struct Supersede {
    shared: Arc<Shared>,
    /// The write end of the watcher's pipe: a byte asks it to interrupt
    /// the wait, closing it ends the watch.
    stop: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
    stamp: Stamp,
    /// Whether it also cancels holders that may be cancelled.
    cancelling: bool,
    /// For each lock of the set: its name prefix, our own name there, and
    /// the lock.
    locks: Vec<Announced>,
}

/// One lock of the set, as announced.
struct Announced {
    prefix: String,
    own: String,
    key: LockKey,
    lock: AnyLock,
}

impl std::fmt::Debug for Supersede {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supersede")
            .field("noticed", &self.shared.noticed.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl Supersede {
    /// Announces a superseding request for every lock of `set`: listens
    /// for newer requests. The older ones hear of it once it waits
    /// ([`WaitHooks::waiting`] through [`Supersede::hooks`]).
    ///
    /// Call it from the thread that will wait for the locks, which must
    /// live until [`Supersede::finish`] or the drop.
    pub fn announce(set: &LockSet) -> Result<Supersede> {
        Supersede::announce_as(set, false)
    }

    /// As [`Supersede::announce`], for a request that also cancels the
    /// holders that may be cancelled ([`crate::cancel`]): once it waits for
    /// a lock, it asks them to stop, and it marks its announcement so that
    /// a holder that starts listening just after it can find it.
    pub fn announce_cancelling(set: &LockSet) -> Result<Supersede> {
        Supersede::announce_as(set, true)
    }

    fn announce_as(set: &LockSet, cancelling: bool) -> Result<Supersede> {
        install_noop_handler();
        let stamp = Stamp::now();
        let mark = if cancelling {
            cancel_request::REQUEST_MARK
        } else {
            ""
        };
        let mut listeners = Vec::new();
        let mut locks = Vec::new();
        for (key, lock) in set.keyed() {
            let prefix = prefix_for(key);
            let (listener, own) = announce::listen(&prefix, stamp, mark)?;
            listeners.push((listener, lock.clone()));
            locks.push(Announced {
                prefix,
                own,
                key: key.clone(),
                lock: lock.clone(),
            });
        }
        let (stop_read, stop) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| Error::io("create a pipe for the supersede watch", e))?;
        let shared = Arc::new(Shared::default());
        // SAFETY: pthread_self has no preconditions; the waiting thread
        // outlives the watch (see the docs above).
        let waiter = unsafe { libc::pthread_self() };
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("withlock-supersede".into())
                .spawn(move || watch(listeners, stop_read, waiter as usize, &shared))
                .map_err(|e| Error::io("start the supersede watch", e))?
        };
        Ok(Supersede {
            shared,
            stop: Some(stop),
            thread: Some(thread),
            stamp,
            cancelling,
            locks,
        })
    }

    /// When the request announced itself: a holder it cancels must be
    /// older.
    pub(crate) fn stamp(&self) -> Stamp {
        self.stamp
    }

    /// Called as the request begins to wait for lock `index` (stamped by
    /// now): sends notice to the older requests for it, and gives up if a
    /// newer one that really waits for it is already there.
    fn meet(&self, index: usize) {
        let Some(this) = self.locks.get(index) else {
            return;
        };
        let mut newer: Vec<(Stamp, String)> = Vec::new();
        if self.cancelling {
            cancel_request::ask_holders(&this.key, self.stamp);
        }
        for (name, other) in announce::announced(&this.prefix) {
            if name == this.own {
                continue;
            }
            if other < self.stamp {
                notify(&name, this.lock.mode());
            } else if self.stamp.is_older_than(&other) {
                newer.push((other, name));
            }
        }
        newer.sort_by_key(|(stamp, _)| std::cmp::Reverse(*stamp));
        let found = newer
            .iter()
            .take(MAX_PROBES)
            .find_map(|(_, name)| peer_check::probe(name, &this.lock));
        if let Some(by) = found {
            self.superseded(this.lock.label(), by);
        }
    }

    /// Records that `by` superseded the request, and has the watcher
    /// interrupt the wait.
    fn superseded(&self, label: &str, by: Holder) {
        if self.shared.done.load(Ordering::SeqCst) {
            return;
        }
        *self.shared.by.lock().unwrap_or_else(|e| e.into_inner()) = Some((label.to_owned(), by));
        self.shared.noticed.store(true, Ordering::SeqCst);
        if let Some(stop) = &self.stop {
            let _ = nix::unistd::write(stop, b"!");
        }
    }

    /// `inner`, plus: the wait stops once a newer request has sent notice.
    pub fn hooks<'a>(&'a self, inner: &'a mut dyn SetHooks) -> SupersedeHooks<'a> {
        SupersedeHooks {
            watch: self,
            inner,
            current: None,
            met: vec![false; self.locks.len()],
        }
    }

    /// The newer request that sent notice, if one did: the lock it named
    /// and who it is.
    pub fn superseded_by(&self) -> Option<(String, Holder)> {
        self.shared
            .by
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops the watch (a notice from now on is ignored), then returns
    /// `result`, except that a wait interrupted by a notice becomes
    /// [`Error::Superseded`]. Call it as soon as the wait ends: once the
    /// locks are held, nothing supersedes the request.
    pub fn finish<T>(mut self, result: Result<T>) -> Result<T> {
        self.stop();
        match result {
            Err(Error::Interrupted { lock }) => match self.superseded_by() {
                Some((_, by)) => Err(Error::Superseded {
                    lock,
                    by: Box::new(by),
                }),
                None => Err(Error::Interrupted { lock }),
            },
            other => other,
        }
    }

    fn stop(&mut self) {
        self.shared.done.store(true, Ordering::SeqCst);
        // Closing the pipe wakes the watcher, which then ends.
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Supersede {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Hooks that stop the wait once a newer request has sent notice; made
/// by [`Supersede::hooks`].
pub struct SupersedeHooks<'a> {
    watch: &'a Supersede,
    inner: &'a mut dyn SetHooks,
    /// The lock being taken, once the set says which.
    current: Option<usize>,
    /// The locks whose older requests have been told.
    met: Vec<bool>,
}

impl WaitHooks for SupersedeHooks<'_> {
    fn waiting(&mut self) {
        self.inner.waiting();
        let indices = match self.current {
            Some(index) => vec![index],
            None => (0..self.met.len()).collect(),
        };
        for index in indices {
            if !std::mem::replace(&mut self.met[index], true) {
                self.watch.meet(index);
            }
        }
    }

    fn interrupted(&mut self) -> bool {
        let shared = &self.watch.shared;
        if shared.noticed.load(Ordering::SeqCst) {
            shared.done.store(true, Ordering::SeqCst);
            return true;
        }
        self.inner.interrupted()
    }

    fn stop_with(&mut self, stop: Option<crate::lock::WaitStopper>) {
        self.inner.stop_with(stop);
    }

    fn notice(&mut self, message: &str) {
        self.inner.notice(message);
    }

    fn name_holders(&self) -> bool {
        self.inner.name_holders()
    }
}

impl SetHooks for SupersedeHooks<'_> {
    fn taking(&mut self, lock: &AnyLock) {
        self.current = self.watch.locks.iter().position(|a| a.lock == *lock);
        self.inner.taking(lock);
    }
}

/// Sends notice to an older request.
fn notify(name: &str, mode: Mode) {
    let byte = match mode {
        Mode::Exclusive => b'x',
        Mode::Shared => b's',
    };
    if let Some(fd) = announce::connect(name) {
        let _ = socket::send(fd.as_raw_fd(), &[byte], MsgFlags::MSG_NOSIGNAL);
    }
}

/// The watcher thread: waits for notices on `listeners` until `stop` closes.
fn watch(listeners: Vec<(OwnedFd, AnyLock)>, stop: OwnedFd, waiter: usize, shared: &Shared) {
    loop {
        let fds: Vec<BorrowedFd<'_>> = std::iter::once(&stop)
            .chain(listeners.iter().map(|(fd, _)| fd))
            .map(AsFd::as_fd)
            .collect();
        let Ok(ready) = wait_readable(&fds) else {
            return;
        };
        if ready[0] {
            // A byte: the waiting thread found a newer request itself.
            // The end of the file: the watch is over.
            let mut byte = [0u8];
            if nix::unistd::read(&stop, &mut byte) == Ok(1) {
                interrupt_until_done(waiter, &stop, shared);
            }
            return;
        }
        for (&ready, (listener, lock)) in ready[1..].iter().zip(&listeners) {
            if !ready {
                continue;
            }
            let notice = match accept_notice(listener, lock) {
                Ok(notice) => notice,
                // Out of descriptors or memory: poll would report the
                // queued connection again at once, so stop watching
                // rather than spin; the request then just waits.
                Err(()) => return,
            };
            if let Some(by) = notice {
                if shared.done.load(Ordering::SeqCst) {
                    return;
                }
                *shared.by.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some((lock.label().to_owned(), by));
                shared.noticed.store(true, Ordering::SeqCst);
                interrupt_until_done(waiter, &stop, shared);
                return;
            }
        }
    }
}

/// Accepts one connection; a notice from a request that really waits
/// for `lock` names it. Fails only when the connection cannot be accepted
/// for want of resources.
fn accept_notice(listener: &OwnedFd, lock: &AnyLock) -> std::result::Result<Option<Holder>, ()> {
    match socket::accept4(listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
        Ok(raw) => Ok(read_notice(raw, lock)),
        Err(Errno::EAGAIN | Errno::EINTR | Errno::ECONNABORTED) => Ok(None),
        Err(_) => Err(()),
    }
}

/// Reads the greeting of the connection `raw` just accepted, and checks
/// that whoever sent it waits for `lock`.
fn read_notice(raw: std::os::fd::RawFd, lock: &AnyLock) -> Option<Holder> {
    // SAFETY: accept4 just returned this descriptor, owned by nobody else.
    let conn = unsafe { OwnedFd::from_raw_fd(raw) };
    let cred = socket::getsockopt(&conn, sockopt::PeerCredentials).ok()?;
    let mut stream = UnixStream::from(conn);
    stream.set_read_timeout(Some(GREETING_WAIT)).ok()?;
    let mut byte = [0u8];
    stream.read_exact(&mut byte).ok()?;
    let claimed = match byte[0] {
        b'x' => Mode::Exclusive,
        b's' => Mode::Shared,
        _ => return None,
    };
    let mode = peer_check::waiting_mode(cred.pid(), lock, claimed)?;
    Some(Holder::of_pid(cred.pid(), mode))
}

/// Signals the waiting thread every [`RESIGNAL`] until its wait has
/// stopped or the watch ends.
fn interrupt_until_done(waiter: usize, stop: &OwnedFd, shared: &Shared) {
    while !shared.done.load(Ordering::SeqCst) {
        // SAFETY: `waiter` is the pthread_t of the waiting thread, which
        // lives until the watch ends (Supersede::announce's contract), and
        // the watch is ended and this thread joined before it goes away.
        unsafe { libc::pthread_kill(waiter as libc::pthread_t, timer_signal()) };
        let mut fd = libc::pollfd {
            fd: stop.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; `stop` stays open for the call.
        let ready = unsafe { libc::poll(&mut fd, 1, RESIGNAL.as_millis() as libc::c_int) };
        if ready > 0 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::file_lock::FileLock;
    use crate::lock::{Lock, NoHooks};
    use crate::request::Wait;
    use std::time::SystemTime;

    /// A file lock in a fresh directory, as a set of one.
    fn file_set(dir: &tempfile::TempDir, name: &str) -> (FileLock, LockSet) {
        let lock = FileLock::named(name, Some(dir.path())).unwrap();
        let set = LockSet::new([AnyLock::File(lock.clone())]).unwrap();
        (lock, set)
    }

    /// Announces and waits for `set` at most `limit`, as the binary does.
    fn wait_superseding(set: &LockSet, limit: Duration) -> Result<()> {
        let own = Supersede::announce(set)?;
        let result = set.acquire_with(Wait::For(limit), &mut own.hooks(&mut NoHooks));
        own.finish(result).map(drop)
    }

    #[test]
    fn a_newer_request_supersedes_a_waiting_one() {
        let dir = tempfile::tempdir().unwrap();
        let (lock, set) = file_set(&dir, "s");
        let held = lock.try_acquire().unwrap();
        let prefix = prefix_for(&set.keyed()[0].0);
        let (older, newer) = std::thread::scope(|scope| {
            let set = &set;
            let older = scope.spawn(move || wait_superseding(set, Duration::from_secs(60)));
            while announce::announced(&prefix).is_empty() {
                std::thread::sleep(Duration::from_millis(1));
            }
            let newer = scope.spawn(move || wait_superseding(set, Duration::from_secs(60)));
            let older = older.join().unwrap();
            drop(held);
            (older, newer.join().unwrap())
        });
        match older {
            Err(Error::Superseded { lock, by }) => {
                assert_eq!(lock, "s");
                assert_eq!(by.pid, std::process::id() as i32);
                assert_eq!(by.mode, Mode::Exclusive);
            }
            other => panic!("{other:?}"),
        }
        newer.unwrap();
        assert!(
            announce::announced(&prefix).is_empty(),
            "every watch has stopped"
        );
    }

    #[test]
    fn a_holder_is_not_superseded() {
        let dir = tempfile::tempdir().unwrap();
        let (_, set) = file_set(&dir, "h");
        let own = Supersede::announce(&set).unwrap();
        let mut plain = NoHooks;
        let result = set.acquire_with(Wait::NoWait, &mut own.hooks(&mut plain));
        let guard = own.finish(result).unwrap();
        // Nobody listens any more: a newer request does not even see it.
        let newer = Supersede::announce(&set).unwrap();
        drop(newer);
        drop(guard);
    }

    /// A newer request already there when this one begins to wait, whose
    /// process holds a record lock on the lock file (this process does:
    /// it holds the lock), supersedes it at once.
    #[test]
    fn a_newer_request_found_waiting_supersedes_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (lock, set) = file_set(&dir, "t");
        let _held = lock.try_acquire().unwrap();
        let prefix = prefix_for(&set.keyed()[0].0);
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap();
        let soon = Stamp {
            nanos: (now + Duration::from_secs(1)).as_nanos(),
            pid: 1,
        };
        let (_listener, _) = announce::listen(&prefix, soon, "").unwrap();
        match wait_superseding(&set, Duration::from_secs(60)) {
            Err(Error::Superseded { by, .. }) => {
                assert_eq!(by.pid, std::process::id() as i32)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_made_up_stamp_far_in_the_future_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (lock, set) = file_set(&dir, "u");
        let _held = lock.try_acquire().unwrap();
        let prefix = prefix_for(&set.keyed()[0].0);
        let squatter = Stamp {
            nanos: u128::from(u64::MAX),
            pid: 1,
        };
        let (_listener, _) = announce::listen(&prefix, squatter, "").unwrap();
        match wait_superseding(&set, Duration::from_millis(50)) {
            Err(Error::TimedOut { .. }) => {}
            other => panic!("not superseded by a made-up name: {other:?}"),
        }
    }
}
