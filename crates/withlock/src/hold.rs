//! How a hold (`withlock hold NAME... --until-exit PID`, a background
//! process that keeps a set of locks) and `withlock release NAME` find
//! each other, and who may end a hold.
//!
//! Linux only. The holding process listens on one abstract Unix socket
//! per lock of its set, `withlock-hold/<hash of the lock>/<time>/<pid>`
//! ([`HoldPoint::open`], names as in `announce.rs`). A release lists them
//! in `/proc/net/unix` ([`release`]) and, for each:
//!
//! 1. connects and reads the listener's credentials (`SO_PEERCRED`, set
//!    by the kernel): for a file lock its pid must hold a record lock on
//!    the lock file in `/proc/locks` (the "held since" stamp every holder
//!    sets), else the name is someone else's squatting and is ignored;
//! 2. sends one byte, `r`. The holder reads the releaser's credentials the
//!    same way and agrees only if its uid is the holder's own or root's:
//!    then it releases every lock of its set and only then answers `k`, so
//!    once a release returns the locks are free; else it answers `n`.
//!
//! The holder never blocks on a connection: it accepts it and waits for
//! its byte in the same `poll()` as everything else, so a connection that
//! says nothing (or a release slow to check) holds nothing up. At most
//! [`MAX_PENDING`] connections wait at once; the oldest is dropped.
//!
//! Nothing is written to disk, and no runtime directory is needed. A user
//! who is neither the holder's nor root cannot end a hold (77 in the
//! command), nor pass for one: the holder judges by the kernel's
//! credentials, and a release by the listener's pid in `/proc/locks`.
//! Abstract sockets belong to a network namespace: a release in another
//! one (a container with its own network) does not find the hold.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use nix::sys::socket::{self, SockFlag, sockopt};
use nix::unistd::{Uid, getuid};

use crate::announce::{self, Stamp};
use crate::any_lock::AnyLock;
use crate::error::Result;
use crate::holder::Holder;
use crate::lock_set::LockSet;
use crate::peer_check;
use crate::request::Mode;

/// The start of every hold's abstract name.
pub const NAME_PREFIX: &str = "withlock-hold/";

/// A hold's name prefix for `key`'s lock, with '/' at the end.
pub fn prefix_for(key: &crate::LockKey) -> String {
    announce::prefix(NAME_PREFIX, key)
}

/// How many accepted connections may wait for their request at once.
pub const MAX_PENDING: usize = 16;
/// How long a release waits for the holder to let go and answer: a
/// server lock's release is a round trip.
const ANSWER_WAIT: Duration = Duration::from_secs(30);

const RELEASE: u8 = b'r';
const DONE: u8 = b'k';
const REFUSED: u8 = b'n';

/// A hold's listening sockets, one per lock of its set, and the
/// connections accepted that have not said their byte yet.
#[derive(Debug)]
pub struct HoldPoint {
    listeners: Vec<OwnedFd>,
    /// Each with the uid the kernel gave for its other end.
    pending: Vec<(UnixStream, u32, i32)>,
}

/// A release that a hold agreed to: answer it once the locks are free.
#[derive(Debug)]
pub struct ReleaseAsked {
    conn: UnixStream,
    /// Who asked.
    pub by: Holder,
}

impl ReleaseAsked {
    /// Tells the releaser the locks are free; call it after releasing them.
    pub fn done(mut self) {
        let _ = self.conn.write_all(&[DONE]);
    }
}

impl HoldPoint {
    /// Starts listening for releases of every lock of `set`, which this
    /// process holds.
    pub fn open(set: &LockSet) -> Result<HoldPoint> {
        let stamp = Stamp::now();
        let listeners = set
            .keyed()
            .iter()
            .map(|(key, _)| announce::listen(&prefix_for(key), stamp, "").map(|(fd, _)| fd))
            .collect::<Result<Vec<_>>>()?;
        Ok(HoldPoint {
            listeners,
            pending: Vec::new(),
        })
    }

    /// The sockets to wait on with `poll()` for POLLIN: the listeners,
    /// then the connections waiting for their byte.
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        self.listeners
            .iter()
            .map(AsFd::as_fd)
            .chain(self.pending.iter().map(|(conn, _, _)| conn.as_fd()))
            .collect()
    }

    /// Handles the socket `fds()[index]`, which `poll()` found ready: a
    /// listener's connection is accepted (None: its byte comes later), a
    /// waiting connection read. A release from this user or root comes
    /// back to be answered with [`ReleaseAsked::done`]; anyone else's is
    /// refused here. Handle the ready ones of one `poll()` from the
    /// highest index down: this changes the indices above `index`.
    pub fn ready(&mut self, index: usize) -> Option<ReleaseAsked> {
        if index < self.listeners.len() {
            self.accept(index);
            return None;
        }
        let at = index - self.listeners.len();
        if at >= self.pending.len() {
            return None;
        }
        let (mut conn, uid, pid) = self.pending.remove(at);
        let mut byte = [0u8];
        match conn.read(&mut byte) {
            Ok(1) if byte[0] == RELEASE => {}
            _ => return None,
        }
        let uid = Uid::from_raw(uid);
        if uid != getuid() && !uid.is_root() {
            let _ = conn.set_nonblocking(false);
            let _ = conn.write_all(&[REFUSED]);
            return None;
        }
        let _ = conn.set_nonblocking(false);
        Some(ReleaseAsked {
            conn,
            by: Holder::of_pid(pid, Mode::Exclusive),
        })
    }

    /// Accepts a connection on listener `index` into the waiting ones.
    fn accept(&mut self, index: usize) {
        let Some(listener) = self.listeners.get(index) else {
            return;
        };
        let Ok(raw) = socket::accept4(
            listener.as_raw_fd(),
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        ) else {
            return;
        };
        // SAFETY: accept4 just returned this descriptor, owned by nobody else.
        let conn = unsafe { OwnedFd::from_raw_fd(raw) };
        let Ok(cred) = socket::getsockopt(&conn, sockopt::PeerCredentials) else {
            return;
        };
        if self.pending.len() >= MAX_PENDING {
            self.pending.remove(0);
        }
        self.pending
            .push((UnixStream::from(conn), cred.uid(), cred.pid()));
    }
}

/// What a release found.
#[derive(Debug)]
#[non_exhaustive]
pub enum Release {
    /// These holds let go of their locks.
    Released(Vec<Holder>),
    /// Only holds this user may not release were found: theirs.
    NotYours(Vec<Holder>),
    /// No hold of any of the locks on this machine.
    NoHold,
}

/// Ends every hold of a lock of `set` on this machine that this user may
/// end (all of them for root); see the module docs.
pub fn release(set: &LockSet) -> Release {
    let mut released = Vec::new();
    let mut refused = Vec::new();
    for (key, lock) in set.keyed() {
        for (name, _) in announce::announced(&prefix_for(key)) {
            match ask(&name, lock) {
                Some((holder, true)) => released.push(holder),
                Some((holder, false)) => refused.push(holder),
                None => {}
            }
        }
    }
    match (released.is_empty(), refused.is_empty()) {
        (false, _) => Release::Released(released),
        (true, false) => Release::NotYours(refused),
        (true, true) => Release::NoHold,
    }
}

/// Asks the hold listening on `name` to release: who it is, and whether
/// it agreed; None if it is no hold of `lock`.
fn ask(name: &str, lock: &AnyLock) -> Option<(Holder, bool)> {
    let fd = announce::connect(name)?;
    let cred = socket::getsockopt(&fd, sockopt::PeerCredentials).ok()?;
    if matches!(lock, AnyLock::File(_)) {
        peer_check::waiting_mode(cred.pid(), lock, Mode::Exclusive)?;
    }
    let holder = Holder::of_pid(cred.pid(), lock.mode());
    let mut conn = UnixStream::from(fd);
    conn.set_nonblocking(false).ok()?;
    conn.set_read_timeout(Some(ANSWER_WAIT)).ok()?;
    conn.write_all(&[RELEASE]).ok()?;
    let mut byte = [0u8];
    conn.read_exact(&mut byte).ok()?;
    Some((holder, byte[0] == DONE))
}
