//! The signal that interrupts a blocking call when a wait must stop (its
//! deadline, a helper that saw the lock change, a signal handled during
//! the wait): [`timer_signal`], its no-op handler, and blocking it per
//! thread, and a timer that sends it to one thread. Linux only; shared by
//! `flock_wait.rs`, `signal_wake.rs`, `wait_cancel.rs`, the
//! arrival queue and `supersede.rs`.

use std::io;
use std::mem::MaybeUninit;
use std::sync::Once;
use std::time::Duration;

/// The signal that interrupts a wait at its deadline: `SIGRTMIN + 5`.
pub fn timer_signal() -> i32 {
    libc::SIGRTMIN() + 5
}

extern "C" fn noop_handler(_: libc::c_int) {}

/// Makes [`timer_signal`] interrupt a blocking call rather than kill the
/// process: installs a no-op handler without `SA_RESTART`, once.
pub(crate) fn install_noop_handler() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: an all-zero sigaction is valid; we set the handler and an
        // empty mask, and no SA_RESTART so that flock() returns EINTR. The
        // handler touches nothing, so it is async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = MaybeUninit::zeroed().assume_init();
            action.sa_sigaction = noop_handler as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(timer_signal(), &action, std::ptr::null_mut());
        }
    });
}

/// Blocks or unblocks `signal` in this thread; returns whether it was blocked.
pub(crate) fn set_signal_blocked(signal: i32, blocked: bool) -> io::Result<bool> {
    // SAFETY: the sets are initialised by sigemptyset before use, and
    // pthread_sigmask only changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = MaybeUninit::zeroed().assume_init();
        let mut old: libc::sigset_t = MaybeUninit::zeroed().assume_init();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, signal);
        let how = if blocked {
            libc::SIG_BLOCK
        } else {
            libc::SIG_UNBLOCK
        };
        let rc = libc::pthread_sigmask(how, &set, &mut old);
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        Ok(libc::sigismember(&old, signal) == 1)
    }
}

/// Creates a `CLOCK_MONOTONIC` timer that sends [`timer_signal`] to the
/// calling thread, unblocking that signal in it first. Returns the timer
/// and whether the signal was blocked before, for the caller to block it
/// again when it deletes the timer; on failure the mask is as it was.
pub(crate) fn timer_for_this_thread() -> io::Result<(libc::timer_t, bool)> {
    let signal_was_blocked = set_signal_blocked(timer_signal(), false)?;
    // SAFETY: an all-zero sigevent is a valid value; we fill in the fields
    // SIGEV_THREAD_ID reads.
    let mut event: libc::sigevent = unsafe { MaybeUninit::zeroed().assume_init() };
    event.sigev_notify = libc::SIGEV_THREAD_ID;
    event.sigev_signo = timer_signal();
    // SAFETY: gettid has no preconditions.
    event.sigev_notify_thread_id = unsafe { libc::gettid() };
    let mut id: libc::timer_t = std::ptr::null_mut();
    // SAFETY: `event` and `id` are valid for the call; the kernel copies them.
    if unsafe { libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut id) } != 0 {
        let err = io::Error::last_os_error();
        if signal_was_blocked {
            let _ = set_signal_blocked(timer_signal(), true);
        }
        return Err(err);
    }
    Ok((id, signal_was_blocked))
}

/// `d` as the `timespec` that `timer_settime` takes.
pub(crate) fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs() as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}
