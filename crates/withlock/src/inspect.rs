//! Looking at locks without taking them: every lock in a lock directory,
//! or the locks named.
//!
//! Each kind of lock says what it finds through [`AnyLock`]: a named lock
//! is read by [`LockTarget::parse`](crate::LockTarget::parse) and answers
//! for itself, and the scan of a directory is the file lock's
//! (`file/listing.rs`: every `*.lock` entry, with what withlock would not
//! lock listed as skipped). Nothing is opened for locking and nothing is
//! created.

use std::path::Path;

use crate::any_lock::{self, AnyLock};
use crate::error::Result;
use crate::lock_status::LockStatus;

/// The status of the named locks in `dir` (each read by
/// [`LockTarget::parse`](crate::LockTarget::parse), as everywhere: a name,
/// a path or a socket spec, without a mode), or of every `*.lock` entry
/// there when `names` is empty.
pub fn list(dir: &Path, names: &[String]) -> Result<Vec<LockStatus>> {
    if names.is_empty() {
        return any_lock::locks_in(dir);
    }
    names
        .iter()
        .map(|name| AnyLock::parse(name, Some(dir))?.status())
        .collect()
}
