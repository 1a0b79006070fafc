//! Looking at the locks in a directory without taking them.
//!
//! Linux only. Every `*.lock` regular file in the directory is a lock; its
//! holders and waiters come from `/proc/locks` (see [`crate::Holders`]).
//! Nothing is opened for locking and nothing is created.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::file_lock::FileLock;
use crate::holder::Holders;
use crate::lock::Lock;
use crate::name::LOCK_FILE_SUFFIX;
use crate::socket_lock::SocketLock;
use crate::socket_spec::SocketAddress;

/// One lock and who holds and waits for it.
#[derive(Debug, Clone)]
pub struct LockStatus {
    /// The lock's name (its file name without `.lock`).
    pub name: String,
    /// The lock file (for a socket lock, its socket file or spec); empty
    /// for a lock on a server.
    pub path: PathBuf,
    /// For a lock on a PostgreSQL server, the server as `host:port/dbname`;
    /// `None` for a lock on this machine.
    pub server: Option<String>,
    /// Its holders and waiters.
    pub holders: Holders,
}

/// The status of the named locks in `dir` (a name with '/' is a lock file
/// path and `tcp:`, `unix:`, `abstract:` specs are socket locks, as
/// everywhere), or of every lock file there when `names` is empty.
pub fn list(dir: &Path, names: &[String]) -> Result<Vec<LockStatus>> {
    let names = if names.is_empty() {
        lock_names(dir)?
    } else {
        names.to_vec()
    };
    names
        .iter()
        .map(|name| {
            if let Some(address) = SocketAddress::parse(name) {
                return socket_status(name, address?);
            }
            let lock = FileLock::parse(name, Some(dir))?;
            Ok(LockStatus {
                name: lock.label().to_owned(),
                path: lock.path(),
                server: None,
                holders: lock.holders()?,
            })
        })
        .collect()
}

/// A socket lock named on the command line; its path is the socket file,
/// or for `tcp:` and `abstract:` the spec itself.
fn socket_status(name: &str, address: SocketAddress) -> Result<LockStatus> {
    let path = match &address {
        SocketAddress::Unix(path) => path.clone(),
        _ => PathBuf::from(name),
    };
    let lock = SocketLock::new(address).labelled(name);
    Ok(LockStatus {
        name: name.to_owned(),
        path,
        server: None,
        holders: lock.holders()?,
    })
}

/// The names of the lock files in `dir`.
fn lock_names(dir: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => Error::PermissionDenied {
            path: dir.to_owned(),
            detail: "this user may not list the lock directory; name the locks to look up".into(),
        },
        _ => Error::io(format!("list {}", dir.display()), e),
    })?;
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|entry| {
            let file_name = entry.file_name().into_string().ok()?;
            let name = file_name.strip_suffix(LOCK_FILE_SUFFIX)?;
            crate::name::LockName::new(name)
                .ok()
                .map(|n| n.as_str().to_owned())
        })
        .collect();
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;
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
        assert_eq!(names, ["free", "held"]);
        assert!(all[0].holders.is_empty());
        assert_eq!(all[1].holders.mode(), Some(Mode::Exclusive));
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
    fn a_named_lock_that_does_not_exist_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let one = list(dir.path(), &["nothing".into()]).unwrap();
        assert!(one[0].holders.is_empty());
        assert!(!one[0].path.exists(), "inspection creates nothing");
    }
}
