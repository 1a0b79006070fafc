//! The directory that holds named lock files: its default, and the check that
//! nobody else can swap lock files in it.
//!
//! Linux only. The default is `/run/lock`, the FHS directory for lock files:
//! it exists on every systemd and sysvinit distribution, is world-writable
//! with the sticky bit (so every user, root included, can create a lock file
//! there and nobody can delete another user's), is not per-service private
//! the way `/tmp` is under systemd's `PrivateTmp=`, and is never aged by
//! tmpfiles cleaning, which could otherwise delete a held lock file. Where it
//! is missing (some containers) the fallback is `/tmp`.
//!
//! A directory is refused when another unprivileged user could replace a
//! lock file in it: when it, or any directory above it, is writable by group
//! or others without the sticky bit, or is owned by a user who is neither
//! root nor the caller.
//!
//! A path without symbolic links is opened with `openat2(RESOLVE_NO_SYMLINKS)`.
//! Any other is resolved here, one component at a time with `O_NOFOLLOW`,
//! never by the kernel following a symbolic link: a link on the way is
//! followed only if root or the caller owns it, checked on the link's own
//! descriptor. A link owned by anybody else (one planted in a sticky `/tmp`,
//! say) could be pointed anywhere by its owner, so it is refused whatever
//! `fs.protected_symlinks` says (with 1, the kernel would refuse to follow
//! it for root too, with a bare `EACCES`).

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag, OpenHow, ResolveFlag, openat, openat2, readlinkat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, stat};
use nix::unistd::geteuid;

use crate::error::{Error, Result};
use crate::ownership;

/// The preferred default lock directory.
pub const DEFAULT_DIR: &str = "/run/lock";
/// The default when [`DEFAULT_DIR`] does not exist.
pub const FALLBACK_DIR: &str = "/tmp";

/// The directory named locks live in when none is given.
pub fn default_dir() -> PathBuf {
    if Path::new(DEFAULT_DIR).is_dir() {
        PathBuf::from(DEFAULT_DIR)
    } else {
        PathBuf::from(FALLBACK_DIR)
    }
}

/// An open, checked lock directory. Lock files are opened relative to its
/// descriptor, so a rename of the path after the check changes nothing.
#[derive(Debug)]
pub struct LockDir {
    path: PathBuf,
    fd: OwnedFd,
}

impl LockDir {
    /// Opens `path` and refuses it unless it is a directory that no other
    /// unprivileged user can swap files in.
    pub fn open(path: &Path) -> Result<LockDir> {
        let fd = open_resolved(path)?;
        let dir = LockDir {
            path: path.to_owned(),
            fd,
        };
        let st = fstat(&dir.fd).map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
        check_safe(path, &st, geteuid().as_raw())?;
        dir.check_ancestors()?;
        Ok(dir)
    }

    /// The path the directory was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open directory, for `openat`.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Checks every directory above this one: whoever may rename or
    /// replace an entry in a parent may swap the whole lock directory. Both
    /// routes count: the path as given (a symlink in it lives in a parent
    /// that must be safe too) and the directory actually opened, resolved
    /// through its descriptor so that a swap after the open cannot hide it.
    fn check_ancestors(&self) -> Result<()> {
        let opened = std::fs::read_link(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
            .or_else(|_| std::fs::canonicalize(&self.path))
            .map_err(|e| Error::io(format!("resolve {}", self.path.display()), e))?;
        let given = std::path::absolute(&self.path)
            .map_err(|e| Error::io(format!("resolve {}", self.path.display()), e))?;
        let euid = geteuid().as_raw();
        let mut parents: Vec<&Path> = opened.ancestors().skip(1).collect();
        // The two routes mostly share their upper part: stat each directory once.
        for parent in given.ancestors().skip(1) {
            if !parents.contains(&parent) {
                parents.push(parent);
            }
        }
        for ancestor in parents {
            let st =
                stat(ancestor).map_err(|e| Error::io(format!("stat {}", ancestor.display()), e))?;
            check_safe(ancestor, &st, euid).map_err(|err| match err {
                Error::UnsafeDir { dir, reason } => Error::UnsafeDir {
                    dir: self.path.clone(),
                    reason: format!("its parent {}: {reason}", dir.display()),
                },
                other => other,
            })?;
        }
        Ok(())
    }
}

/// The most symbolic links followed in one path, as the kernel's MAXSYMLINKS.
const MAX_SYMLINKS: u32 = 40;

/// Opens the directory at `path` as the module docs say: component by
/// component, following only the symbolic links that root or the caller owns.
fn open_resolved(path: &Path) -> Result<OwnedFd> {
    // Most paths hold no symbolic link: one openat2(2) that refuses any
    // does. Any failure (a link, an error, a kernel before 5.6) takes the
    // walk, which says what is wrong.
    let direct = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
    if let Ok(fd) = openat2(AT_FDCWD, path, direct) {
        return Ok(fd);
    }
    let step = |errno| open_error(path, errno);
    if path.as_os_str().is_empty() {
        // As open(2) says: an empty path is not the current directory.
        return Err(step(Errno::ENOENT));
    }
    let mut rest = VecDeque::new();
    let start = if path.is_absolute() { "/" } else { "." };
    let mut current = open_path(AT_FDCWD, OsStr::new(start)).map_err(step)?;
    push_front(&mut rest, path);
    let mut links = 0;
    while let Some(name) = rest.pop_front() {
        let next = open_path(current.as_fd(), &name).map_err(step)?;
        let st = fstat(&next).map_err(step)?;
        match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFDIR => current = next,
            SFlag::S_IFLNK => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(step(Errno::ELOOP));
                }
                if !ownership::is_trusted(st.st_uid) {
                    return Err(Error::ForeignSymlink {
                        link: shown_path(current.as_fd(), &name, path),
                        owner: ownership::user_name(st.st_uid),
                        fix: "point --dir (or WITHLOCK_DIR, or the lock path) at the real \
                              directory instead"
                            .into(),
                    });
                }
                // The link's own descriptor: its target is read from the
                // very link whose owner was checked.
                let target = readlinkat(&next, "").map_err(step)?;
                let target = Path::new(&target);
                if target.is_absolute() {
                    current = open_path(AT_FDCWD, OsStr::new("/")).map_err(step)?;
                }
                push_front(&mut rest, target);
            }
            _ => return Err(step(Errno::ENOTDIR)),
        }
    }
    openat(
        &current,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(step)
}

/// Opens one component without following it, as a handle that needs no
/// read permission: a directory to go on from, or a symbolic link itself.
fn open_path(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<OwnedFd> {
    openat(
        dir,
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// Queues the components of `path` to be resolved before the rest; `/` is
/// left out (the caller restarts from the root) and so is `.`.
fn push_front(rest: &mut VecDeque<OsString>, path: &Path) {
    use std::path::Component;
    let names = path.components().filter_map(|c| match c {
        Component::Normal(name) => Some(name.to_owned()),
        Component::ParentDir => Some(OsString::from("..")),
        Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
    });
    for (index, name) in names.collect::<Vec<_>>().into_iter().enumerate() {
        rest.insert(index, name);
    }
}

/// Where the entry `name` of the open directory `dir` is, for a message:
/// the directory's real path, else the path as given.
fn shown_path(dir: BorrowedFd<'_>, name: &OsStr, given: &Path) -> PathBuf {
    std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd()))
        .map(|real| real.join(name))
        .unwrap_or_else(|_| given.to_owned())
}

/// Why the lock directory `path` could not be opened (or listed), and
/// what to do about it.
pub(crate) fn open_error(path: &Path, errno: Errno) -> Error {
    let unusable = |reason: String| Error::UnusableDir {
        dir: path.to_owned(),
        reason,
    };
    match errno {
        Errno::ENOENT => unusable(format!(
            "does not exist: create it (mkdir -p {}) or choose another with --dir",
            path.display()
        )),
        Errno::ENOTDIR => unusable("is not a directory: choose a directory with --dir".into()),
        Errno::EACCES => Error::PermissionDenied {
            path: path.to_owned(),
            detail: match stat(path) {
                Ok(st) => format!(
                    "the directory is {}; choose a directory you can search with --dir",
                    ownership::describe(&st)
                ),
                Err(_) => {
                    "a directory above it cannot be searched; choose another with --dir".into()
                }
            },
        },
        other => Error::io(format!("open lock directory {}", path.display()), other),
    }
}

/// Refuses a directory whose entries another unprivileged user could replace.
fn check_safe(dir: &Path, st: &FileStat, euid: u32) -> Result<()> {
    let mode = st.st_mode & 0o7777;
    let unsafe_dir = |reason: String| Error::UnsafeDir {
        dir: dir.to_owned(),
        reason,
    };
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(unsafe_dir(format!(
            "it is writable by {} without the sticky bit (mode {mode:04o}), so another user \
             could replace lock files; run chmod +t {} or use another directory",
            if mode & 0o002 != 0 {
                "everyone"
            } else {
                "its group"
            },
            quote(dir.as_os_str()),
        )));
    }
    if st.st_uid != 0 && st.st_uid != euid {
        return Err(unsafe_dir(format!(
            "it is owned by {}, who could replace lock files; use a directory owned by \
             root or by you",
            ownership::user_name(st.st_uid)
        )));
    }
    Ok(())
}

fn quote(path: &OsStr) -> String {
    let text = String::from_utf8_lossy(path.as_bytes());
    let plain = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c));
    if plain {
        text.into_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir_with_mode(mode: u32) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(mode)).unwrap();
        dir
    }

    #[test]
    fn accepts_a_private_directory_and_a_sticky_shared_one() {
        for mode in [0o700, 0o755, 0o1777, 0o1775] {
            let dir = dir_with_mode(mode);
            LockDir::open(dir.path()).unwrap_or_else(|e| panic!("{mode:o}: {e}"));
        }
    }

    #[test]
    fn refuses_writable_by_others_without_sticky_bit() {
        for mode in [0o777, 0o775, 0o757] {
            let dir = dir_with_mode(mode);
            let err = LockDir::open(dir.path()).unwrap_err();
            assert!(matches!(err, Error::UnsafeDir { .. }), "{mode:o}: {err}");
            assert!(err.to_string().contains("chmod +t"), "{err}");
        }
    }

    #[test]
    fn refuses_a_directory_below_an_unsafe_one() {
        let outer = dir_with_mode(0o777);
        let inner = outer.path().join("locks");
        std::fs::create_dir(&inner).unwrap();
        let err = LockDir::open(&inner).unwrap_err();
        assert!(err.to_string().contains("its parent"), "{err}");
    }

    #[test]
    fn refuses_a_symlink_that_lives_in_an_unsafe_directory() {
        let outer = dir_with_mode(0o755);
        let wide = outer.path().join("wide");
        let safe = outer.path().join("safe");
        std::fs::create_dir(&wide).unwrap();
        std::fs::create_dir(&safe).unwrap();
        std::fs::set_permissions(&wide, std::fs::Permissions::from_mode(0o777)).unwrap();
        let link = wide.join("link");
        std::os::unix::fs::symlink(&safe, &link).unwrap();
        LockDir::open(&safe).unwrap();
        let err = LockDir::open(&link).unwrap_err();
        assert!(err.to_string().contains("its parent"), "{err}");
    }

    #[test]
    fn follows_the_callers_own_links_as_the_kernel_would() {
        let outer = dir_with_mode(0o755);
        let base = outer.path();
        std::fs::create_dir_all(base.join("real/inner")).unwrap();
        std::os::unix::fs::symlink(base.join("real"), base.join("absolute")).unwrap();
        std::os::unix::fs::symlink("real/inner", base.join("relative")).unwrap();
        std::os::unix::fs::symlink("relative", base.join("chain")).unwrap();
        std::os::unix::fs::symlink("loop", base.join("loop")).unwrap();
        let real = std::fs::canonicalize(base.join("real")).unwrap();
        for (given, expected) in [
            ("absolute", real.clone()),
            ("absolute/inner", real.join("inner")),
            ("chain", real.join("inner")),
            ("chain/..", real.clone()),
            ("./relative/../inner/.", real.join("inner")),
        ] {
            let dir = LockDir::open(&base.join(given)).unwrap_or_else(|e| panic!("{given}: {e}"));
            let opened = std::fs::read_link(format!("/proc/self/fd/{}", dir.fd.as_raw_fd()));
            assert_eq!(opened.unwrap(), expected, "{given}");
        }
        let err = LockDir::open(&base.join("loop")).unwrap_err();
        assert!(err.to_string().contains("symbolic links"), "{err}");
        let err = LockDir::open(Path::new("")).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn missing_directory_says_how_to_create_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = LockDir::open(&dir.path().join("nope")).unwrap_err();
        assert!(matches!(err, Error::UnusableDir { .. }));
        assert!(err.to_string().contains("mkdir -p"), "{err}");
    }

    #[test]
    fn a_file_is_not_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "").unwrap();
        let err = LockDir::open(&file).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }
}
