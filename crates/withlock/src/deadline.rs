//! A request's [`Wait`] turned into a deadline: the one place it is
//! decoded, and the one place that decides between "busy" and "timed out".
//!
//! A request makes its [`Deadline`] once, when it starts; a
//! [`crate::LockSet`] hands the same one to each of its locks, and every
//! kind of lock waits by it. So the same request gets the same answer from
//! a file, a socket or a PostgreSQL lock:
//!
//! - [`Wait::NoWait`] and [`Wait::For`] zero may not wait at all: a held
//!   lock is [`Error::Busy`] (`-n` and `-w 0` on the command line).
//! - [`Wait::For`] more than zero waits until its end, then gives
//!   [`Error::TimedOut`], counting the time from the request's start; a
//!   set whose deadline passed before its last lock is timed out too, not
//!   busy. An end too far for the monotonic clock (beyond about 9.2e18
//!   seconds on Linux) is no end: it waits as [`Wait::Forever`] does.
//! - [`Wait::Forever`] has no end.
//!
//! Time is the monotonic clock's (`CLOCK_MONOTONIC`): a change of the
//! wall clock does not move a deadline.

use std::time::{Duration, Instant};

use crate::error::Error;
use crate::holder::Holders;
use crate::request::Wait;

/// When a request stops waiting, fixed once when it starts (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    start: Instant,
    /// When the wait gives up: `start` itself for a request that may not
    /// wait, `None` for one that never gives up.
    end: Option<Instant>,
}

impl Deadline {
    /// The deadline of a request that starts now and waits as `wait` says.
    pub fn new(wait: Wait) -> Deadline {
        Deadline::starting(wait, Instant::now())
    }

    fn starting(wait: Wait, start: Instant) -> Deadline {
        let end = match wait {
            Wait::NoWait => Some(start),
            Wait::For(limit) => start.checked_add(limit),
            Wait::Forever => None,
        };
        Deadline { start, end }
    }

    /// When the request started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// When the wait gives up, `None` when it never does. A request that
    /// may not wait gives up at its start.
    pub fn end(&self) -> Option<Instant> {
        self.end
    }

    /// True while the request may still wait: it was allowed to, and its
    /// end has not come.
    pub fn may_wait(&self) -> bool {
        self.may_wait_for(Duration::ZERO)
    }

    /// True when the request may wait `pause` more without passing its end.
    pub fn may_wait_for(&self, pause: Duration) -> bool {
        match self.end {
            None => true,
            Some(end) => Instant::now()
                .checked_add(pause)
                .is_some_and(|then| then < end),
        }
    }

    /// How long the request may still wait: `None` without end, zero once
    /// its end has come.
    pub fn remaining(&self) -> Option<Duration> {
        self.end
            .map(|end| end.saturating_duration_since(Instant::now()))
    }

    /// The error for a lock held when the request must stop waiting:
    /// [`Error::Busy`] for a request that was not to wait at all,
    /// [`Error::TimedOut`] (counting from the request's start) for one
    /// whose time ran out, however short it was.
    pub fn refuse(&self, lock: String, holders: Holders) -> Error {
        if self.end == Some(self.start) {
            Error::Busy { lock, holders }
        } else {
            Error::TimedOut {
                lock,
                waited: self.start.elapsed(),
                holders,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(wait: Wait) -> Error {
        Deadline::new(wait).refuse("x".into(), Holders::default())
    }

    #[test]
    fn only_a_request_that_may_not_wait_is_busy() {
        for wait in [Wait::NoWait, Wait::For(Duration::ZERO)] {
            assert!(!Deadline::new(wait).may_wait(), "{wait:?}");
            assert!(matches!(refusal(wait), Error::Busy { .. }), "{wait:?}");
        }
        for wait in [
            Wait::For(Duration::from_nanos(1)),
            Wait::For(Duration::from_secs(1)),
            Wait::Forever,
        ] {
            assert!(matches!(refusal(wait), Error::TimedOut { .. }), "{wait:?}");
        }
    }

    #[test]
    fn any_duration_gives_an_end_or_none() {
        let now = Instant::now();
        let second = Deadline::starting(Wait::For(Duration::from_secs(1)), now);
        assert_eq!(second.end(), Some(now + Duration::from_secs(1)));
        for huge in [
            Duration::from_secs(10_000_000_000_000_000_000),
            Duration::MAX,
        ] {
            let deadline = Deadline::starting(Wait::For(huge), now);
            assert_eq!(deadline.end(), None, "{huge:?}");
            assert!(deadline.may_wait_for(Duration::MAX), "{huge:?}");
        }
        assert_eq!(Deadline::starting(Wait::Forever, now).remaining(), None);
        assert_eq!(Deadline::starting(Wait::NoWait, now).end(), Some(now));
    }

    #[test]
    fn a_passed_end_leaves_no_time_and_times_out() {
        let start = Instant::now() - Duration::from_secs(2);
        let deadline = Deadline::starting(Wait::For(Duration::from_secs(1)), start);
        assert!(!deadline.may_wait());
        assert_eq!(deadline.remaining(), Some(Duration::ZERO));
        match deadline.refuse("x".into(), Holders::default()) {
            Error::TimedOut { waited, .. } => assert!(waited >= Duration::from_secs(2)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_pause_past_the_end_is_not_allowed() {
        let deadline = Deadline::new(Wait::For(Duration::from_secs(60)));
        assert!(deadline.may_wait_for(Duration::from_secs(1)));
        assert!(!deadline.may_wait_for(Duration::from_secs(61)));
        assert!(!Deadline::new(Wait::NoWait).may_wait_for(Duration::ZERO));
        assert!(Deadline::new(Wait::Forever).may_wait_for(Duration::MAX));
    }
}
