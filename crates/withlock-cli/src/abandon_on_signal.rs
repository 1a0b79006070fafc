//! Leaving the line cleanly when a signal ends withlock while it waits for
//! a lock whose wait outlives the process (an etcd lock: the request's key
//! stays in line until its lease runs out, holding up everyone behind
//! it).
//!
//! While such a wait runs ([`Armed`]), the signal handler does not `_exit`
//! at once: it writes the signal's number to a pipe (async-signal-safe)
//! and returns. A thread reading that pipe then has the library give up
//! every wait in progress ([`withlock::abandon_waits`]: the etcd leases
//! are revoked, their keys leave the line) and exits with 128+N, as
//! before. Nothing runs meanwhile: once the wait is over, a signal that
//! came during it still ends withlock before any command starts.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// The pipe's write end while armed, else -1.
static PIPE: AtomicI32 = AtomicI32::new(-1);

/// A signal was handed over (the exit is under way).
static HANDED_OVER: AtomicBool = AtomicBool::new(false);

/// Called by the signal handler while waiting: true when the signal was
/// handed to the abandoning thread, which will exit; false when nothing
/// is armed and the handler should exit itself. Async-signal-safe.
pub(crate) fn hand_over(signal: i32) -> bool {
    let fd = PIPE.load(Ordering::SeqCst);
    if fd < 0 {
        return false;
    }
    HANDED_OVER.store(true, Ordering::SeqCst);
    let byte = signal as u8;
    // SAFETY: write is async-signal-safe; `byte` outlives the call and fd
    // is the pipe's write end, kept open for the life of the process.
    unsafe { libc::write(fd, (&raw const byte).cast(), 1) };
    true
}

/// A wait during which a signal abandons the waits before exiting.
pub(crate) struct Armed(());

impl Armed {
    /// Arms the hand-over; None (and the handler exits at once, as
    /// without it) if the pipe or thread cannot be made.
    pub(crate) fn new() -> Option<Armed> {
        let (read, write) = nix::unistd::pipe().ok()?;
        std::thread::Builder::new()
            .name("withlock-abandon".into())
            .spawn(move || abandon_and_exit(read))
            .ok()?;
        // The write end stays open for the life of the process: a late
        // signal must never write to a descriptor number reused since.
        PIPE.store(write.as_raw_fd(), Ordering::SeqCst);
        std::mem::forget(write);
        Some(Armed(()))
    }
}

impl Drop for Armed {
    /// Disarms; if a signal was handed over meanwhile, waits for the
    /// thread to exit, so that nothing runs after it.
    fn drop(&mut self) {
        PIPE.store(-1, Ordering::SeqCst);
        if HANDED_OVER.load(Ordering::SeqCst) {
            loop {
                std::thread::park();
            }
        }
    }
}

fn abandon_and_exit(read: OwnedFd) {
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(&read, &mut byte) {
            Ok(1) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            // The write end is never closed: nothing else can happen.
            _ => return,
        }
    }
    withlock::abandon_waits();
    // SAFETY: _exit ends the process at once, as the handler would have.
    unsafe { libc::_exit(128 + i32::from(byte[0])) };
}
