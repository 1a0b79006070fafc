//! Opening a lock file inside a lock directory without trusting the directory.
//!
//! Linux only. The rules, each guarding against a known attack on lock files
//! in shared directories such as `/run/lock` or `/tmp`:
//! - an existing file is opened without `O_CREAT`: under
//!   `fs.protected_regular` an `O_CREAT` open of another user's file in a
//!   sticky directory fails even for root, and a plain open does not. It is
//!   opened read-write, which the arrival queue's write locks need (see
//!   [`crate::file::queue`]; nothing is written), or read-only where this user may
//!   not write it (a 0644 file made by flock(1)) or the file system is
//!   read-only: such a lock is then taken unordered;
//! - every open uses `O_NOFOLLOW`, so a symlink planted at the lock path is
//!   never followed (one that another user owns is named with its owner), and `O_NONBLOCK`, so a FIFO planted there cannot block;
//! - the type is checked with `fstatat(AT_SYMLINK_NOFOLLOW)` before opening
//!   (a device is never opened) and with `fstat` after (in case it was swapped);
//! - a new file is created with `O_CREAT | O_EXCL` and made mode 0666 with
//!   `fchmod` on its descriptor, never by path, so any user can lock it
//!   whatever the creator's umask;
//! - nothing is ever written to, truncated in or chmod-ed on a file that this
//!   call did not create.

use std::os::fd::OwnedFd;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat};

use crate::error::{Error, Result};
use crate::file::lock_dir::LockDir;
use crate::fork_child;
use crate::ownership;

/// The mode of every lock file withlock creates: anyone may open it to lock.
pub const LOCK_FILE_MODE: u32 = 0o666;

/// How often a lock path may change under us before we give up.
pub(crate) const MAX_ATTEMPTS: u32 = 100;

/// Opens `<dir>/<file_name>` read-write (else read-only), creating it if
/// it does not exist; recorded for [`crate::fork_child`].
pub(crate) fn open_or_create(dir: &LockDir, file_name: &str) -> Result<OwnedFd> {
    fork_child::opening(|| open_or_create_here(dir, file_name))
}

fn open_or_create_here(dir: &LockDir, file_name: &str) -> Result<OwnedFd> {
    let path = dir.path().join(file_name);
    for _ in 0..MAX_ATTEMPTS {
        match fstatat(dir.fd(), file_name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => {
                refuse_non_regular(&path, &st)?;
                if let Some(fd) = open_existing(dir, file_name, &path)? {
                    return Ok(fd);
                }
            }
            Err(Errno::ENOENT) => {
                if let Some(fd) = create_new(dir, file_name, &path)? {
                    return Ok(fd);
                }
            }
            Err(Errno::EACCES) => return Err(dir_denied(dir, &path)),
            Err(errno) => return Err(Error::io(format!("stat {}", path.display()), errno)),
        }
    }
    Err(Error::KeepsChanging {
        path,
        attempts: MAX_ATTEMPTS,
    })
}

/// Opens an existing lock file; `None` when it vanished meanwhile.
fn open_existing(dir: &LockDir, file_name: &str, path: &Path) -> Result<Option<OwnedFd>> {
    let flags = OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let opened = match openat(dir.fd(), file_name, flags | OFlag::O_RDWR, Mode::empty()) {
        // Not writable by this user, or a read-only file system: lock it
        // unordered, as flock(1) does.
        Err(Errno::EACCES | Errno::EPERM | Errno::EROFS | Errno::ETXTBSY) => {
            openat(dir.fd(), file_name, flags | OFlag::O_RDONLY, Mode::empty())
        }
        other => other,
    };
    match opened {
        Ok(fd) => {
            let st = fstat(&fd).map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
            refuse_non_regular(path, &st)?;
            Ok(Some(fd))
        }
        Err(Errno::ENOENT) => Ok(None),
        Err(Errno::ELOOP) => Err(Error::NotRegularFile {
            path: path.to_owned(),
            kind: "symbolic link",
        }),
        Err(Errno::ENXIO) => Err(Error::NotRegularFile {
            path: path.to_owned(),
            kind: "socket",
        }),
        Err(Errno::EACCES) => Err(file_denied(dir, file_name, path)),
        Err(errno) => Err(Error::io(format!("open {}", path.display()), errno)),
    }
}

/// Creates a new lock file; `None` when another process created it first.
fn create_new(dir: &LockDir, file_name: &str, path: &Path) -> Result<Option<OwnedFd>> {
    let flags = OFlag::O_RDWR
        | OFlag::O_CREAT
        | OFlag::O_EXCL
        | OFlag::O_NOFOLLOW
        | OFlag::O_NOCTTY
        | OFlag::O_CLOEXEC;
    match openat(
        dir.fd(),
        file_name,
        flags,
        Mode::from_bits_truncate(LOCK_FILE_MODE),
    ) {
        Ok(fd) => {
            // The umask narrowed the mode; widen it through the descriptor,
            // which can only name the file this call created.
            fchmod(&fd, Mode::from_bits_truncate(LOCK_FILE_MODE))
                .map_err(|e| Error::io(format!("chmod new lock file {}", path.display()), e))?;
            Ok(Some(fd))
        }
        Err(Errno::EEXIST) => Ok(None),
        Err(Errno::EACCES) => Err(dir_denied(dir, path)),
        Err(Errno::EROFS) => Err(Error::UnusableDir {
            dir: dir.path().to_owned(),
            reason: "is on a read-only file system: choose a writable directory with --dir".into(),
        }),
        Err(errno) => Err(Error::io(format!("create {}", path.display()), errno)),
    }
}

fn refuse_non_regular(path: &Path, st: &FileStat) -> Result<()> {
    let kind = match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFREG => return Ok(()),
        SFlag::S_IFLNK if !ownership::is_trusted(st.st_uid) => {
            return Err(Error::ForeignSymlink {
                link: path.to_owned(),
                owner: ownership::user_name(st.st_uid),
                fix: "remove it, or choose another lock name".into(),
            });
        }
        SFlag::S_IFLNK => "symbolic link",
        SFlag::S_IFIFO => "FIFO",
        SFlag::S_IFSOCK => "socket",
        SFlag::S_IFCHR => "character device",
        SFlag::S_IFBLK => "block device",
        SFlag::S_IFDIR => "directory",
        _ => "special file",
    };
    Err(Error::NotRegularFile {
        path: path.to_owned(),
        kind,
    })
}

fn file_denied(dir: &LockDir, file_name: &str, path: &Path) -> Error {
    let detail = match fstatat(dir.fd(), file_name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => format!(
            "the lock file is {}; ask its owner or root to run chmod a+r on it",
            ownership::describe(&st)
        ),
        Err(_) => "it cannot be read by this user".into(),
    };
    Error::PermissionDenied {
        path: path.to_owned(),
        detail,
    }
}

fn dir_denied(dir: &LockDir, path: &Path) -> Error {
    let detail = match fstat(dir.fd()) {
        Ok(st) => format!(
            "the lock directory {} is {}, so this user cannot create lock files in it; \
             choose another with --dir",
            dir.path().display(),
            ownership::describe(&st)
        ),
        Err(_) => "this user cannot create lock files in the lock directory".into(),
    };
    Error::PermissionDenied {
        path: path.to_owned(),
        detail,
    }
}

/// True when `<dir>/<file_name>` is still the file open as `fd`.
pub(crate) fn still_at_path(dir: &LockDir, file_name: &str, fd: &OwnedFd) -> Result<bool> {
    let ours = fstat(fd).map_err(|e| Error::io(format!("stat lock file {file_name}"), e))?;
    if ours.st_nlink == 0 {
        return Ok(false);
    }
    match fstatat(dir.fd(), file_name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(now) => Ok(now.st_dev == ours.st_dev && now.st_ino == ours.st_ino),
        Err(Errno::ENOENT) => Ok(false),
        Err(e) => Err(Error::io(format!("stat lock file {file_name}"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn lock_dir() -> (tempfile::TempDir, LockDir) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = LockDir::open(tmp.path()).unwrap();
        (tmp, dir)
    }

    #[test]
    fn creates_mode_0666_whatever_the_umask() {
        let (tmp, dir) = lock_dir();
        let old = nix::sys::stat::umask(Mode::from_bits_truncate(0o077));
        let opened = open_or_create(&dir, "a.lock");
        nix::sys::stat::umask(old);
        opened.unwrap();
        let meta = std::fs::metadata(tmp.path().join("a.lock")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o666);
    }

    #[test]
    fn opens_an_existing_file_without_changing_it() {
        let (tmp, dir) = lock_dir();
        let path = tmp.path().join("b.lock");
        std::fs::write(&path, "keep me").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let before = std::fs::metadata(&path).unwrap();
        open_or_create(&dir, "b.lock").unwrap();
        let after = std::fs::metadata(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
        assert_eq!(after.mode(), before.mode());
        assert_eq!(after.ino(), before.ino());
    }

    #[test]
    fn refuses_symlink_fifo_and_directory() {
        let (tmp, dir) = lock_dir();
        let target = tmp.path().join("victim");
        std::fs::write(&target, "precious").unwrap();
        std::os::unix::fs::symlink(&target, tmp.path().join("link.lock")).unwrap();
        nix::unistd::mkfifo(
            &tmp.path().join("fifo.lock"),
            Mode::from_bits_truncate(0o666),
        )
        .unwrap();
        std::fs::create_dir(tmp.path().join("dir.lock")).unwrap();
        for (name, kind) in [
            ("link.lock", "symbolic link"),
            ("fifo.lock", "FIFO"),
            ("dir.lock", "directory"),
        ] {
            match open_or_create(&dir, name) {
                Err(Error::NotRegularFile { kind: got, .. }) => assert_eq!(got, kind),
                other => panic!("{name}: {other:?}"),
            }
        }
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "precious");
    }
}
