//! Taking a flock(2) lock, waiting in the kernel, with an optional deadline;
//! [`block`] gives the same deadline to any blocking call (the arrival
//! queue's `fcntl(F_OFD_SETLKW)` waits, in the file lock's `queue.rs`).
//!
//! Linux only. A blocked `flock()` cannot be given a timeout, so a deadline
//! is a POSIX timer (`timer_create`, `CLOCK_MONOTONIC`, `SIGEV_THREAD_ID`)
//! that sends a real-time signal, [`timer_signal`], to the waiting thread
//! alone. Its handler does nothing and is installed without `SA_RESTART`, so
//! the blocked `flock()` returns `EINTR` and we see the deadline has passed.
//! After the first expiry the timer fires again every millisecond, so a
//! signal that lands just before the thread enters `flock()` cannot leave it
//! blocked. There is no polling: until the deadline the thread sleeps in the
//! kernel and wakes only when the lock is released.
//!
//! The handler for [`timer_signal`] is installed process-wide the first time
//! a deadline is used; a host program that uses that signal itself should
//! not use timed waits.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, Instant};

use crate::request::Mode;
use crate::signal_wake::Wake;
use crate::timer_signal::{
    install_noop_handler, set_signal_blocked, timer_for_this_thread, timer_signal, timespec,
};

/// How a lock attempt ended, other than with an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The lock is ours.
    Locked,
    /// Someone holds it and we were not to wait.
    Busy,
    /// The deadline passed.
    TimedOut,
    /// The interrupt check asked us to stop.
    Interrupted,
}

fn operation(mode: Mode) -> i32 {
    match mode {
        Mode::Exclusive => libc::LOCK_EX,
        Mode::Shared => libc::LOCK_SH,
    }
}

fn flock(fd: BorrowedFd<'_>, op: i32) -> io::Result<()> {
    // SAFETY: flock only reads the descriptor number, which `fd` keeps open.
    if unsafe { libc::flock(fd.as_raw_fd(), op) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// One blocking flock(2) call, for [`block`].
pub(crate) fn flock_once(fd: BorrowedFd<'_>, mode: Mode) -> io::Result<()> {
    flock(fd, operation(mode))
}

fn is_busy(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::EWOULDBLOCK)
}

fn is_interrupt(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::EINTR)
}

/// Tries once, without blocking.
pub(crate) fn try_lock(fd: BorrowedFd<'_>, mode: Mode) -> io::Result<Outcome> {
    loop {
        match flock(fd, operation(mode) | libc::LOCK_NB) {
            Ok(()) => return Ok(Outcome::Locked),
            Err(e) if is_busy(&e) => return Ok(Outcome::Busy),
            Err(e) if is_interrupt(&e) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Blocks until the lock is ours, the deadline passes or `interrupted()`
/// says to stop (it is asked each time a signal interrupts the wait).
pub(crate) fn lock(
    fd: BorrowedFd<'_>,
    mode: Mode,
    deadline: Option<Instant>,
    interrupted: &mut dyn FnMut() -> bool,
) -> io::Result<Outcome> {
    block(deadline, interrupted, &mut || flock(fd, operation(mode)))
}

/// Repeats the blocking call `call` until it succeeds, the deadline passes
/// or `interrupted()` says to stop; a signal makes `call` fail with `EINTR`
/// (the deadline timer's among them). flock(2) and `fcntl(F_OFD_SETLKW)`
/// waits share this.
///
/// `interrupted()` is also asked before the first call: a signal handled
/// since the caller's last check (while it set up this wait) did not
/// interrupt any call, and would otherwise be lost until the lock is free.
/// One handled between the check and the call is caught by [`Wake`].
pub(crate) fn block(
    deadline: Option<Instant>,
    interrupted: &mut dyn FnMut() -> bool,
    call: &mut dyn FnMut() -> io::Result<()>,
) -> io::Result<Outcome> {
    let _timer = match deadline {
        Some(deadline) => Some(DeadlineTimer::arm(deadline)?),
        None => None,
    };
    let wake = Wake::register()?;
    if interrupted() {
        return Ok(Outcome::Interrupted);
    }
    loop {
        match call() {
            Ok(()) => return Ok(Outcome::Locked),
            Err(e) if is_interrupt(&e) => {
                wake.disarm();
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(Outcome::TimedOut);
                }
                if interrupted() {
                    return Ok(Outcome::Interrupted);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Releases a lock held through `fd`, for every descriptor sharing it.
pub(crate) fn unlock(fd: BorrowedFd<'_>) -> io::Result<()> {
    flock(fd, libc::LOCK_UN)
}

/// A POSIX timer that signals the calling thread at a deadline, then every
/// millisecond until dropped.
struct DeadlineTimer {
    id: libc::timer_t,
    signal_was_blocked: bool,
}

/// How often the timer fires again once the deadline has passed.
const REFIRE: Duration = Duration::from_millis(1);

impl DeadlineTimer {
    fn arm(deadline: Instant) -> io::Result<DeadlineTimer> {
        install_noop_handler();
        let (id, signal_was_blocked) = timer_for_this_thread()?;
        let timer = DeadlineTimer {
            id,
            signal_was_blocked,
        };
        // A zero it_value would disarm the timer, so wait at least 1 ns.
        let first = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_nanos(1));
        let spec = libc::itimerspec {
            it_interval: timespec(REFIRE),
            it_value: timespec(first),
        };
        // SAFETY: `timer.id` is the timer just created; `spec` is valid.
        if unsafe { libc::timer_settime(timer.id, 0, &spec, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(timer)
    }
}

impl Drop for DeadlineTimer {
    fn drop(&mut self) {
        // SAFETY: the timer was created by `arm` and is deleted only here.
        unsafe { libc::timer_delete(self.id) };
        if self.signal_was_blocked {
            let _ = set_signal_blocked(timer_signal(), true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::mem::MaybeUninit;
    use std::os::fd::AsFd;

    fn lock_file() -> (tempfile::TempDir, File, File) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.lock");
        let a = File::create(&path).unwrap();
        let b = File::open(&path).unwrap();
        (dir, a, b)
    }

    #[test]
    fn exclusive_excludes_and_shared_shares() {
        let (_dir, a, b) = lock_file();
        assert_eq!(try_lock(a.as_fd(), Mode::Shared).unwrap(), Outcome::Locked);
        assert_eq!(try_lock(b.as_fd(), Mode::Shared).unwrap(), Outcome::Locked);
        unlock(b.as_fd()).unwrap();
        assert_eq!(try_lock(b.as_fd(), Mode::Exclusive).unwrap(), Outcome::Busy);
        unlock(a.as_fd()).unwrap();
        assert_eq!(
            try_lock(b.as_fd(), Mode::Exclusive).unwrap(),
            Outcome::Locked
        );
    }

    #[test]
    fn deadline_ends_a_blocked_wait() {
        let (_dir, a, b) = lock_file();
        try_lock(a.as_fd(), Mode::Exclusive).unwrap();
        let deadline = Instant::now() + Duration::from_millis(50);
        let outcome = lock(b.as_fd(), Mode::Exclusive, Some(deadline), &mut || false).unwrap();
        assert_eq!(outcome, Outcome::TimedOut);
        assert!(Instant::now() >= deadline);
    }

    /// Set by the handler of SIGUSR2, which only these tests use.
    static HANDLED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

    extern "C" fn note_handled(_: libc::c_int) {
        HANDLED.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// A handler that only notes the signal, as Python's does, installed
    /// without SA_RESTART and wrapped by the relay; then SIGUSR2 handled
    /// on this thread, now.
    fn handle_sigusr2_now() {
        // SAFETY: an all-zero sigaction is valid; the handler only stores
        // to an atomic, which is async-signal-safe.
        unsafe {
            let mut action: libc::sigaction = MaybeUninit::zeroed().assume_init();
            action.sa_sigaction = note_handled as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGUSR2, &action, std::ptr::null_mut());
        }
        crate::wake_waits_on_handled_signals();
        // SAFETY: signals this thread; the handler runs before it returns.
        unsafe { libc::pthread_kill(libc::pthread_self(), libc::SIGUSR2) };
    }

    /// Waits on a lock someone holds, with `before_call` run just before
    /// each flock(); the interrupt check asks whether SIGUSR2 was handled.
    fn wait_noting_sigusr2(before_call: &mut dyn FnMut()) -> Outcome {
        let (_dir, a, b) = lock_file();
        try_lock(a.as_fd(), Mode::Exclusive).unwrap();
        // Only a lost signal waits this long, and then times out.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut interrupted = || HANDLED.swap(false, std::sync::atomic::Ordering::SeqCst);
        block(Some(deadline), &mut interrupted, &mut || {
            before_call();
            flock_once(b.as_fd(), Mode::Exclusive)
        })
        .unwrap()
    }

    #[test]
    fn a_signal_handled_before_the_wait_blocks_ends_it() {
        let _serial = SIGUSR2_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        handle_sigusr2_now();
        assert_eq!(wait_noting_sigusr2(&mut || {}), Outcome::Interrupted);
    }

    #[test]
    fn a_signal_handled_just_before_the_blocking_call_ends_the_wait() {
        let _serial = SIGUSR2_TESTS.lock().unwrap_or_else(|e| e.into_inner());
        HANDLED.store(false, std::sync::atomic::Ordering::SeqCst);
        let mut first = true;
        let outcome = wait_noting_sigusr2(&mut || {
            // After the check before the call: only the relay can wake it.
            if std::mem::take(&mut first) {
                handle_sigusr2_now();
            }
        });
        assert_eq!(outcome, Outcome::Interrupted);
    }

    static SIGUSR2_TESTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn a_free_lock_is_taken_even_with_a_past_deadline() {
        let (_dir, a, _b) = lock_file();
        let outcome = lock(
            a.as_fd(),
            Mode::Exclusive,
            Some(Instant::now()),
            &mut || false,
        );
        assert_eq!(outcome.unwrap(), Outcome::Locked);
    }
}
