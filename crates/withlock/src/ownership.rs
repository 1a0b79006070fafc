//! Words for who owns a file, for error messages ("owned by alice, mode 0600"),
//! and whose files are trusted.

use nix::sys::stat::FileStat;
use nix::unistd::{Uid, User, geteuid};

/// True for root and the calling user: the only owners whose directories
/// and symbolic links withlock relies on.
pub(crate) fn is_trusted(uid: u32) -> bool {
    uid == 0 || uid == geteuid().as_raw()
}

/// The user name for `uid`, or the number when the account is unknown.
pub(crate) fn user_name(uid: u32) -> String {
    match User::from_uid(Uid::from_raw(uid)) {
        Ok(Some(user)) => user.name,
        _ => format!("uid {uid}"),
    }
}

/// "owned by alice, mode 0600" for a file's status.
pub(crate) fn describe(stat: &FileStat) -> String {
    format!(
        "owned by {}, mode {:04o}",
        user_name(stat.st_uid),
        stat.st_mode & 0o7777
    )
}
