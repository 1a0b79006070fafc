//! `--time-limit`: the command is stopped once it has run that long.
//!
//! The limit counts from the moment the command is started. When it runs
//! out withlock does what it does for a lost `--url` lock (see
//! [`crate::lock_loss`], through [`lock_loss::stop_within`]): one line on
//! stderr, SIGTERM to the command's process group, SIGKILL `--grace` later
//! unless the command has ended by then. withlock then exits with
//! [`exit_code::TIME_LIMIT`], unless a lost lock or a cancel stopped the
//! command first.
//! The limit is kept by withlock itself: a withlock killed with SIGKILL
//! leaves its command running, as it leaves it holding a file lock.

use std::time::{Duration, SystemTime};

use withlock::human_duration;

use crate::exit_code;
use crate::lock_loss;

/// Starts the clock of a command about to be started: after `limit` it is
/// stopped (SIGTERM, then SIGKILL after `grace`). Returns when the limit
/// runs out, on the wall clock, for listings.
pub(crate) fn start(limit: Duration, grace: Duration) -> std::io::Result<Option<SystemTime>> {
    let deadline = SystemTime::now().checked_add(limit);
    std::thread::Builder::new()
        .name("time-limit".into())
        .spawn(move || {
            // A limit too far for the clock never runs out.
            if deadline.is_none() {
                return;
            }
            std::thread::sleep(limit);
            stop(limit, grace);
        })?;
    Ok(deadline)
}

fn stop(limit: Duration, grace: Duration) {
    if !lock_loss::stop_within(grace, exit_code::TIME_LIMIT) {
        // The command ended in time: its status stands.
        return;
    }
    say!(
        "withlock: the command ran into its time limit of {}; stopping it (SIGTERM, SIGKILL \
         after {}s)",
        human_duration(limit),
        grace.as_secs_f64()
    );
}
