//! A file lock's place in a [`crate::LockSet`]'s global order: its lock
//! file's directory identity and name ([`PathKey`]), so every path to one
//! lock file gives one key.

use std::path::Path;

use crate::path_key::PathKey;

/// The order key of the file lock whose lock file is at a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct FileKey(PathKey);

impl FileKey {
    /// The key of the lock file at `path`.
    pub(crate) fn of(path: &Path) -> FileKey {
        FileKey(PathKey::of(path))
    }

    /// `file/DEV:INO/NAME`.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        [b"file/".as_slice(), &self.0.to_bytes()].concat()
    }
}
