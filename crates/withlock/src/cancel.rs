//! Cancelling a running holder: a newer request made with the cancelling
//! flag stops a holder that was itself started with it, then takes the
//! lock (`withlock --cancel-running`).
//!
//! Linux only; file locks on this machine. Nothing is signalled
//! across processes: the holder's own process does the stopping, once it
//! has checked who asks. The protocol builds on [`crate::supersede`] and
//! its abstract-socket announcements (`announce.rs`):
//!
//! 1. **A cancelling request** announces itself as a superseding one
//!    ([`Supersede::announce_cancelling`]), its names marked with
//!    `.c`, so older cancelling requests that still wait give
//!    up as with `--supersede`. Once it waits for a lock (its waiting
//!    stamp is set: a POSIX record lock on the lock file), it lists the
//!    holders listening under `withlock-cancel/<lock>/` with an older
//!    stamp and sends each one byte, `c`.
//! 2. **A holder that may be cancelled** ([`CancelWatch::start`], right
//!    after its locks are granted) listens under `withlock-cancel/<lock>/`
//!    with its request's stamp, then lists the marked superseding requests
//!    newer than itself: one that already waits cancels it at once (it
//!    may have looked for holders just before this one listened).
//! 3. **The check.** A notice counts only if its sender, by its
//!    `SO_PEERCRED` pid (set by the kernel, nobody can forge it), holds a
//!    POSIX record lock on the same lock file (device and inode) in
//!    `/proc/locks`: its waiting stamp, or its "held since" stamp. Only a
//!    process that has the lock file open can take one, that is one that
//!    could take the lock itself. A notice from anyone else is ignored.
//!
//! So a user who cannot open the lock file cannot cancel anything; a
//! user who can may cancel a holder that opted in, whoever runs it (they
//! could equally have waited for the lock and held it); a holder that did
//! not opt in never listens, and nothing can cancel it. The holder names
//! the request that cancelled it (pid, user, command, from `/proc`).

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{self, SockFlag, sockopt};

use crate::announce::{self, Stamp};
use crate::any_lock::AnyLock;
use crate::cancel_request;
use crate::error::{Error, Result};
use crate::holder::Holder;
use crate::lock_set::LockSet;
use crate::peer_check;
use crate::readable::wait_readable;
use crate::request::Mode;
use crate::supersede::{self, Supersede};

pub use crate::cancel_request::NAME_PREFIX;
pub use crate::cancelled::Cancelled;

/// How long a notice's one byte may take to arrive after its connection.
const GREETING_WAIT: Duration = Duration::from_secs(1);

/// A holder's watch for cancelling requests, from the grant until
/// dropped (see the module docs).
pub struct CancelWatch {
    /// Closing it ends the watch.
    stop: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for CancelWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelWatch").finish_non_exhaustive()
    }
}

/// One file lock of the holder's set, listening.
struct Listening {
    listener: OwnedFd,
    lock: AnyLock,
    /// Where the newer cancelling requests for it announce themselves.
    requests: String,
}

impl CancelWatch {
    /// Starts listening for cancelling requests for every file lock of
    /// `set`, which `request` (announced with
    /// [`Supersede::announce_cancelling`]) has just been granted; call it
    /// before [`Supersede::finish`]. `on_cancel` is called once, from the
    /// watch's thread, when a request that passes the check asks.
    pub fn start(
        set: &LockSet,
        request: &Supersede,
        on_cancel: impl FnOnce(Cancelled) + Send + 'static,
    ) -> Result<CancelWatch> {
        let stamp = request.stamp();
        let mut listening = Vec::new();
        for (key, lock) in set.keyed() {
            if !matches!(lock, AnyLock::File(_)) {
                continue;
            }
            let (listener, _) = announce::listen(&announce::prefix(NAME_PREFIX, key), stamp, "")?;
            listening.push(Listening {
                listener,
                lock: lock.clone(),
                requests: supersede::prefix_for(key),
            });
        }
        let (stop_read, stop) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| Error::io("create a pipe for the cancel watch", e))?;
        let thread = std::thread::Builder::new()
            .name("withlock-cancel".into())
            .spawn(move || {
                if let Some(cancelled) = watch(&listening, &stop_read, stamp) {
                    on_cancel(cancelled);
                }
            })
            .map_err(|e| Error::io("start the cancel watch", e))?;
        Ok(CancelWatch {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for CancelWatch {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The watch's thread: first the newer cancelling requests already
/// waiting, then the notices, until one passes or `stop` closes.
fn watch(listening: &[Listening], stop: &OwnedFd, stamp: Stamp) -> Option<Cancelled> {
    for this in listening {
        let newer = announce::announced(&this.requests)
            .into_iter()
            .filter(|(name, other)| {
                name.contains(cancel_request::REQUEST_MARK) && stamp.is_older_than(other)
            });
        for (name, _) in newer {
            if let Some(by) = peer_check::probe(&name, &this.lock) {
                return Some(cancelled(&this.lock, by));
            }
        }
    }
    loop {
        let fds: Vec<BorrowedFd<'_>> = std::iter::once(stop)
            .chain(listening.iter().map(|l| &l.listener))
            .map(AsFd::as_fd)
            .collect();
        let Ok(ready) = wait_readable(&fds) else {
            return None;
        };
        if ready[0] {
            return None;
        }
        for (&ready, this) in ready[1..].iter().zip(listening) {
            if !ready {
                continue;
            }
            match socket::accept4(this.listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC) {
                Ok(raw) => {
                    if let Some(by) = read_notice(raw, &this.lock) {
                        return Some(cancelled(&this.lock, by));
                    }
                }
                Err(Errno::EAGAIN | Errno::EINTR | Errno::ECONNABORTED) => {}
                // Out of descriptors or memory: poll would report the
                // queued connection again at once, so stop watching rather
                // than spin; the holder then just runs to its end.
                Err(_) => return None,
            }
        }
    }
}

fn cancelled(lock: &AnyLock, by: Holder) -> Cancelled {
    Cancelled {
        lock: lock.label().to_owned(),
        by,
        host: crate::holder::this_host().unwrap_or_else(|| "this machine".into()),
    }
}

/// Reads the notice on the connection `raw` just accepted, and checks
/// that its sender could take `lock` (module docs, 3).
fn read_notice(raw: std::os::fd::RawFd, lock: &AnyLock) -> Option<Holder> {
    // SAFETY: accept4 just returned this descriptor, owned by nobody else.
    let conn = unsafe { OwnedFd::from_raw_fd(raw) };
    let cred = socket::getsockopt(&conn, sockopt::PeerCredentials).ok()?;
    if cred.pid() <= 0 || cred.pid() as u32 == std::process::id() {
        return None;
    }
    let mut stream = UnixStream::from(conn);
    stream.set_read_timeout(Some(GREETING_WAIT)).ok()?;
    let mut byte = [0u8];
    stream.read_exact(&mut byte).ok()?;
    if byte[0] != cancel_request::NOTICE {
        return None;
    }
    let mode = peer_check::waiting_mode(cred.pid(), lock, Mode::Exclusive)?;
    Some(Holder::of_pid(cred.pid(), mode))
}
