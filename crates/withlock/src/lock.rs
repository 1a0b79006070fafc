//! The interface every kind of lock offers, whatever holds it: a file here,
//! and later a database session or a socket.

use std::time::Duration;

use crate::error::Result;
use crate::holder::Holders;
use crate::request::Wait;

/// A lock that can be acquired, waited for and inspected.
pub trait Lock {
    /// What holding the lock looks like; dropping it releases the lock.
    type Guard;

    /// Acquires the lock, waiting as `wait` says. `interrupted` is asked
    /// each time a signal interrupts the wait; returning true stops it with
    /// [`crate::Error::Interrupted`].
    fn acquire_with(
        &self,
        wait: Wait,
        interrupted: &mut dyn FnMut() -> bool,
    ) -> Result<Self::Guard>;

    /// Who holds, and who waits for, the lock now.
    fn holders(&self) -> Result<Holders>;

    /// The lock as a person would name it in a message.
    fn describe(&self) -> String;

    /// Waits as long as it takes.
    fn acquire(&self) -> Result<Self::Guard> {
        self.acquire_with(Wait::Forever, &mut || false)
    }

    /// Takes the lock only if it is free now, else [`crate::Error::Busy`].
    fn try_acquire(&self) -> Result<Self::Guard> {
        self.acquire_with(Wait::NoWait, &mut || false)
    }

    /// Waits at most `timeout`, else [`crate::Error::TimedOut`].
    fn acquire_timeout(&self, timeout: Duration) -> Result<Self::Guard> {
        self.acquire_with(Wait::For(timeout), &mut || false)
    }
}

/// Runs `f` while holding `lock`, and returns what `f` returned.
///
/// A lock error means `f` never ran. Whatever `f` returns, its own errors
/// included, comes back untouched as the `Ok` value, and a panic in `f`
/// unwinds through here after the lock is released.
pub fn with_lock<L: Lock, T>(lock: &L, wait: Wait, f: impl FnOnce() -> T) -> Result<T> {
    let guard = lock.acquire_with(wait, &mut || false)?;
    let result = f();
    drop(guard);
    Ok(result)
}
