//! The cancelling request's side of [`crate::cancel`] on this machine:
//! how its superseding announcement is marked, and how it asks the
//! holders that may be cancelled to stop.

use std::os::fd::AsRawFd;

use nix::sys::socket::{self, MsgFlags};

use crate::announce::{self, Stamp};
use crate::any_lock::LockKey;

/// The start of every cancellable holder's abstract name.
pub const NAME_PREFIX: &str = "withlock-cancel/";

/// What a cancelling request adds after the pid in its supersede names.
pub(crate) const REQUEST_MARK: &str = ".c";

/// The byte a cancelling request sends.
pub(crate) const NOTICE: u8 = b'c';

/// Asks every holder of `key`'s lock that may be cancelled and is older
/// than `stamp` to stop; called once the request waits for the lock.
pub(crate) fn ask_holders(key: &LockKey, stamp: Stamp) {
    for (name, holder) in announce::announced(&announce::prefix(NAME_PREFIX, key)) {
        if holder < stamp {
            if let Some(fd) = announce::connect(&name) {
                let _ = socket::send(fd.as_raw_fd(), &[NOTICE], MsgFlags::MSG_NOSIGNAL);
            }
        }
    }
}
