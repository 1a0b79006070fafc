//! What a caller asks for: the lock mode and how long to wait.
//!
//! Any [`Duration`] is a valid wait: one too long for the monotonic clock to
//! represent its end (beyond about 9.2e18 seconds on Linux) has no deadline
//! and waits as long as it takes, rather than overflow.

use std::time::{Duration, Instant};

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
    /// A zero duration is the same as [`Wait::NoWait`]; one whose end the
    /// clock cannot represent is the same as [`Wait::Forever`].
    For(Duration),
    /// Wait as long as it takes.
    #[default]
    Forever,
}

impl Wait {
    /// When a wait that started at `start` gives up: `None` when it never
    /// does (also for a [`Wait::For`] whose end cannot be represented) and
    /// for [`Wait::NoWait`].
    pub(crate) fn deadline(self, start: Instant) -> Option<Instant> {
        match self {
            Wait::For(limit) => start.checked_add(limit),
            Wait::NoWait | Wait::Forever => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_duration_gives_a_deadline_or_none() {
        let now = Instant::now();
        assert_eq!(
            Wait::For(Duration::from_secs(1)).deadline(now),
            Some(now + Duration::from_secs(1))
        );
        for huge in [
            Duration::from_secs(10_000_000_000_000_000_000),
            Duration::MAX,
        ] {
            assert_eq!(Wait::For(huge).deadline(now), None, "{huge:?}");
        }
        assert_eq!(Wait::Forever.deadline(now), None);
        assert_eq!(Wait::NoWait.deadline(now), None);
    }
}
