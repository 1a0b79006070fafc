//! The interface every kind of lock offers, whatever holds it: a lock file,
//! a listening socket or a session on a database server.

use std::time::Duration;

use crate::deadline::Deadline;
use crate::error::Result;
use crate::holder::Holders;
use crate::request::Wait;

/// What a caller wants to hear while a lock is being waited for.
pub trait WaitHooks {
    /// Called once, when the lock turns out to be held and the wait begins;
    /// not called when the lock is free. A command-line tool starts its
    /// "waiting for ..." report here, so an uncontended lock costs nothing.
    fn waiting(&mut self) {}

    /// Asked each time a signal interrupts the wait; returning true stops
    /// it with [`crate::Error::Interrupted`] (a binding checks for Ctrl-C here).
    fn interrupted(&mut self) -> bool {
        false
    }

    /// Told, by a wait that blocks where no signal reaches it (a server's
    /// client code, such as a PostgreSQL lock's), how another thread can
    /// end that wait: `Some(stop)` as it begins, `None` once it is over.
    /// Hooks that end waits from another thread ([`crate::WaitCancel`])
    /// call `stop` when cancelled (at once, if they already are); the
    /// wait then asks [`WaitHooks::interrupted`], as after a signal, and
    /// stops with [`crate::Error::Interrupted`] holding nothing.
    fn stop_with(&mut self, _stop: Option<WaitStopper>) {}

    /// Told something the caller should pass on to a person, such as a
    /// PostgreSQL lock's pause after a holder that ended without releasing
    /// (`pg::handover`); one line, without a trailing newline.
    fn notice(&mut self, _message: &str) {}

    /// Whether a conflict error should name the holders. Looking them up
    /// reads /proc/locks, which takes milliseconds and meanwhile holds up
    /// every flock() on the machine, so a caller that will not show them
    /// (a quiet command line) says no and gets an empty list.
    fn name_holders(&self) -> bool {
        true
    }
}

/// Ends a wait from another thread (see [`WaitHooks::stop_with`]):
/// cheap, never blocks, harmless if called more than once.
pub type WaitStopper = std::sync::Arc<dyn Fn() + Send + Sync>;

/// Hooks that do nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHooks;

impl WaitHooks for NoHooks {}

/// A lock that can be acquired, waited for and inspected.
pub trait Lock {
    /// What holding the lock looks like; dropping it releases the lock.
    type Guard;

    /// Acquires the lock, waiting until `deadline` and telling `hooks`;
    /// a held lock is refused as [`Deadline::refuse`] says.
    fn acquire_until(&self, deadline: Deadline, hooks: &mut dyn WaitHooks) -> Result<Self::Guard>;

    /// Who holds, and who waits for, the lock now.
    fn holders(&self) -> Result<Holders>;

    /// The lock as a person would name it in a message.
    fn describe(&self) -> String;

    /// Acquires the lock, waiting as `wait` says (from now) and telling
    /// `hooks`.
    fn acquire_with(&self, wait: Wait, hooks: &mut dyn WaitHooks) -> Result<Self::Guard> {
        self.acquire_until(Deadline::new(wait), hooks)
    }

    /// Waits as long as it takes.
    fn acquire(&self) -> Result<Self::Guard> {
        self.acquire_with(Wait::Forever, &mut NoHooks)
    }

    /// Takes the lock only if it is free now, else [`crate::Error::Busy`].
    fn try_acquire(&self) -> Result<Self::Guard> {
        self.acquire_with(Wait::NoWait, &mut NoHooks)
    }

    /// Waits at most `timeout`, else [`crate::Error::TimedOut`]; a zero
    /// `timeout` does not wait, as [`Lock::try_acquire`].
    fn acquire_timeout(&self, timeout: Duration) -> Result<Self::Guard> {
        self.acquire_with(Wait::For(timeout), &mut NoHooks)
    }
}

/// Runs `f` while holding `lock`, and returns what `f` returned.
///
/// A lock error means `f` never ran. Whatever `f` returns, its own errors
/// included, comes back untouched as the `Ok` value, and a panic in `f`
/// unwinds through here after the lock is released.
pub fn with_lock<L: Lock, T>(lock: &L, wait: Wait, f: impl FnOnce() -> T) -> Result<T> {
    let guard = lock.acquire_with(wait, &mut NoHooks)?;
    let result = f();
    drop(guard);
    Ok(result)
}
