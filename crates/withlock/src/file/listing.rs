//! File locks as a listing shows them: the `*.lock` entries of a lock
//! directory, and one lock file's status, without taking or creating
//! anything.
//!
//! Linux only. Every `*.lock` regular file in the directory is a lock; its
//! holders and waiters come from `/proc/locks` (see [`crate::Holders`]).
//! Nothing is opened for locking and nothing is created. A `*.lock` entry
//! that withlock would refuse to lock (a symbolic link, a directory, a
//! FIFO, a socket, a device, or a file whose name is not a lock name) is
//! listed as skipped, with why, rather than left out or called free; so is
//! a named lock whose path holds such a thing. A named lock with nothing at
//! its path is free and [`Found::Nothing`]: never used, or its file removed.
//! A foreign record lock on a lock file's queue is reported beside the
//! holders ([`crate::file::obstruction`]).

use std::fs::FileType;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::file::file_lock::FileLock;
use crate::lock_status::{Found, LockStatus};
use crate::name::{LOCK_FILE_SUFFIX, LockName};

/// The status of every `*.lock` entry in `dir`, sorted by name.
pub(crate) fn locks_in(dir: &Path) -> Result<Vec<LockStatus>> {
    lock_entries(dir)?
        .into_iter()
        .map(|entry| match entry {
            Entry::Lock(name) => status(&FileLock::named(&name, Some(dir))?),
            Entry::Skipped { name, path, what } => Ok(LockStatus::skipped(name, path, what)),
        })
        .collect()
}

/// A file lock, named or found in the lock directory.
pub(crate) fn status(lock: &FileLock) -> Result<LockStatus> {
    let path = lock.path();
    let found = match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Found::Nothing,
        Ok(meta) if !meta.file_type().is_file() => {
            let what = not_a_lock_file(meta.file_type());
            return Ok(LockStatus::skipped(lock.label().to_owned(), path, what));
        }
        _ => Found::File,
    };
    let (holders, obstruction) = lock.status()?;
    Ok(LockStatus {
        name: lock.label().to_owned(),
        holders,
        path,
        server: None,
        found,
        obstruction,
    })
}

/// A `*.lock` entry of a lock directory.
enum Entry {
    /// A lock file, by its lock name.
    Lock(String),
    /// Anything else: its name without `.lock`, its path, and what it is.
    Skipped {
        name: String,
        path: PathBuf,
        what: String,
    },
}

/// The `*.lock` entries in `dir`, sorted by name.
fn lock_entries(dir: &Path) -> Result<Vec<Entry>> {
    let entries = std::fs::read_dir(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => Error::PermissionDenied {
            path: dir.to_owned(),
            detail: "this user may not list the lock directory; name the locks to look up".into(),
        },
        // The same answer as for a run: a missing directory or a file is
        // an unusable lock directory (78), with the fix.
        _ => match e.raw_os_error() {
            Some(errno) => super::lock_dir::open_error(dir, nix::errno::Errno::from_raw(errno)),
            None => Error::io(format!("list {}", dir.display()), e),
        },
    })?;
    let mut found: Vec<(String, Entry)> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let file_name = entry.file_name().to_string_lossy().into_owned();
            let name = file_name.strip_suffix(LOCK_FILE_SUFFIX)?.to_owned();
            let path = entry.path();
            let what = match entry.file_type() {
                Ok(kind) if !kind.is_file() => not_a_lock_file(kind),
                Ok(_) if LockName::new(&name).is_err() => {
                    "a file whose name is not a lock name".to_owned()
                }
                Ok(_) => return Some((name.clone(), Entry::Lock(name))),
                Err(e) => format!("not examined: {e}"),
            };
            Some((name.clone(), Entry::Skipped { name, path, what }))
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found.into_iter().map(|(_, entry)| entry).collect())
}

/// What a `*.lock` entry of type `kind` is, when it is not a regular file.
fn not_a_lock_file(kind: FileType) -> String {
    let what = if kind.is_symlink() {
        "a symbolic link, which withlock does not follow"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    };
    format!("{what}, not a lock file")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inspect::list;
    use crate::lock::Lock;
    use crate::request::Mode;

    #[test]
    fn lists_lock_files_only_with_their_holders() {
        let dir = tempfile::tempdir().unwrap();
        let held = FileLock::named("held", Some(dir.path())).unwrap();
        let _guard = held.try_acquire().unwrap();
        drop(
            FileLock::named("free", Some(dir.path()))
                .unwrap()
                .try_acquire()
                .unwrap(),
        );
        std::fs::write(dir.path().join("notes.txt"), "").unwrap();
        std::fs::create_dir(dir.path().join("sub.lock")).unwrap();

        let all = list(dir.path(), &[]).unwrap();
        let names: Vec<&str> = all.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["free", "held", "sub"]);
        assert!(all[0].holders.is_empty());
        assert_eq!(all[0].found, Found::File);
        assert_eq!(all[1].holders.mode(), Some(Mode::Exclusive));
        assert_eq!(
            all[2].found,
            Found::Skipped("a directory, not a lock file".into())
        );
    }

    #[test]
    fn entries_withlock_would_not_lock_are_listed_as_skipped() {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link.lock")).unwrap();
        nix::unistd::mkfifo(
            &dir.path().join("pipe.lock"),
            nix::sys::stat::Mode::from_bits_truncate(0o600),
        )
        .unwrap();
        std::fs::write(dir.path().join("a b.lock"), "").unwrap();
        let all = list(dir.path(), &[]).unwrap();
        let found: Vec<(&str, &Found)> = all.iter().map(|s| (s.name.as_str(), &s.found)).collect();
        let skipped = |what: &str| Found::Skipped(what.into());
        assert_eq!(
            found,
            [
                ("a b", &skipped("a file whose name is not a lock name")),
                (
                    "link",
                    &skipped("a symbolic link, which withlock does not follow, not a lock file")
                ),
                ("pipe", &skipped("a FIFO, not a lock file")),
            ]
        );
        let named = list(dir.path(), &["pipe".into()]).unwrap();
        assert_eq!(named[0].found, skipped("a FIFO, not a lock file"));
    }

    #[test]
    fn a_lock_can_be_named_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("by-path.lock");
        let held = FileLock::at_path(&path).unwrap();
        let _guard = held.try_acquire().unwrap();
        let spec = path.to_str().unwrap().to_owned();
        let one = list(Path::new("/nonexistent"), std::slice::from_ref(&spec)).unwrap();
        assert_eq!(
            (one[0].name.as_str(), one[0].holders.holders.len()),
            (spec.as_str(), 1)
        );
    }

    #[test]
    fn a_named_lock_that_does_not_exist_is_free_and_found_to_be_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let one = list(dir.path(), &["nothing".into()]).unwrap();
        assert!(one[0].holders.is_empty());
        assert_eq!(one[0].found, Found::Nothing);
        assert!(!one[0].path.exists(), "inspection creates nothing");
    }
}
