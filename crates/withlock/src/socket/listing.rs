//! A socket lock as a listing shows it: its socket file for `unix:`
//! (found or not, never opened), or the spec itself for `tcp:` and
//! `abstract:`, which have no file; its holders from `SO_PEERCRED` as
//! [`crate::Lock::holders`] finds them.

use std::path::PathBuf;

use crate::error::Result;
use crate::lock::Lock;
use crate::lock_status::{Found, LockStatus};
use crate::socket::socket_lock::SocketLock;
use crate::socket::socket_spec::SocketAddress;

/// The status of `lock`, listed under its label.
pub(crate) fn status(lock: &SocketLock) -> Result<LockStatus> {
    let (path, found) = match lock.address() {
        SocketAddress::Unix(path) => {
            let found = match std::fs::symlink_metadata(path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Found::Nothing,
                _ => Found::File,
            };
            (path.clone(), found)
        }
        _ => (PathBuf::from(lock.label()), Found::NoFile),
    };
    Ok(LockStatus {
        name: lock.label().to_owned(),
        path,
        server: None,
        found,
        holders: lock.holders()?,
        obstruction: None,
    })
}
