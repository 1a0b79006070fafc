//! `--once-per SECONDS`: a run is skipped when a run under the same lock
//! succeeded less than SECONDS ago.
//!
//! The record is the lock's own (the library's
//! [`withlock::SetGuard::last_success`]: a file beside a lock file, a row
//! on a PostgreSQL server on the server's clock), read once the lock is
//! held and before the command starts, so of several runs started at once
//! the first to get the lock runs and the others find its record, once it
//! has succeeded. A command that exits 0 (and was not stopped) records the
//! time its lock was taken; a failed one records nothing, so the next run
//! tries again. Only one exclusive lock that can keep a record qualifies:
//! anything else is refused with 64 before anything is taken.

use std::time::Duration;

use withlock::{LastSuccess, LockSet, SetGuard, human_duration};

use crate::cli::Cli;
use crate::option_support::Unsupported;

/// Refuses `--once-per` for what cannot keep one record under an
/// exclusive lock: several locks, a shared or `--max` lock, a socket lock.
pub(crate) fn refuse_unsupported(cli: &Cli, set: &LockSet) -> Result<(), Unsupported> {
    if cli.once_per.is_none() {
        return Ok(());
    }
    let refuse = |why: &str| Err(Unsupported::new(format!("--once-per {why}")));
    let mut locks = set.locks();
    let (Some(lock), None) = (locks.next(), locks.next()) else {
        return refuse("keeps the record of one lock: give one lock, not several");
    };
    if lock.kind() == withlock::Kind::Socket {
        return refuse(
            "needs a lock that can keep a record of runs, and a socket lock cannot: use a lock \
             name, a lock file or --url",
        );
    }
    if lock.mode() != withlock::Mode::Exclusive || lock.max().is_some() {
        return refuse("needs an exclusive lock, so that one run at a time checks the record");
    }
    Ok(())
}

/// The last success, if it was less than `window` ago: the run is skipped.
pub(crate) fn recent_success(
    guard: &mut SetGuard,
    window: Duration,
) -> withlock::Result<Option<LastSuccess>> {
    Ok(guard.last_success()?.filter(|last| last.ago < window))
}

/// The line a skipped run prints.
pub(crate) fn skipped_line(set: &LockSet, last: &LastSuccess, window: Duration) -> String {
    let lock = crate::lock_request::names(set);
    let due = window.saturating_sub(last.ago);
    format!(
        "withlock: skipped: {lock} last succeeded {} ago ({}), less than --once-per {} ago; \
         the next run is due in {}",
        human_duration(last.ago),
        humantime::format_rfc3339_seconds(last.at),
        human_duration(window),
        human_duration(due)
    )
}
