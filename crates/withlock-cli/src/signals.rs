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
//! While the command is being started its process group is not known yet:
//! a signal that arrives then is kept and passed on as soon as it is. The
//! signals are not blocked meanwhile, because a child inherits the signal
//! mask and the command would then start with them blocked.
//!
//! A lost lock or a time limit stops the command from another thread
//! ([`stop_command`]), and the first to do so chooses withlock's exit
//! status ([`stopped_status`]). The stopping thread
//! must never signal the group once the command is reaped (its id
//! could by then be another's): the command is reaped only after
//! [`stop_forwarding`], and both take one mutex.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError};

/// The signals withlock handles, in the order they are documented.
pub(crate) const HANDLED: [i32; 4] = [libc::SIGTERM, libc::SIGHUP, libc::SIGINT, libc::SIGQUIT];

/// The command's process group; [`NO_COMMAND`] while waiting for the lock,
/// [`STARTING`] while the command is being started.
static COMMAND_GROUP: AtomicI32 = AtomicI32::new(NO_COMMAND);
const NO_COMMAND: i32 = 0;
const STARTING: i32 = -1;

/// A signal that arrived while the command was being started, or 0.
static PENDING: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    match COMMAND_GROUP.load(Ordering::SeqCst) {
        // A wait that outlives the process is given up by another thread,
        // which then exits (see abandon_on_signal).
        NO_COMMAND if crate::abandon_on_signal::hand_over(signal) => {}
        // SAFETY: _exit is async-signal-safe and ends the process at once.
        NO_COMMAND => unsafe { libc::_exit(128 + signal) },
        STARTING => {
            PENDING.store(signal, Ordering::SeqCst);
            // The group may have been recorded meanwhile; then whichever of
            // us takes the pending signal first passes it on.
            let group = COMMAND_GROUP.load(Ordering::SeqCst);
            if group > 0 {
                pass_on_pending(group);
            }
        }
        // SAFETY: kill is async-signal-safe; `group` is our child's group.
        group => unsafe {
            libc::kill(-group, signal);
        },
    }
}

fn pass_on_pending(group: i32) {
    let signal = PENDING.swap(0, Ordering::SeqCst);
    if signal != 0 {
        // SAFETY: kill is async-signal-safe; `group` is our child's group.
        unsafe { libc::kill(-group, signal) };
    }
}

/// Installs the handler for every signal in [`HANDLED`].
pub(crate) fn install() {
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

/// The command is about to be started: keep signals until its group is known.
pub(crate) fn starting() {
    COMMAND_GROUP.store(STARTING, Ordering::SeqCst);
}

/// From now on, handled signals go to the process group `group`.
pub(crate) fn forward_to(group: i32) {
    COMMAND_GROUP.store(group, Ordering::SeqCst);
    pass_on_pending(group);
}

/// The command has ended (call it before reaping it): there is nobody to
/// pass signals to any more, and withlock is only releasing the lock and
/// exiting, so a late signal ends it as if it were still waiting.
pub(crate) fn stop_forwarding() {
    let _stopping = STOPPING.lock().unwrap_or_else(PoisonError::into_inner);
    COMMAND_GROUP.store(NO_COMMAND, Ordering::SeqCst);
    ENDED.store(true, Ordering::SeqCst);
}

/// Held while [`stop_command`] signals the group and while
/// [`stop_forwarding`] ends forwarding, so no signal follows the reaping.
static STOPPING: Mutex<()> = Mutex::new(());

/// The command has ended (or could not start).
static ENDED: AtomicBool = AtomicBool::new(false);

/// The exit status of the first [`stop_command`] that signalled the
/// command (or kept the signal for it) before it ended; 0 for none.
static STOPPED: AtomicU8 = AtomicU8::new(0);

/// The status of the first [`stop_command`] that reached the command
/// before it ended, if any; final once [`stop_forwarding`] has returned.
pub(crate) fn stopped_status() -> Option<u8> {
    match STOPPED.load(Ordering::SeqCst) {
        0 => None,
        status => Some(status),
    }
}

/// Sends `signal` to the command's process group, from any thread but a
/// signal handler, for a reason whose exit status is `status` (a lost
/// lock, a time limit: the first reason to stop the command is the one
/// withlock exits with); if the command is not started yet, as soon as it
/// is. False if the command has already ended.
pub(crate) fn stop_command(signal: i32, status: u8) -> bool {
    let _stopping = STOPPING.lock().unwrap_or_else(PoisonError::into_inner);
    if ENDED.load(Ordering::SeqCst) {
        return false;
    }
    let _ = STOPPED.compare_exchange(0, status, Ordering::SeqCst, Ordering::SeqCst);
    let group = COMMAND_GROUP.load(Ordering::SeqCst);
    if group > 0 {
        // SAFETY: kill has no memory-safety preconditions; `group` is our
        // child's group, not yet reaped (see the module docs).
        unsafe { libc::kill(-group, signal) };
        return true;
    }
    // Not started, or being started: keep it for `forward_to`, unless the
    // group was recorded meanwhile (as in `on_signal`).
    PENDING.store(signal, Ordering::SeqCst);
    let group = COMMAND_GROUP.load(Ordering::SeqCst);
    if group > 0 {
        pass_on_pending(group);
    }
    true
}
