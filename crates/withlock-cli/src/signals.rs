//! What SIGINT, SIGTERM, SIGHUP and SIGQUIT do to withlock.
//!
//! - While waiting for the lock (no command yet), each ends withlock at
//!   once with status 128+N. The handler calls `_exit` itself, so a signal
//!   that lands just before the blocking flock() cannot be missed; nothing
//!   has run and the kernel drops our half-open lock file.
//! - While the command runs, each is passed on to the command's process
//!   group, once. The command runs in a process group of its own, which is
//!   also the terminal's foreground group (see [`crate::terminal`]), so a
//!   Ctrl-C on the terminal reaches the command from the kernel alone, and
//!   a signal sent to withlock, or to withlock's process group, reaches the
//!   command only through withlock: never twice.
//!
//! The signals are blocked from just before the command is spawned until
//! its process group is recorded, so none falls between the two.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicI32, Ordering};

/// The signals withlock handles, in the order they are documented.
pub const HANDLED: [i32; 4] = [libc::SIGTERM, libc::SIGHUP, libc::SIGINT, libc::SIGQUIT];

/// The command's process group, or 0 while no command runs.
static COMMAND_GROUP: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    let group = COMMAND_GROUP.load(Ordering::SeqCst);
    if group == 0 {
        // SAFETY: _exit is async-signal-safe and ends the process at once.
        unsafe { libc::_exit(128 + signal) };
    }
    // SAFETY: kill is async-signal-safe; `group` is our child's group.
    unsafe { libc::kill(-group, signal) };
}

/// Installs the handler for every signal in [`HANDLED`].
pub fn install() {
    for signal in HANDLED {
        // SAFETY: an all-zero sigaction is valid; we set a handler that only
        // calls async-signal-safe functions, an empty mask and no
        // SA_RESTART, so a blocked wait is interrupted too.
        unsafe {
            let mut action: libc::sigaction = MaybeUninit::zeroed().assume_init();
            action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// Blocks the handled signals until dropped; signals that arrive meanwhile
/// are delivered on drop.
pub struct Deferred {
    previous: libc::sigset_t,
}

impl Deferred {
    /// Starts deferring the handled signals.
    pub fn start() -> Deferred {
        // SAFETY: the sets are initialised with sigemptyset before use, and
        // sigprocmask only changes this thread's mask.
        unsafe {
            let mut set: libc::sigset_t = MaybeUninit::zeroed().assume_init();
            let mut previous: libc::sigset_t = MaybeUninit::zeroed().assume_init();
            libc::sigemptyset(&mut set);
            for signal in HANDLED {
                libc::sigaddset(&mut set, signal);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut previous);
            Deferred { previous }
        }
    }
}

impl Drop for Deferred {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `start`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut()) };
    }
}

/// From now on, handled signals go to the process group `group`.
pub fn forward_to(group: i32) {
    COMMAND_GROUP.store(group, Ordering::SeqCst);
}

/// The command has ended: there is nobody to pass signals to any more, and
/// withlock is only releasing the lock and exiting, so a late signal ends it
/// as if it were still waiting.
pub fn stop_forwarding() {
    COMMAND_GROUP.store(0, Ordering::SeqCst);
}
