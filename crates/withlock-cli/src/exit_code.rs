//! withlock's own exit statuses, from sysexits(3) where one fits, so a
//! script can tell a busy lock from its command's failure.

use withlock::Error;
use withlock::pg::PgError;

/// The lock is held (`-n`) or the wait timed out: EX_TEMPFAIL.
pub const CONFLICT: u8 = 75;
/// Bad usage: an unknown option, an invalid name or number: EX_USAGE.
pub const USAGE: u8 = 64;
/// The PostgreSQL server could not be reached, or failed a query:
/// EX_UNAVAILABLE.
pub const UNAVAILABLE: u8 = 69;
/// Any other system error: EX_OSERR.
pub const OS_ERROR: u8 = 71;
/// Permission denied on the lock file or directory: EX_NOPERM.
pub const PERMISSION: u8 = 77;
/// An unusable or unsafe lock directory, a symbolic link another user owns
/// on the way to it or at the lock path, no regular file at the lock path,
/// or no socket at a socket lock's path: EX_CONFIG.
pub const CONFIG: u8 = 78;
/// A newer `--supersede` request for the lock came while this one waited;
/// nothing ran. (Just past sysexits(3)'s range, so it means nothing else.)
pub const SUPERSEDED: u8 = 79;
/// A PostgreSQL lock (`--url`) was lost while the command ran: the session
/// ended, the server restarted or the network was cut. The command was
/// stopped (SIGTERM, SIGKILL after `--grace`). Next after [`SUPERSEDED`].
pub const LOCK_LOST: u8 = 80;
/// The command exists but cannot be executed, as env(1) says it.
pub const CANNOT_EXECUTE: u8 = 126;
/// The command was not found, as env(1) says it.
pub const NOT_FOUND: u8 = 127;

/// The exit status for a library error.
pub fn of(error: &Error) -> u8 {
    match error {
        Error::InvalidName { .. } | Error::Unsupported { .. } => USAGE,
        Error::UnusableDir { .. }
        | Error::UnsafeDir { .. }
        | Error::ForeignSymlink { .. }
        | Error::NotRegularFile { .. }
        | Error::NotSocket { .. } => CONFIG,
        Error::PermissionDenied { .. } => PERMISSION,
        Error::Busy { .. } | Error::TimedOut { .. } => CONFLICT,
        Error::Superseded { .. } => SUPERSEDED,
        Error::Postgres(err) => of_server(err),
        Error::Interrupted { .. } | Error::KeepsChanging { .. } | Error::Io { .. } => OS_ERROR,
        _ => OS_ERROR,
    }
}

/// The exit status for a failure talking to the PostgreSQL server: a bad
/// URL is bad usage, refused credentials (or a role that does not exist)
/// are a permission problem, TLS or a pooler that rule the lock out, a
/// database that does not exist and damaged state are configuration, the
/// rest means the
/// server is not available.
fn of_server(error: &PgError) -> u8 {
    match error {
        PgError::InvalidUrl(_) => USAGE,
        err if err.is_refused_credentials() => PERMISSION,
        // TLS that cannot be had as the URL asks, or a pooler that would
        // hand the session (and the lock) to others: fix the URL.
        PgError::Tls { .. } | PgError::Pooler { .. } => CONFIG,
        // The URL names a database the server does not have.
        PgError::NoDatabase { .. } => CONFIG,
        // The role may not create or use withlock's state.
        PgError::FenceTable { .. } => PERMISSION,
        // The state is damaged: an administrator must create it again.
        PgError::StateDamaged { .. } => CONFIG,
        _ => UNAVAILABLE,
    }
}

/// 128+N for a signal N, the way shells report it.
pub fn for_signal(signal: i32) -> u8 {
    (128 + signal).clamp(0, 255) as u8
}
