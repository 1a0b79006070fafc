//! Socket-held locks: a TCP port, a Unix socket file or a Linux abstract
//! socket name, held by listening on it.
//!
//! Linux only. Exclusive only: one socket can listen on an address.
//!
//! - **Holding.** The holder binds the address and listens on it (backlog
//!   `SOMAXCONN`) and never accepts. The listening socket is the lock: the
//!   kernel frees the address when the last descriptor for it closes, so the
//!   lock survives a SIGKILLed withlock while its command (which inherits
//!   the descriptor) runs, and vanishes with a crashed holder. TCP sockets
//!   set `SO_REUSEADDR` (which never lets two sockets listen on one port).
//! - **Waiting.** A caller that finds the address in use (`EADDRINUSE` from
//!   bind or listen) connects to the holder. The kernel completes the
//!   connection into the holder's listen queue without an accept, and the
//!   caller sleeps in `poll()` on it (with the deadline as its timeout):
//!   when the holder's socket closes, every queued connection is reset and
//!   every waiter wakes at once and tries again. No polling, with two
//!   documented exceptions where the kernel offers nothing to block on: the
//!   address is bound by a socket that does not listen (the instant between
//!   another holder's bind and listen on a TCP port or abstract name, or an
//!   abstract name kept by a daemon left behind, see below; a socket file
//!   that does not listen is stale, see below), or a Unix listener's queue
//!   is full (`EAGAIN`).
//!   Then the caller retries after 1 ms, doubling up to 50 ms. A TCP
//!   connect is given up to a second to be accepted or refused (loopback
//!   answers at once); a TCP queue that is full makes the kernel drop the
//!   SYN and retransmit it (after 1 s, 2 s, ...), so the waiter then learns
//!   of a release late.
//! - **The holder.** For Unix and abstract sockets, `SO_PEERCRED` on the
//!   waiter's connection names the process that called listen(): pid, then
//!   user and command from `/proc/<pid>` ([`Holder::of_pid`]). TCP gives no
//!   peer credentials; the holder is then "a process withlock cannot
//!   identify".
//! - **Socket files.** `unix:PATH` leaves a socket file; the path only
//!   ever names a socket that listens, and a stale one is replaced under a
//!   takeover lock (`PATH.takeover`): see `socket_file.rs`.
//! - **Release.** [`SocketGuard::release`] (and the drop) unlinks its own
//!   socket file while still listening, then shuts the listening socket
//!   down (`shutdown(SHUT_RDWR)`: no new connections), accepts and closes
//!   every queued connection (which wakes the waiters: shutdown alone does
//!   not on a Unix socket). This ends the lock for every process sharing
//!   the descriptor, like `LOCK_UN` for a file lock, so a daemon the
//!   command left behind does not keep a TCP or Unix socket lock. It does
//!   keep an abstract name bound until it exits (nothing can unbind it);
//!   waiters then retry as above. Release takes no lock: nothing another
//!   user does can delay it.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{self, Backlog, Shutdown, SockFlag, sockopt};

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::file::lock_file;
use crate::holder::{Holder, Holders};
use crate::lock::{Lock, NoHooks, WaitHooks};
use crate::ownership;
use crate::request::Mode;
use crate::signal_wake::Wake;
use crate::socket::sockaddr::Sockaddr;
use crate::socket::socket_file::{self, SocketFile, Stop, file_kind};
use crate::socket::socket_spec::SocketAddress;

/// The first pause of the bounded retry (see the module docs).
const FIRST_PAUSE: Duration = Duration::from_millis(1);
/// The longest pause of the bounded retry.
const MAX_PAUSE: Duration = Duration::from_millis(50);
/// How long a TCP connect may take before the SYN counts as queued.
const CONNECT_WAIT: Duration = Duration::from_secs(1);

const TCP_UNIDENTIFIED: &str = "TCP gives no peer credentials";
const NOT_LISTENING: &str = "the address is bound by a socket that does not listen on it";
const QUEUE_FULL: &str = "its queue of waiting connections is full";

/// A lock held by listening on a socket address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketLock {
    address: SocketAddress,
    label: String,
}

impl SocketLock {
    /// The lock on `address`.
    pub fn new(address: SocketAddress) -> SocketLock {
        SocketLock {
            label: address.to_string(),
            address,
        }
    }

    /// The lock named by a socket spec: `tcp:PORT`, `tcp:HOST:PORT`,
    /// `unix:PATH` or `abstract:NAME`.
    pub fn parse(spec: &str) -> Result<SocketLock> {
        let address = SocketAddress::parse(spec).unwrap_or_else(|| {
            Err(Error::InvalidName {
                name: spec.to_owned(),
                reason: "a socket lock is tcp:PORT, tcp:HOST:PORT, unix:PATH or abstract:NAME",
            })
        })?;
        Ok(SocketLock {
            address,
            label: spec.to_owned(),
        })
    }

    /// The same lock, named `label` in messages (the spec as given).
    pub fn labelled(mut self, label: &str) -> SocketLock {
        self.label = label.to_owned();
        self
    }

    /// The address it is held on.
    pub fn address(&self) -> &SocketAddress {
        &self.address
    }

    /// The spec as given.
    pub fn label(&self) -> &str {
        &self.label
    }

    fn sockaddr(&self) -> Result<Sockaddr> {
        Sockaddr::of(&self.address)
            .map_err(|e| Error::io(format!("socket address {}", self.label), e))
    }

    fn io(&self, what: &str, e: Errno) -> Error {
        Error::io(format!("{what} {}", self.label), e)
    }

    fn denied(&self, what: &str) -> Error {
        let detail = match &self.address {
            SocketAddress::Tcp(addr) if addr.port() < 1024 => format!(
                "{what}: ports below 1024 need root or CAP_NET_BIND_SERVICE; use a higher port"
            ),
            SocketAddress::Unix(path) => return socket_file::denied(&self.label, path, what),
            _ => format!("{what}: use another address"),
        };
        Error::PermissionDenied {
            path: PathBuf::from(&self.label),
            detail,
        }
    }

    /// Binds and listens; `None` when the address is in use.
    fn listen(&self, addr: &Sockaddr) -> Result<Option<OwnedFd>> {
        let fd = addr
            .socket()
            .map_err(|e| self.io("create a socket for", e))?;
        if addr.is_tcp() {
            socket::setsockopt(&fd, sockopt::ReuseAddr, &true)
                .map_err(|e| self.io("set SO_REUSEADDR for", e))?;
        }
        match socket::bind(fd.as_raw_fd(), addr.as_dyn()) {
            Ok(()) => {}
            Err(Errno::EADDRINUSE) => return Ok(None),
            Err(Errno::EACCES | Errno::EPERM) => return Err(self.denied("bind")),
            Err(Errno::EADDRNOTAVAIL) => {
                return Err(Error::io(
                    format!(
                        "bind {}: not an address of this machine; use one such as 127.0.0.1",
                        self.label
                    ),
                    Errno::EADDRNOTAVAIL,
                ));
            }
            Err(e) => return Err(self.io("bind", e)),
        }
        match socket::listen(&fd, Backlog::MAXCONN) {
            Ok(()) => Ok(Some(fd)),
            // Two TCP sockets with SO_REUSEADDR may both bind before either
            // listens; the second listen() fails.
            Err(Errno::EADDRINUSE) => Ok(None),
            Err(e) => Err(self.io("listen on", e)),
        }
    }

    /// Connects to whoever has the address bound.
    fn connect(&self, addr: &Sockaddr) -> Result<Connect> {
        let fd = addr
            .socket()
            .map_err(|e| self.io("create a socket for", e))?;
        match socket::connect(fd.as_raw_fd(), addr.as_dyn()) {
            Ok(()) => Ok(Connect::Holder(fd)),
            Err(Errno::EINPROGRESS) => self.finish_connect(fd),
            Err(Errno::ECONNREFUSED | Errno::ECONNRESET) => Ok(Connect::NotListening),
            Err(Errno::EAGAIN) => Ok(Connect::QueueFull),
            Err(Errno::ENOENT) => Ok(Connect::Gone),
            Err(Errno::EACCES | Errno::EPERM) => Err(self.denied("connect to")),
            Err(e) => Err(self.io("connect to", e)),
        }
    }

    /// Waits for a TCP connection in progress (loopback answers at once)
    /// to be accepted into the holder's queue or refused; at most
    /// [`CONNECT_WAIT`], after which a SYN dropped by a full queue is
    /// taken as a holder (the wait then goes on in `acquire_with`).
    fn finish_connect(&self, fd: OwnedFd) -> Result<Connect> {
        let until = Instant::now() + CONNECT_WAIT;
        poll_until(Some(fd.as_fd()), libc::POLLOUT, Some(until), &mut NoHooks)
            .map_err(|e| self.io("connect to", e))?;
        match socket::getsockopt(&fd, sockopt::SocketError) {
            Ok(0) => Ok(Connect::Holder(fd)),
            // Refused, or reset by a holder that let go meanwhile: try again.
            Ok(errno) if errno == libc::ECONNREFUSED || errno == libc::ECONNRESET => {
                Ok(Connect::NotListening)
            }
            Ok(errno) => Err(self.io("connect to", Errno::from_raw(errno))),
            Err(e) => Err(self.io("connect to", e)),
        }
    }

    fn attempt(&self, deadline: Deadline, hooks: &mut dyn WaitHooks) -> Result<Attempt> {
        let addr = self.sockaddr()?;
        if let SocketAddress::Unix(path) = &self.address {
            return self.attempt_path(path, &addr, deadline, hooks);
        }
        if let Some(fd) = self.listen(&addr)? {
            return Ok(Attempt::Held(fd, None));
        }
        Ok(match self.connect(&addr)? {
            Connect::Holder(fd) => Attempt::Busy(fd),
            Connect::QueueFull => Attempt::Retry(QUEUE_FULL),
            Connect::NotListening | Connect::Gone => Attempt::Retry(NOT_LISTENING),
        })
    }

    /// One attempt on a socket file: connect to whoever is at the path,
    /// else put a listening socket there, replacing a stale one.
    fn attempt_path(
        &self,
        path: &Path,
        addr: &Sockaddr,
        deadline: Deadline,
        hooks: &mut dyn WaitHooks,
    ) -> Result<Attempt> {
        let file = SocketFile::of(path, &self.label)?;
        // Each pass sees the path change (a holder left, another arrived,
        // a stale file went): look again, a bounded number of times.
        for _ in 0..lock_file::MAX_ATTEMPTS {
            let Some(st) = file.stat()? else {
                match file.create()? {
                    Some((fd, st)) => {
                        return Ok(Attempt::Held(fd, Some((file, st.st_dev, st.st_ino))));
                    }
                    None => continue,
                }
            };
            file.refuse_non_socket(&st)?;
            match self.connect(addr)? {
                Connect::Holder(fd) => return Ok(Attempt::Busy(fd)),
                Connect::QueueFull => return Ok(Attempt::Retry(QUEUE_FULL)),
                Connect::Gone => {}
                Connect::NotListening => {
                    let mut still_refused =
                        || Ok(matches!(self.connect(addr)?, Connect::NotListening));
                    if let Some(stop) =
                        file.remove_stale(&st, &mut still_refused, deadline, hooks)?
                    {
                        return Ok(match stop {
                            Stop::Interrupted => Attempt::Stopped,
                            Stop::Stuck(holders) => Attempt::Stuck(holders),
                        });
                    }
                }
            }
        }
        Ok(Attempt::Retry(NOT_LISTENING))
    }

    /// The holder named by a connection to it.
    fn holders_of(&self, conn: &OwnedFd) -> Holders {
        if matches!(self.address, SocketAddress::Tcp(_)) {
            return Holders::unidentified(TCP_UNIDENTIFIED);
        }
        match socket::getsockopt(conn, sockopt::PeerCredentials) {
            // pid 0: the holder is in a PID namespace we cannot see into.
            Ok(cred) if cred.pid() > 0 => {
                let mut holder = Holder::of_pid(cred.pid(), Mode::Exclusive);
                if holder.uid.is_none() && holder.running {
                    holder.uid = Some(cred.uid());
                    holder.user = Some(ownership::user_name(cred.uid()));
                }
                Holders {
                    holders: vec![holder],
                    ..Holders::default()
                }
            }
            _ => Holders::default(),
        }
    }
}

impl Lock for SocketLock {
    type Guard = SocketGuard;

    fn acquire_until(&self, deadline: Deadline, hooks: &mut dyn WaitHooks) -> Result<SocketGuard> {
        let hooks = &mut TellOnce {
            inner: hooks,
            told: false,
        };
        let mut pause = FIRST_PAUSE;
        loop {
            let (conn, reason) = match self.attempt(deadline, hooks)? {
                Attempt::Held(fd, file) => {
                    return Ok(SocketGuard::new(fd, self.label.clone(), file));
                }
                Attempt::Busy(conn) => (Some(conn), ""),
                Attempt::Retry(reason) => (None, reason),
                Attempt::Stopped => {
                    return Err(Error::Interrupted {
                        lock: self.label.clone(),
                    });
                }
                Attempt::Stuck(holders) => {
                    return Err(deadline.refuse(self.label.clone(), holders));
                }
            };
            if !deadline.may_wait() {
                let holders = match &conn {
                    Some(conn) => self.holders_of(conn),
                    None => Holders::unidentified(reason),
                };
                return Err(deadline.refuse(self.label.clone(), holders));
            }
            hooks.waiting();
            let woke = match &conn {
                Some(conn) => {
                    pause = FIRST_PAUSE;
                    let events = libc::POLLIN | libc::POLLRDHUP;
                    poll_until(Some(conn.as_fd()), events, deadline.end(), hooks)
                }
                None => {
                    let until = Instant::now() + pause;
                    pause = (pause * 2).min(MAX_PAUSE);
                    let until = deadline.end().map_or(until, |d| d.min(until));
                    poll_until(None, 0, Some(until), hooks)
                }
            }
            .map_err(|e| self.io("wait for", e))?;
            if woke == Woke::Interrupted {
                return Err(Error::Interrupted {
                    lock: self.label.clone(),
                });
            }
            // Released, or the deadline passed: the next attempt tells.
        }
    }

    fn holders(&self) -> Result<Holders> {
        let addr = self.sockaddr()?;
        if let SocketAddress::Unix(path) = &self.address {
            match nix::sys::stat::lstat(path) {
                Err(Errno::ENOENT) => return Ok(Holders::default()),
                Ok(st) if file_kind(&st) != "socket" => {
                    return Err(Error::NotSocket {
                        path: path.clone(),
                        kind: file_kind(&st),
                    });
                }
                _ => {}
            }
        }
        Ok(match self.connect(&addr)? {
            Connect::Holder(conn) => self.holders_of(&conn),
            Connect::QueueFull => Holders::unidentified(QUEUE_FULL),
            // A stale socket file: whoever holds its takeover lock keeps it
            // from being replaced, and so holds the lock in effect.
            Connect::NotListening | Connect::Gone => match &self.address {
                SocketAddress::Unix(path) => SocketFile::of(path, &self.label)
                    .map_or_else(|_| Holders::default(), |file| file.takeover_holders()),
                _ => Holders::default(),
            },
        })
    }

    fn describe(&self) -> String {
        self.label.clone()
    }
}

/// A held socket lock: the listening socket. Dropping it releases the lock.
///
/// A child process that inherits [`SocketGuard::as_fd`] keeps the lock held
/// while it runs, even if this process dies; [`SocketGuard::release`] (or
/// the drop) ends it for every process sharing the socket (see the module
/// docs for the one exception, an abstract name).
#[derive(Debug)]
pub struct SocketGuard {
    fd: OwnedFd,
    label: String,
    file: Option<(SocketFile, u64, u64)>,
    acquired: Instant,
    release_on_drop: bool,
}

impl SocketGuard {
    fn new(fd: OwnedFd, label: String, file: Option<(SocketFile, u64, u64)>) -> SocketGuard {
        SocketGuard {
            fd,
            label,
            file,
            acquired: Instant::now(),
            release_on_drop: true,
        }
    }

    /// The listening socket, for handing to a child process.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The socket file, for a `unix:` lock.
    pub fn path(&self) -> Option<PathBuf> {
        self.file.as_ref().map(|(file, ..)| file.path().to_owned())
    }

    /// How long the lock has been held.
    pub fn held_for(&self) -> Duration {
        self.acquired.elapsed()
    }

    /// Releases the lock now, reporting a failure that a drop would hide.
    pub fn release(mut self) -> Result<()> {
        self.release_now()
    }

    /// Closes this process's descriptor without releasing: for a process
    /// that got the guard through fork(2) and must leave the lock to its
    /// parent.
    pub fn close_without_release(mut self) {
        self.release_on_drop = false;
    }

    fn release_now(&mut self) -> Result<()> {
        self.release_on_drop = false;
        // Unlink our socket file while it still listens: nobody removes a
        // socket that listens, so the path still names ours until then.
        if let Some((file, dev, ino)) = &self.file {
            file.remove_own(*dev, *ino);
        }
        let raw = self.fd.as_raw_fd();
        // No new connections, then wake every queued waiter by closing its
        // connection: a Unix listener's shutdown alone does not.
        let shut = socket::shutdown(raw, Shutdown::Both);
        while let Ok(conn) = socket::accept4(raw, SockFlag::SOCK_CLOEXEC) {
            // SAFETY: accept4 just returned this descriptor; nobody else owns it.
            drop(unsafe { OwnedFd::from_raw_fd(conn) });
        }
        match shut {
            Ok(()) | Err(Errno::ENOTCONN) => Ok(()),
            Err(e) => Err(Error::io(format!("release {}", self.label), e)),
        }
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if self.release_on_drop {
            let _ = self.release_now();
        }
    }
}

/// The result of one attempt to take the lock.
enum Attempt {
    /// Ours: the listening socket, and for a socket file its identity.
    Held(OwnedFd, Option<(SocketFile, u64, u64)>),
    /// Held: a connection (made or in progress) to the holder.
    Busy(OwnedFd),
    /// Held, but there is nothing to block on: retry after a pause.
    Retry(&'static str),
    /// The wait for the takeover lock was stopped by the caller's hooks.
    Stopped,
    /// A stale socket file cannot be replaced for now: the takeover lock
    /// is held by these processes, past the request's deadline.
    Stuck(Holders),
}

enum Connect {
    Holder(OwnedFd),
    NotListening,
    QueueFull,
    Gone,
}

/// Hooks told that the wait began only the first time.
struct TellOnce<'h> {
    inner: &'h mut dyn WaitHooks,
    told: bool,
}

impl WaitHooks for TellOnce<'_> {
    fn waiting(&mut self) {
        if !std::mem::replace(&mut self.told, true) {
            self.inner.waiting();
        }
    }

    fn interrupted(&mut self) -> bool {
        self.inner.interrupted()
    }

    fn notice(&mut self, message: &str) {
        self.inner.notice(message);
    }

    fn name_holders(&self) -> bool {
        self.inner.name_holders()
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Woke {
    /// The descriptor is ready, or the time is up.
    Ready,
    /// `hooks` asked to stop.
    Interrupted,
}

/// Sleeps in poll() until `fd` has one of `events` (or is hung up), or
/// `until` passes; without `fd`, just until `until`.
fn poll_until(
    fd: Option<BorrowedFd<'_>>,
    events: i16,
    until: Option<Instant>,
    hooks: &mut dyn WaitHooks,
) -> std::result::Result<Woke, Errno> {
    // As flock_wait::block: a signal handled before poll() is not lost.
    let wake = Wake::register().map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(0)))?;
    if hooks.interrupted() {
        return Ok(Woke::Interrupted);
    }
    loop {
        let timeout = match until {
            None => -1,
            Some(until) => {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(Woke::Ready);
                }
                // Round up, so we never wake just before the deadline.
                i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
            }
        };
        let mut pollfd = libc::pollfd {
            fd: fd.map_or(-1, |fd| fd.as_raw_fd()),
            events,
            revents: 0,
        };
        let count = usize::from(fd.is_some()) as libc::nfds_t;
        // SAFETY: `pollfd` is valid for the call and `fd`, when given, is open
        // (borrowed); with a count of 0 the kernel reads no entry.
        let ready = unsafe { libc::poll(&mut pollfd, count, timeout) };
        match ready {
            n if n > 0 => return Ok(Woke::Ready),
            0 => {}
            _ => {
                let errno = Errno::last();
                if errno != Errno::EINTR {
                    return Err(errno);
                }
                wake.disarm();
                if hooks.interrupted() {
                    return Ok(Woke::Interrupted);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flock_wait;

    fn abstract_lock(tag: &str) -> SocketLock {
        SocketLock::parse(&format!(
            "abstract:withlock-unit-{}-{tag}",
            std::process::id()
        ))
        .unwrap()
    }

    #[test]
    fn a_second_acquire_is_busy_and_names_this_process() {
        let lock = abstract_lock("a");
        let _held = lock.try_acquire().unwrap();
        match lock.try_acquire() {
            Err(Error::Busy { holders, .. }) => {
                assert_eq!(holders.holders[0].pid, std::process::id() as i32);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn release_wakes_a_waiter() {
        let lock = abstract_lock("b");
        let held = lock.try_acquire().unwrap();
        let waiter = {
            let lock = lock.clone();
            std::thread::spawn(move || lock.acquire().map(|g| g.release()))
        };
        // Whether the waiter blocked yet or not, it gets the lock once released.
        held.release().unwrap();
        waiter.join().unwrap().unwrap().unwrap();
    }

    #[test]
    fn a_timeout_reports_the_holder() {
        let lock = abstract_lock("c");
        let _held = lock.try_acquire().unwrap();
        match lock.acquire_timeout(Duration::from_millis(30)) {
            Err(Error::TimedOut {
                waited, holders, ..
            }) => {
                assert!(waited >= Duration::from_millis(30));
                assert_eq!(holders.holders.len(), 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_tcp_lock_is_busy_but_unidentified_and_free_after_release() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let lock = SocketLock::parse(&format!("tcp:{port}")).unwrap();
        assert!(lock.holders().unwrap().is_empty(), "nobody listens");
        let held = lock.try_acquire().unwrap();
        let holders = lock.holders().unwrap();
        assert_eq!(holders.unidentified.as_deref(), Some(TCP_UNIDENTIFIED));
        assert!(lock.try_acquire().unwrap_err().is_conflict());
        held.release().unwrap();
        assert!(lock.holders().unwrap().is_empty());
        drop(lock.try_acquire().unwrap());
    }

    #[test]
    fn a_stale_socket_file_is_taken_over_and_a_live_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let lock = SocketLock::parse(&format!("unix:{}", path.display())).unwrap();
        // A stale socket file: bound, never listened on, closed.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        let held = lock.try_acquire().unwrap();
        assert!(lock.try_acquire().unwrap_err().is_conflict());
        assert!(path.exists(), "a live socket is never removed");
        held.release().unwrap();
        assert!(!path.exists(), "released: the socket file is removed");
        assert!(lock.holders().unwrap().is_empty());
    }

    #[test]
    fn a_held_takeover_lock_stops_only_the_replacement_of_a_stale_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let lock = SocketLock::parse(&format!("unix:{}", path.display())).unwrap();
        let sidecar = std::fs::File::create(dir.path().join("s.sock.takeover")).unwrap();
        flock_wait::try_lock(sidecar.as_fd(), Mode::Exclusive).unwrap();
        // A free path needs no takeover lock; release neither.
        lock.try_acquire().unwrap().release().unwrap();
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        match lock.try_acquire() {
            Err(Error::Busy { holders, .. }) => {
                assert_eq!(holders.holders[0].pid, std::process::id() as i32);
            }
            other => panic!("{other:?}"),
        }
        assert!(lock.acquire_timeout(Duration::from_millis(20)).is_err());
        drop(sidecar);
        lock.try_acquire().unwrap().release().unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }

    #[test]
    fn a_symlink_or_a_regular_file_at_the_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").unwrap();
        let link = dir.path().join("link.sock");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for (path, kind) in [(&link, "symbolic link"), (&target, "regular file")] {
            let lock = SocketLock::parse(&format!("unix:{}", path.display())).unwrap();
            match lock.try_acquire() {
                Err(Error::NotSocket { kind: got, .. }) => assert_eq!(got, kind),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
    }
}
