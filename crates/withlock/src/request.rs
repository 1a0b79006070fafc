//! What a caller asks for: the lock mode and how long to wait.
//!
//! Any [`Duration`] is a valid wait: one too long for the monotonic clock to
//! represent its end (beyond about 9.2e18 seconds on Linux) has no deadline
//! and waits as long as it takes, rather than overflow.

use std::time::Duration;

/// Whether other holders may share the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// One holder at a time, and no shared holders beside it.
    #[default]
    Exclusive,
    /// Any number of shared holders at once, but no exclusive one.
    Shared,
}

impl Mode {
    /// "exclusive" or "shared".
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Exclusive => "exclusive",
            Mode::Shared => "shared",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How long to wait for a lock that is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Wait {
    /// Try once; fail with [`crate::Error::Busy`] if the lock is held.
    NoWait,
    /// Wait at most this long; then fail with [`crate::Error::TimedOut`].
    /// A zero duration is the same as [`Wait::NoWait`], [`crate::Error::Busy`]
    /// included; one whose end the clock cannot represent is the same as
    /// [`Wait::Forever`]. [`crate::Deadline`] decodes it.
    For(Duration),
    /// Wait as long as it takes.
    #[default]
    Forever,
}
