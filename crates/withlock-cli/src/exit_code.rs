//! withlock's own exit statuses, from sysexits(3) where one fits, so a
//! script can tell a busy lock from its command's failure.

use withlock::{Error, ErrorKind};

/// The lock is held (`-n`, `-w 0`) or the wait timed out: EX_TEMPFAIL.
pub(crate) const CONFLICT: u8 = 75;
/// Bad usage: an unknown option, an invalid name or number: EX_USAGE.
pub(crate) const USAGE: u8 = 64;
/// The PostgreSQL server could not be reached, or failed a query:
/// EX_UNAVAILABLE.
pub(crate) const UNAVAILABLE: u8 = 69;
/// Any other system error: EX_OSERR.
pub(crate) const OS_ERROR: u8 = 71;
/// Permission denied on the lock file or directory: EX_NOPERM.
pub(crate) const PERMISSION: u8 = 77;
/// An unusable or unsafe lock directory, a symbolic link another user owns
/// on the way to it or at the lock path, no regular file at the lock path,
/// or no socket at a socket lock's path: EX_CONFIG.
pub(crate) const CONFIG: u8 = 78;
/// A newer `--supersede` request for the lock came while this one waited;
/// nothing ran. (Just past sysexits(3)'s range, so it means nothing else.)
pub(crate) const SUPERSEDED: u8 = 79;
/// A PostgreSQL lock (`--url`) was lost while the command ran: the session
/// ended, the server restarted or the network was cut. The command was
/// stopped (SIGTERM, SIGKILL after `--grace`). Next after [`SUPERSEDED`].
pub(crate) const LOCK_LOST: u8 = 80;
/// The command ran into its `--time-limit` and was stopped (SIGTERM,
/// SIGKILL after `--grace`). Next after [`LOCK_LOST`].
pub(crate) const TIME_LIMIT: u8 = 81;
/// A newer `--cancel-running` request for the lock came while the command
/// ran with `--cancel-running`; the command was stopped (SIGTERM, SIGKILL
/// after `--grace`).
pub(crate) const CANCELLED: u8 = 82;
/// The command exists but cannot be executed, as env(1) says it.
pub(crate) const CANNOT_EXECUTE: u8 = 126;
/// The command was not found, as env(1) says it.
pub(crate) const NOT_FOUND: u8 = 127;

/// The exit status for a library error, by its kind
/// ([`withlock::Error::kind`]).
pub(crate) fn of(error: &Error) -> u8 {
    for_kind(error.kind())
}

fn for_kind(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Usage => USAGE,
        ErrorKind::Config => CONFIG,
        ErrorKind::Permission => PERMISSION,
        ErrorKind::Busy | ErrorKind::TimedOut => CONFLICT,
        ErrorKind::Superseded => SUPERSEDED,
        ErrorKind::Unavailable => UNAVAILABLE,
        ErrorKind::Interrupted | ErrorKind::System => OS_ERROR,
        _ => OS_ERROR,
    }
}

/// 128+N for a signal N, the way shells report it.
pub(crate) fn for_signal(signal: i32) -> u8 {
    (128 + signal).clamp(0, 255) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_is_usage() {
        assert_eq!(for_kind(ErrorKind::Usage), 64);
    }

    #[test]
    fn a_set_up_that_rules_the_lock_out_is_config() {
        assert_eq!(for_kind(ErrorKind::Config), 78);
    }

    #[test]
    fn a_refusal_is_permission() {
        assert_eq!(for_kind(ErrorKind::Permission), 77);
    }

    #[test]
    fn busy_and_timed_out_are_a_conflict() {
        assert_eq!(for_kind(ErrorKind::Busy), 75);
        assert_eq!(for_kind(ErrorKind::TimedOut), 75);
    }

    #[test]
    fn superseded_has_its_own_status() {
        assert_eq!(for_kind(ErrorKind::Superseded), 79);
    }

    #[test]
    fn an_unavailable_server_is_unavailable() {
        assert_eq!(for_kind(ErrorKind::Unavailable), 69);
    }

    #[test]
    fn interrupted_and_system_failures_are_os_errors() {
        assert_eq!(for_kind(ErrorKind::Interrupted), 71);
        assert_eq!(for_kind(ErrorKind::System), 71);
    }
}
