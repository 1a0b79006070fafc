//! What withlock does when a `--url` lock is lost while the command runs.
//!
//! The library's heartbeat ([`withlock::SetGuard::watch_for_loss`]) notices
//! a lost session within [`withlock::pg::heartbeat::DETECTION_BOUND`]. The
//! first loss, from the heartbeat thread: one line on stderr, SIGTERM to
//! the command's process group, and SIGKILL to the group `--grace` later
//! unless the command has ended by then (the signals go through
//! [`signals::stop_command`], which never signals a reaped command's group
//! id). Once the command has ended withlock exits with
//! [`exit_code::LOCK_LOST`], unless something else stopped it first (a
//! time limit, a cancel). A loss noticed only after the command ended
//! leaves the command's own status: it ran to its end under the lock.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use withlock::{LockLoss, SetGuard};

use crate::exit_code;
use crate::signals;

/// A loss has been handled (only the first one is).
static HANDLED: AtomicBool = AtomicBool::new(false);

/// Starts watching every PostgreSQL lock of `guard`; call it before the
/// command starts (a loss before it starts stops it as soon as it has).
pub(crate) fn watch(guard: &mut SetGuard, grace: Duration) -> withlock::Result<()> {
    guard.watch_for_loss(move |lost| stop(&lost, grace))
}

/// True once a lock was lost (before or after the command ended).
pub(crate) fn was_lost() -> bool {
    HANDLED.load(Ordering::SeqCst)
}

fn stop(lost: &LockLoss, grace: Duration) {
    if HANDLED.swap(true, Ordering::SeqCst) {
        return;
    }
    if !stop_within(grace, exit_code::LOCK_LOST) {
        // The command had already ended: its status stands.
        return;
    }
    say!(
        "withlock: {}; stopping the command (SIGTERM, SIGKILL after {}s)",
        escaped(lost),
        grace.as_secs_f64()
    );
}

/// SIGTERM to the command's group now, SIGKILL `grace` later unless it
/// has ended by then, for a reason whose exit status is `status` (the
/// first reason to stop the command is the one withlock exits with:
/// [`signals::stopped_status`]); false if it had already ended.
pub(crate) fn stop_within(grace: Duration, status: u8) -> bool {
    if !signals::stop_command(libc::SIGTERM, status) {
        return false;
    }
    // Not in the calling thread (the heartbeat's or a watch's): releasing
    // the locks waits for it.
    std::thread::spawn(move || {
        std::thread::sleep(grace);
        signals::stop_command(libc::SIGKILL, status);
    });
    true
}

/// The loss as one line, with the server's words made safe to print.
fn escaped(lost: &LockLoss) -> String {
    withlock::escape::text(&lost.to_string())
}
