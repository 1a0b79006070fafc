//! What withlock does when a newer `--cancel-running` request cancels the
//! command it runs with `--cancel-running` (the protocol is the library's,
//! [`withlock::cancel`]).
//!
//! The first cancel, from the library's watch thread: one line on stderr
//! naming the newer request (pid, user, host, command), SIGTERM to the
//! command's process group and SIGKILL `--grace` later unless it has ended
//! ([`lock_loss::stop_within`], as for a lost lock); once the command has
//! ended withlock releases the lock, which the newer request then takes,
//! and exits with [`exit_code::CANCELLED`]. A cancel that comes after the
//! command ended leaves the command's own status.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use withlock::Cancelled;

use crate::exit_code;
use crate::lock_loss;

/// A cancel has been handled (only the first one is).
static HANDLED: AtomicBool = AtomicBool::new(false);

/// What to call when a newer request cancels this one.
pub(crate) fn on_cancel(grace: Duration) -> impl Fn(Cancelled) + Send + Sync + 'static {
    move |cancelled| stop(&cancelled, grace)
}

fn stop(cancelled: &Cancelled, grace: Duration) {
    if HANDLED.swap(true, Ordering::SeqCst) || lock_loss::was_lost() {
        return;
    }
    if !lock_loss::stop_within(grace, exit_code::CANCELLED) {
        // The command had already ended: its status stands.
        return;
    }
    say!(
        "withlock: cancelled by a newer --cancel-running request for {}: {}; stopping the \
         command (SIGTERM, SIGKILL after {}s)",
        withlock::escape::text(&cancelled.lock),
        by(cancelled),
        grace.as_secs_f64()
    );
}

/// `pid 4711, user bob, host ci-3 (withlock --cancel-running deploy -- ./deploy)`.
fn by(cancelled: &Cancelled) -> String {
    let by = &cancelled.by;
    let user = by.user.as_deref().unwrap_or("unknown");
    let command = by
        .command_line()
        .unwrap_or_else(|| "command unknown".into());
    format!(
        "pid {}, user {}, host {} ({command})",
        by.pid,
        withlock::escape::text(user),
        withlock::escape::text(&cancelled.host)
    )
}
