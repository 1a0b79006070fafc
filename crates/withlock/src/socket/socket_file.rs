//! A `unix:` lock's socket file: putting a listening socket at the path,
//! replacing a stale one under the takeover lock, and removing the
//! holder's own at release (Linux). The protocol keeps one rule: *the path
//! only ever names a socket that listens*, from its first instant until
//! its holder lets go; after that, only a crashed holder's socket is left
//! there.
//!
//! - **Taking a free path.** The new holder binds a socket under a
//!   temporary name in the same directory (`.withlock-new-<pid>-<n>`,
//!   bound through `/proc/self/fd/<dir>` so a long directory still fits a
//!   socket address), listens, makes it mode 0666 (other users wait by
//!   connecting, which needs write permission), then link(2)s it to the
//!   path and unlinks the temporary name. link(2) is atomic and fails with
//!   `EEXIST` if the path is taken: of two racers one links, the other
//!   connects to it. No lock file is involved.
//! - **Release** unlinks the holder's own socket file, checked by device
//!   and inode, while it still listens, and only then stops listening.
//!   Nobody removes a socket that listens, so until that unlink the path
//!   still names the holder's socket.
//! - **Stale files.** A socket file whose connect() gives `ECONNREFUSED`
//!   was left by a holder that died (or by a program that binds the path
//!   itself without listening). Removing it needs mutual exclusion among
//!   removers (two that saw the same stale file must not remove the socket
//!   the first one links in its place), so it happens under flock(2) on a
//!   sidecar `PATH.takeover` (created like a lock file, in a directory
//!   that passes the same checks): lock it, check the path still names the
//!   locked sidecar (as for lock files), check the path still names the
//!   same socket and that it still refuses connections, unlink it, then
//!   unlink the sidecar while still holding it, so takeover files do not
//!   pile up. The wait for the sidecar obeys the request: `-n` does not
//!   wait at all, `-w` until its deadline; then the request fails as busy,
//!   naming whoever holds the sidecar (from `/proc/locks`;
//!   [`Lock::holders`](crate::Lock::holders), and so the waiting line and
//!   `--list`, name them as the holders of a stale path). Anyone who can
//!   open the sidecar can hold it, so another user can keep a *stale* file
//!   from being replaced, for as long as the request allows, named; they
//!   cannot delay a request on a free or held path, nor a holder's
//!   release, which never take it.
//! - The path is checked with lstat: a symbolic link or anything but a
//!   socket is refused and never followed. A crash in the instant between
//!   bind and the unlink of the temporary name leaves that name behind (a
//!   socket nobody listens on).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::socket::{self, Backlog, UnixAddr};
use nix::sys::stat::{FchmodatFlags, FileStat, SFlag, fchmodat, fstat, fstatat};
use nix::unistd::{UnlinkatFlags, linkat, unlinkat};

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::file::lock_dir::LockDir;
use crate::file::lock_file::{self, still_at_path};
use crate::flock_wait::{self, Outcome};
use crate::holder::Holders;
use crate::lock::WaitHooks;
use crate::ownership;
use crate::request::Mode;
use crate::socket::sockaddr::Sockaddr;

/// The suffix of the sidecar lock file that serialises changes to a socket path.
pub const TAKEOVER_SUFFIX: &str = ".takeover";
/// The start of the temporary name a new socket listens under before it
/// is linked to its path.
const TEMP_PREFIX: &str = ".withlock-new-";
/// Mode of a new socket file: every user may connect, that is wait.
const SOCKET_FILE_MODE: u32 = 0o666;

/// Why a request stops instead of replacing a stale socket file.
pub(crate) enum Stop {
    /// The wait for the takeover lock was stopped by the caller's hooks.
    Interrupted,
    /// The takeover lock is held by these processes, past the request's
    /// deadline.
    Stuck(Holders),
}

/// A `unix:` lock's socket file and the directory it lives in.
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    dir: LockDir,
    name: String,
    /// The lock's spec as given, for messages.
    label: String,
}

impl SocketFile {
    /// The socket file at `path`, of the lock named `label` in messages.
    pub(crate) fn of(path: &Path, label: &str) -> Result<SocketFile> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| *n != "." && *n != "..")
            .ok_or_else(|| Error::InvalidName {
                name: format!("unix:{}", path.display()),
                reason: "a socket path must end in a UTF-8 file name",
            })?;
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        Ok(SocketFile {
            path: path.to_owned(),
            dir: LockDir::open(dir)?,
            name: name.to_owned(),
            label: label.to_owned(),
        })
    }

    /// The path of the socket file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, what: &str, e: Errno) -> Error {
        Error::io(format!("{what} {}", self.label), e)
    }

    /// Who holds (and waits for) the takeover lock, from `/proc/locks`.
    pub(crate) fn takeover_holders(&self) -> Holders {
        let name = format!("{}{TAKEOVER_SUFFIX}", self.name);
        match fstatat(self.dir.fd(), name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Holders::of_file(&st),
            Err(_) => Holders::default(),
        }
    }

    /// Refuses anything at the path but a socket, never following it.
    pub(crate) fn refuse_non_socket(&self, st: &FileStat) -> Result<()> {
        match file_kind(st) {
            "socket" => Ok(()),
            kind => Err(Error::NotSocket {
                path: self.path.clone(),
                kind,
            }),
        }
    }

    /// Binds and listens on a new socket under a temporary name beside
    /// the path, then links it to the path: the path never names a socket
    /// that does not listen yet. `None` when another socket got the path
    /// first.
    pub(crate) fn create(&self) -> Result<Option<(OwnedFd, FileStat)>> {
        let (fd, temp) = self.listen_beside()?;
        let _ = fchmodat(
            self.dir.fd(),
            temp.as_str(),
            nix::sys::stat::Mode::from_bits_truncate(SOCKET_FILE_MODE),
            FchmodatFlags::NoFollowSymlink,
        );
        let st = fstatat(self.dir.fd(), temp.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW);
        let linked = st.and_then(|_| {
            linkat(
                self.dir.fd(),
                temp.as_str(),
                self.dir.fd(),
                self.name.as_str(),
                AtFlags::empty(),
            )
        });
        let _ = unlinkat(self.dir.fd(), temp.as_str(), UnlinkatFlags::NoRemoveDir);
        match linked {
            Ok(()) => {}
            Err(Errno::EEXIST) => return Ok(None),
            Err(Errno::EACCES | Errno::EPERM) => return Err(self.denied("create")),
            Err(e) => return Err(self.io("create", e)),
        }
        Ok(Some((fd, st.map_err(|e| self.io("stat", e))?)))
    }

    fn denied(&self, what: &str) -> Error {
        denied(&self.label, &self.path, what)
    }

    /// A socket listening under a fresh temporary name in the socket's
    /// directory (bound through `/proc/self/fd`, so a long directory path
    /// still fits a socket address), and that name.
    fn listen_beside(&self) -> Result<(OwnedFd, String)> {
        static SERIAL: AtomicU32 = AtomicU32::new(0);
        let via_fd = PathBuf::from(format!("/proc/self/fd/{}", self.dir.fd().as_raw_fd()));
        let base = if via_fd.is_dir() {
            via_fd
        } else {
            self.dir.path().to_owned()
        };
        for _ in 0..lock_file::MAX_ATTEMPTS {
            let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
            let temp = format!("{TEMP_PREFIX}{}-{serial}", std::process::id());
            let addr =
                Sockaddr::Unix(UnixAddr::new(&base.join(&temp)).map_err(|e| self.io("name", e))?);
            let fd = addr
                .socket()
                .map_err(|e| self.io("create a socket for", e))?;
            match socket::bind(fd.as_raw_fd(), addr.as_dyn()) {
                Ok(()) => {}
                // Left by a dead process that had our pid: take another name.
                Err(Errno::EADDRINUSE) => continue,
                Err(Errno::EACCES | Errno::EPERM) => return Err(self.denied("create")),
                Err(e) => return Err(self.io("bind", e)),
            }
            if let Err(e) = socket::listen(&fd, Backlog::MAXCONN) {
                let _ = unlinkat(self.dir.fd(), temp.as_str(), UnlinkatFlags::NoRemoveDir);
                return Err(self.io("listen on", e));
            }
            return Ok((fd, temp));
        }
        Err(Error::KeepsChanging {
            path: self.path.clone(),
            attempts: lock_file::MAX_ATTEMPTS,
        })
    }

    /// Removes the socket file `st`, found not listening, under the
    /// takeover lock (see the module docs), if `still_refused` says that a
    /// connection to it is still refused once that lock is held; `Some`
    /// when the request must stop instead: the takeover lock stayed held
    /// past its deadline, or `hooks` stopped the wait.
    pub(crate) fn remove_stale(
        &self,
        st: &FileStat,
        still_refused: &mut dyn FnMut() -> Result<bool>,
        deadline: Deadline,
        hooks: &mut dyn WaitHooks,
    ) -> Result<Option<Stop>> {
        let sidecar = match self.lock_takeover(deadline, hooks)? {
            Ok(sidecar) => sidecar,
            Err(stop) => return Ok(Some(stop)),
        };
        let result = self.remove_if_stale(st, still_refused);
        sidecar.remove();
        result.map(|()| None)
    }

    /// Under the takeover lock: removes `st` if the path still names it
    /// and it still does not listen.
    fn remove_if_stale(
        &self,
        st: &FileStat,
        still_refused: &mut dyn FnMut() -> Result<bool>,
    ) -> Result<()> {
        match self.stat()? {
            Some(now) if now.st_dev == st.st_dev && now.st_ino == st.st_ino => {}
            _ => return Ok(()),
        }
        // Whatever listens at the path is never removed: a program that
        // binds the path itself may have listened since.
        if !still_refused()? {
            return Ok(());
        }
        match unlinkat(
            self.dir.fd(),
            self.name.as_str(),
            UnlinkatFlags::NoRemoveDir,
        ) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(Errno::EACCES | Errno::EPERM) => Err(Error::PermissionDenied {
                path: self.path.clone(),
                detail: format!(
                    "{} was left by a holder that is gone, and this user may not remove it \
                     ({}); ask its owner or root to remove it",
                    self.label,
                    ownership::describe(st)
                ),
            }),
            Err(e) => Err(Error::io(
                format!("remove the stale socket {}", self.path.display()),
                e,
            )),
        }
    }

    /// Takes the takeover lock `PATH.takeover` within the request's
    /// deadline, as a lock file is taken: after locking, the path must
    /// still name the locked file. `Err` carries why the request stops.
    fn lock_takeover(
        &self,
        deadline: Deadline,
        hooks: &mut dyn WaitHooks,
    ) -> Result<std::result::Result<Sidecar<'_>, Stop>> {
        let name = format!("{}{TAKEOVER_SUFFIX}", self.name);
        let io = |e| Error::io(format!("lock {}{TAKEOVER_SUFFIX}", self.path.display()), e);
        for _ in 0..lock_file::MAX_ATTEMPTS {
            let fd = lock_file::open_or_create(&self.dir, &name)?;
            let outcome = flock_wait::try_lock(fd.as_fd(), Mode::Exclusive).map_err(io)?;
            let outcome = match outcome {
                Outcome::Busy if deadline.may_wait() => {
                    hooks.waiting();
                    let mut interrupted = || hooks.interrupted();
                    flock_wait::lock(
                        fd.as_fd(),
                        Mode::Exclusive,
                        deadline.end(),
                        &mut interrupted,
                    )
                    .map_err(io)?
                }
                outcome => outcome,
            };
            match outcome {
                Outcome::Locked => {}
                Outcome::Interrupted => return Ok(Err(Stop::Interrupted)),
                Outcome::Busy | Outcome::TimedOut => {
                    let holders =
                        fstat(&fd).map_or_else(|_| Holders::default(), |st| Holders::of_file(&st));
                    return Ok(Err(Stop::Stuck(holders)));
                }
            }
            if still_at_path(&self.dir, &name, &fd)? {
                return Ok(Ok(Sidecar {
                    file: self,
                    name,
                    fd,
                }));
            }
        }
        Err(Error::KeepsChanging {
            path: self.path.with_file_name(&name),
            attempts: lock_file::MAX_ATTEMPTS,
        })
    }

    /// What the path names now, without following it; `None` if nothing.
    pub(crate) fn stat(&self) -> Result<Option<FileStat>> {
        match fstatat(
            self.dir.fd(),
            self.name.as_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(Error::io(format!("stat {}", self.path.display()), e)),
        }
    }

    /// Unlinks the socket file if the path still names the socket `(dev,
    /// ino)`: a holder's own, at release.
    pub(crate) fn remove_own(&self, dev: u64, ino: u64) {
        if let Ok(Some(st)) = self.stat() {
            if st.st_dev == dev && st.st_ino == ino {
                let _ = unlinkat(
                    self.dir.fd(),
                    self.name.as_str(),
                    UnlinkatFlags::NoRemoveDir,
                );
            }
        }
    }
}

/// Refused permission to `what` (bind, connect to, create) the socket file
/// `path` of the lock `label`: names its owner, and the way out.
pub(crate) fn denied(label: &str, path: &Path, what: &str) -> Error {
    let owner = nix::sys::stat::lstat(path)
        .map(|st| format!("the socket is {}; ", ownership::describe(&st)))
        .unwrap_or_default();
    Error::PermissionDenied {
        path: PathBuf::from(label),
        detail: format!("{what}: {owner}ask its owner or root, or use another socket path"),
    }
}

/// The takeover lock, held. It is removed while held, so takeover files
/// do not pile up: whoever locked the old file finds the path no longer
/// names it, and opens a new one.
struct Sidecar<'a> {
    file: &'a SocketFile,
    name: String,
    fd: OwnedFd,
}

impl Sidecar<'_> {
    fn remove(self) {
        if still_at_path(&self.file.dir, &self.name, &self.fd).unwrap_or(false) {
            let _ = unlinkat(
                self.file.dir.fd(),
                self.name.as_str(),
                UnlinkatFlags::NoRemoveDir,
            );
        }
    }
}

/// What kind of file `st` is, as messages name it.
pub(crate) fn file_kind(st: &FileStat) -> &'static str {
    match SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFSOCK => "socket",
        SFlag::S_IFLNK => "symbolic link",
        SFlag::S_IFREG => "regular file",
        SFlag::S_IFDIR => "directory",
        SFlag::S_IFIFO => "FIFO",
        SFlag::S_IFCHR => "character device",
        SFlag::S_IFBLK => "block device",
        _ => "special file",
    }
}
