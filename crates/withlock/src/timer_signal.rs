//! The signal that interrupts a blocking call when a wait must stop (its
//! deadline, a helper that saw the lock change, a signal handled during
//! the wait): [`timer_signal`], its no-op handler, and blocking it per
//! thread. Linux only; shared by `flock_wait.rs`, `signal_wake.rs`, the
//! arrival queue and `supersede.rs`.

use std::io;
use std::mem::MaybeUninit;
use std::sync::Once;

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
