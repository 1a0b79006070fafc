//! Where a lock that lives on the file system is, as a key that is the
//! same in every process however the path was spelt: its directory's
//! device and inode number (through symbolic links, bind mounts or another
//! container's mount point), then its file name. File locks and Unix
//! socket locks order themselves by it in a [`crate::LockSet`].

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A path's directory identity and file name, ordered that way.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct PathKey {
    dir: DirId,
    name: Vec<u8>,
}

/// A directory's identity.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum DirId {
    /// Device and inode number.
    Inode(u64, u64),
    /// The path as given, for a directory that cannot be examined (taking
    /// the lock will then fail and say why).
    Unresolved(Vec<u8>),
}

impl PathKey {
    /// The key of `path`. It reads the directory with stat(2); the file
    /// itself need not exist.
    pub(crate) fn of(path: &Path) -> PathKey {
        let name = path
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default();
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        let dir = match nix::sys::stat::stat(dir) {
            Ok(st) => DirId::Inode(st.st_dev, st.st_ino),
            Err(_) => DirId::Unresolved(dir.as_os_str().as_bytes().to_vec()),
        };
        PathKey { dir, name }
    }

    /// `DEV:INO/NAME`, or `?DIR/NAME` for a directory that cannot be
    /// examined.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let dir = match &self.dir {
            DirId::Inode(dev, ino) => format!("{dev}:{ino}").into_bytes(),
            DirId::Unresolved(path) => [b"?".as_slice(), path].concat(),
        };
        [dir.as_slice(), b"/", &self.name].concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_directory_gives_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        let direct = PathKey::of(&dir.path().join("x.lock"));
        assert_eq!(direct, PathKey::of(&link.join("x.lock")));
        assert_ne!(direct, PathKey::of(&dir.path().join("y.lock")));
        assert!(matches!(direct.dir, DirId::Inode(..)));
    }

    #[test]
    fn a_directory_that_cannot_be_examined_keeps_its_path() {
        let key = PathKey::of(Path::new("/nonexistent/withlock/x.lock"));
        assert_eq!(key.to_bytes(), b"?/nonexistent/withlock/x.lock");
    }
}
