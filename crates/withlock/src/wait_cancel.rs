//! Ending a wait from another thread: [`WaitCancel`].
//!
//! Linux only. A wait sleeps in a blocking call (flock(2),
//! `fcntl(F_OFD_SETLKW)`, poll(2)) that only a signal ends early, and after
//! each interruption it asks its hooks whether to stop
//! ([`WaitHooks::interrupted`]). An asyncio task, or any caller that waits
//! in a helper thread, needs to stop that wait from elsewhere: the wait's
//! thread is not the one that decides.
//!
//! [`WaitCancel::cancel`] sets a flag and arms a POSIX timer (`CLOCK_MONOTONIC`,
//! `SIGEV_THREAD_ID`) aimed at the waiting thread, which sends
//! [`crate::timer_signal`] at once and then every millisecond until the
//! wait's interrupt check has seen the flag. Firing again matters: a single
//! signal that lands between the check and the blocking call would be lost,
//! and the wait would sleep until the lock is free. The wait then ends with
//! [`crate::Error::Interrupted`] the way an interrupted wait always does:
//! it leaves the arrival queue (its ticket unlocked, its descriptor closed)
//! and holds nothing.
//!
//! Kind-neutral: any lock whose wait asks its hooks after a signal (file
//! and socket locks do) stops within about a millisecond. A cancel that
//! comes before the wait starts stops it at its first check; one that comes
//! after the lock was granted changes nothing (the caller gets the guard
//! and decides what to do with it).
//!
//! A wait that no signal ends, inside a server's client code, hands its
//! hooks a way to end it instead ([`WaitHooks::stop_with`]), which
//! [`WaitCancel::cancel`] calls: a PostgreSQL lock's wait sends the
//! server a cancel request for its statement, an etcd lock's revokes its
//! lease, and either then ends as above, so the server lists no waiter
//! (its session closed, its key gone from the line). A PostgreSQL
//! semaphore's wait, in helper sessions of its own, does not yet: it goes
//! on until granted or timed out, so a caller abandons it instead.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::lock::{WaitHooks, WaitStopper};
use crate::timer_signal::{
    install_noop_handler, set_signal_blocked, timer_for_this_thread, timer_signal, timespec,
};

/// How often the waiting thread is signalled until its wait has stopped.
const REFIRE: Duration = Duration::from_millis(1);

/// A handle that ends one wait, from any thread. Clone it to give the
/// waiting side and the cancelling side each their own.
#[derive(Debug, Clone, Default)]
pub struct WaitCancel {
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    cancelled: AtomicBool,
    /// The timer aimed at the waiting thread, while a wait is registered.
    timer: Mutex<Option<Timer>>,
    /// How to end the wait in progress, if no signal does.
    stop: Mutex<Option<Stop>>,
}

/// A [`WaitStopper`], shown without its contents.
struct Stop(WaitStopper);

impl std::fmt::Debug for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stop")
    }
}

impl WaitCancel {
    /// A handle that has not been cancelled.
    pub fn new() -> WaitCancel {
        WaitCancel::default()
    }

    /// Asks the wait to stop: at its next interrupt check, which the
    /// waiting thread reaches within about a millisecond. Cheap and
    /// non-blocking; calling it again does nothing more.
    pub fn cancel(&self) {
        self.shared.cancelled.store(true, Ordering::SeqCst);
        let timer = self.shared.timer.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(timer) = timer.as_ref() {
            timer.fire_every(REFIRE);
        }
        drop(timer);
        // Cloned out, so the stopper runs without the lock held.
        let stop = self.shared.stop.lock().unwrap_or_else(|e| e.into_inner());
        let stop = stop.as_ref().map(|stop| stop.0.clone());
        if let Some(stop) = stop {
            stop();
        }
    }

    /// True once [`WaitCancel::cancel`] has been called.
    pub fn is_cancelled(&self) -> bool {
        self.shared.cancelled.load(Ordering::SeqCst)
    }

    /// `inner`, plus: the wait stops once this handle is cancelled. Call it
    /// on the thread that will wait, and wait with the hooks before they
    /// are dropped; one wait at a time per handle.
    pub fn hooks<'a>(&'a self, inner: &'a mut dyn WaitHooks) -> Result<WaitCancelHooks<'a>> {
        let timer =
            Timer::for_this_thread().map_err(|e| Error::io("set up a cancellable wait", e))?;
        *self.shared.timer.lock().unwrap_or_else(|e| e.into_inner()) = Some(timer);
        Ok(WaitCancelHooks {
            cancel: self,
            inner,
        })
    }

    fn stop_signalling(&self) {
        if let Some(timer) = self
            .shared
            .timer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            timer.fire_every(Duration::ZERO);
        }
    }
}

/// Hooks that stop the wait once their [`WaitCancel`] is cancelled; made by
/// [`WaitCancel::hooks`]. Dropping them deletes the timer.
pub struct WaitCancelHooks<'a> {
    cancel: &'a WaitCancel,
    inner: &'a mut dyn WaitHooks,
}

impl WaitHooks for WaitCancelHooks<'_> {
    fn waiting(&mut self) {
        self.inner.waiting();
    }

    fn interrupted(&mut self) -> bool {
        if self.cancel.is_cancelled() {
            // Seen: no more signals, which would only interrupt the
            // clean-up that follows.
            self.cancel.stop_signalling();
            return true;
        }
        self.inner.interrupted()
    }

    fn stop_with(&mut self, stop: Option<WaitStopper>) {
        self.inner.stop_with(stop.clone());
        let mut slot = self
            .cancel
            .shared
            .stop
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *slot = stop.clone().map(Stop);
        drop(slot);
        // Stored before the flag is read, and cancel() sets the flag before
        // it reads the slot: one of the two sees the other.
        if let Some(stop) = stop
            && self.cancel.is_cancelled()
        {
            stop();
        }
    }

    fn notice(&mut self, message: &str) {
        self.inner.notice(message);
    }

    fn name_holders(&self) -> bool {
        self.inner.name_holders()
    }
}

/// A set of locks ([`crate::LockSet`]) can be waited for with them too.
impl crate::lock_set::SetHooks for WaitCancelHooks<'_> {}

impl Drop for WaitCancelHooks<'_> {
    fn drop(&mut self) {
        // Under the mutex, so a concurrent cancel() never arms a deleted timer.
        let timer = self
            .cancel
            .shared
            .timer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(timer);
        *self
            .cancel
            .shared
            .stop
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// A POSIX timer that sends [`timer_signal`] to the thread that made it.
#[derive(Debug)]
struct Timer {
    /// The kernel's timer id (a `timer_t`, kept as an address so the
    /// handle is `Send`).
    id: usize,
    signal_was_blocked: bool,
}

impl Timer {
    fn for_this_thread() -> io::Result<Timer> {
        install_noop_handler();
        let (id, signal_was_blocked) = timer_for_this_thread()?;
        Ok(Timer {
            id: id as usize,
            signal_was_blocked,
        })
    }

    /// Fires now and then every `interval`; a zero interval stops it.
    fn fire_every(&self, interval: Duration) {
        let spec = libc::itimerspec {
            it_interval: timespec(interval),
            // A zero it_value disarms, any other value fires that soon.
            it_value: timespec(if interval.is_zero() {
                Duration::ZERO
            } else {
                Duration::from_nanos(1)
            }),
        };
        // SAFETY: the timer exists until `drop`, which needs the same mutex
        // that every caller of this method holds.
        unsafe { libc::timer_settime(self.id as libc::timer_t, 0, &spec, std::ptr::null_mut()) };
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // SAFETY: the timer was created by `for_this_thread` and is deleted
        // only here.
        unsafe { libc::timer_delete(self.id as libc::timer_t) };
        if self.signal_was_blocked {
            // Back as the caller had it; the mask is per thread, and the
            // hooks are dropped on the thread that made them.
            let _ = set_signal_blocked(timer_signal(), true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::file::file_lock::FileLock;
    use crate::lock::{Lock, NoHooks};
    use crate::request::Wait;
    use std::sync::mpsc;
    use std::time::Instant;

    /// Generous: a cancel normally ends the wait within milliseconds.
    const BOUND: Duration = Duration::from_secs(60);

    fn wait_until(what: &str, condition: impl Fn() -> bool) {
        let end = Instant::now() + BOUND;
        while !condition() {
            assert!(Instant::now() < end, "gave up waiting for {what}");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// How many requests are blocked in the kernel on `lock`'s file. A
    /// waiter of this process is not among `holders().waiters`, which
    /// counts processes.
    fn blocked_on(lock: &FileLock) -> usize {
        let stat = nix::sys::stat::stat(&lock.path()).unwrap();
        let file = crate::proc_locks::FileId::of(&stat);
        let entries = crate::proc_locks::read().unwrap();
        crate::proc_locks::on_file(&entries, file)
            .iter()
            .filter(|e| e.blocked)
            .count()
    }

    /// A waiter thread on `name` in `dir`, cancellable through the
    /// returned handle; its result comes through the receiver.
    fn cancellable_waiter(
        dir: &std::path::Path,
        name: &str,
    ) -> (WaitCancel, mpsc::Receiver<Result<()>>) {
        let lock = FileLock::named(name, Some(dir)).unwrap();
        let cancel = WaitCancel::new();
        let (done, result) = mpsc::channel();
        let theirs = cancel.clone();
        std::thread::spawn(move || {
            let mut inner = NoHooks;
            let outcome = theirs
                .hooks(&mut inner)
                .and_then(|mut hooks| lock.acquire_with(Wait::Forever, &mut hooks))
                .map(drop);
            let _ = done.send(outcome);
        });
        (cancel, result)
    }

    #[test]
    fn a_cancelled_wait_ends_and_leaves_no_place_in_the_queue() {
        let dir = tempfile::tempdir().unwrap();
        let lock = FileLock::named("c", Some(dir.path())).unwrap();
        let holder = lock.try_acquire().unwrap();
        let (cancel, result) = cancellable_waiter(dir.path(), "c");
        wait_until("the waiter to block", || blocked_on(&lock) > 0);
        cancel.cancel();
        let outcome = result
            .recv_timeout(BOUND)
            .expect("the cancelled wait ended");
        assert_eq!(outcome.unwrap_err().kind(), ErrorKind::Interrupted);
        assert_eq!(blocked_on(&lock), 0, "nothing left blocked");
        // No ticket left in the queue: once the holder goes, the next
        // request is not held up behind a waiter that has gone.
        drop(holder);
        drop(lock.try_acquire().unwrap());
        assert!(lock.holders().unwrap().is_empty());
    }

    #[test]
    fn a_cancel_before_the_wait_stops_it_at_its_first_check() {
        let dir = tempfile::tempdir().unwrap();
        let lock = FileLock::named("early", Some(dir.path())).unwrap();
        let _holder = lock.try_acquire().unwrap();
        let cancel = WaitCancel::new();
        cancel.cancel();
        let mut inner = NoHooks;
        let mut hooks = cancel.hooks(&mut inner).unwrap();
        let err = lock.acquire_with(Wait::Forever, &mut hooks).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Interrupted);
    }

    #[test]
    fn an_uncancelled_wait_gets_the_lock_and_a_late_cancel_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let lock = FileLock::named("late", Some(dir.path())).unwrap();
        let holder = lock.try_acquire().unwrap();
        let (cancel, result) = cancellable_waiter(dir.path(), "late");
        wait_until("the waiter to block", || blocked_on(&lock) > 0);
        drop(holder);
        result.recv_timeout(BOUND).unwrap().unwrap();
        cancel.cancel();
        assert!(cancel.is_cancelled());
    }

    #[test]
    fn many_cancels_racing_the_blocking_call_are_never_lost() {
        // Cancels land at every moment of the wait's set-up; a lost one
        // would leave the waiter asleep until the 60 s bound.
        let dir = tempfile::tempdir().unwrap();
        let lock = FileLock::named("race", Some(dir.path())).unwrap();
        let _holder = lock.try_acquire().unwrap();
        for _ in 0..200 {
            let (cancel, result) = cancellable_waiter(dir.path(), "race");
            cancel.cancel();
            let outcome = result
                .recv_timeout(BOUND)
                .expect("the cancelled wait ended");
            assert_eq!(outcome.unwrap_err().kind(), ErrorKind::Interrupted);
        }
    }
}
