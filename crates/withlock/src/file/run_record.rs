//! The record of a lock file's last successful run, for `--once-per`: a
//! small file beside the lock file, `<lock file>.last-success`, holding
//! the time that run took the lock, in microseconds since the Unix epoch.
//!
//! Linux only. The lock file itself is never written, so the record is a
//! file of its own in the same checked lock directory
//! ([`crate::file::lock_dir`]), read and written only while the lock is
//! held exclusively, and only through the directory's descriptor:
//!
//! - **Reading** opens it with `O_NOFOLLOW | O_NONBLOCK` and without
//!   `O_CREAT` (a symbolic link or a FIFO planted there is never followed
//!   or waited on, and `fs.protected_regular` does not apply), then checks
//!   with `fstat` that it is a regular file owned by root or this user and
//!   writable by nobody else: a record another user could write, or wrote,
//!   is not believed, and the run is refused (77) rather than skipped or
//!   run on another user's word. Such a file can only be planted where the
//!   lock directory lets others create files (a sticky directory such as
//!   `/run/lock`), where the same user could plant an unusable lock file.
//! - **Writing** creates a new file of a name of its own
//!   (`.<record>.<pid>.<n>`, `O_CREAT | O_EXCL | O_NOFOLLOW`, mode 0644
//!   set with `fchmod` whatever the umask), writes and `fsync`s it, then
//!   `renameat`s it over the record, so a reader sees the old record or
//!   the new one, never a part. In a sticky directory the kernel refuses
//!   to replace another user's file, so nobody's record is overwritten by
//!   another user. A failed write removes its new file.
//!
//! A record in the future (the clock was set back) counts as just made:
//! the window then runs from the clock's new now, never twice in one.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat};
use nix::unistd::unlinkat;

use crate::error::{Error, Result};
use crate::file::lock_dir::LockDir;
use crate::ownership;
use crate::run_record::LastSuccess;

/// What the record's name adds to the lock file's.
const SUFFIX: &str = ".last-success";
/// The record's mode: its owner writes, everyone reads.
const RECORD_MODE: u32 = 0o644;
/// A record is one number and a newline; anything longer is not one.
const MAX_LEN: usize = 64;

/// The record beside the lock file at `lock_path`.
pub(crate) struct RunRecord {
    dir: PathBuf,
    name: String,
}

impl RunRecord {
    /// The record of the lock file at `lock_path`.
    pub(crate) fn of(lock_path: &Path) -> RunRecord {
        let dir = lock_path.parent().unwrap_or(Path::new("/")).to_owned();
        let lock_name = lock_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        RunRecord {
            dir,
            name: format!("{lock_name}{SUFFIX}"),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }

    /// The last successful run, if one was recorded.
    pub(crate) fn read(&self) -> Result<Option<LastSuccess>> {
        let dir = LockDir::open(&self.dir)?;
        let path = self.path();
        let flags = OFlag::O_RDONLY
            | OFlag::O_NOFOLLOW
            | OFlag::O_NONBLOCK
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC;
        let fd = match openat(dir.fd(), self.name.as_str(), flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(None),
            Err(Errno::ELOOP) => return Err(not_regular(&path, "symbolic link")),
            Err(Errno::ENXIO) => return Err(not_regular(&path, "socket")),
            Err(Errno::EACCES) => return Err(untrusted(&path, None)),
            Err(errno) => return Err(Error::io(format!("open {}", path.display()), errno)),
        };
        let st = fstat(&fd).map_err(|e| Error::io(format!("stat {}", path.display()), e))?;
        check(&path, &st)?;
        let mut text = Vec::with_capacity(MAX_LEN);
        std::fs::File::from(fd)
            .take(MAX_LEN as u64 + 1)
            .read_to_end(&mut text)
            .map_err(|e| Error::io(format!("read {}", path.display()), e))?;
        let at = decode(&text).ok_or_else(|| Error::NotRegularFile {
            path: path.clone(),
            kind: "file that is no withlock record (remove it)",
        })?;
        let ago = SystemTime::now()
            .duration_since(at)
            .unwrap_or(Duration::ZERO);
        Ok(Some(LastSuccess { at, ago }))
    }

    /// Records a successful run that took the lock at `started`.
    pub(crate) fn write(&self, started: SystemTime) -> Result<()> {
        let dir = LockDir::open(&self.dir)?;
        let micros = started
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros();
        let (fd, temp) = self.create_temp(&dir)?;
        let written = write_all(&fd, format!("{micros}\n").as_bytes())
            .map_err(|e| Error::io(format!("write {}", self.dir.join(&temp).display()), e))
            .and_then(|()| {
                renameat(dir.fd(), temp.as_str(), dir.fd(), self.name.as_str())
                    .map_err(|e| self.rename_error(e))
            });
        if written.is_err() {
            let _ = unlinkat(
                dir.fd(),
                temp.as_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
        written
    }

    /// A new file beside the record, of a name nobody else has.
    fn create_temp(&self, dir: &LockDir) -> Result<(OwnedFd, String)> {
        let flags = OFlag::O_WRONLY
            | OFlag::O_CREAT
            | OFlag::O_EXCL
            | OFlag::O_NOFOLLOW
            | OFlag::O_NOCTTY
            | OFlag::O_CLOEXEC;
        for n in 0..crate::file::lock_file::MAX_ATTEMPTS {
            let temp = format!(".{}.{}.{n}", self.name, std::process::id());
            match openat(
                dir.fd(),
                temp.as_str(),
                flags,
                Mode::from_bits_truncate(RECORD_MODE),
            ) {
                Ok(fd) => {
                    fchmod(&fd, Mode::from_bits_truncate(RECORD_MODE))
                        .map_err(|e| Error::io(format!("chmod {temp}"), e))?;
                    return Ok((fd, temp));
                }
                // Someone else's file (or link) of that name: another name.
                Err(Errno::EEXIST) => continue,
                Err(Errno::EACCES) => {
                    return Err(Error::PermissionDenied {
                        path: self.path(),
                        detail: format!(
                            "this user cannot create files in {}, so no run can be recorded \
                             there; choose another lock directory with --dir",
                            self.dir.display()
                        ),
                    });
                }
                Err(errno) => return Err(Error::io(format!("create {temp}"), errno)),
            }
        }
        Err(Error::KeepsChanging {
            path: self.path(),
            attempts: crate::file::lock_file::MAX_ATTEMPTS,
        })
    }

    fn rename_error(&self, errno: Errno) -> Error {
        match errno {
            // A sticky directory: another user's record is not ours to replace.
            Errno::EPERM | Errno::EACCES => untrusted(&self.path(), None),
            errno => Error::io(format!("replace {}", self.path().display()), errno),
        }
    }
}

fn write_all(fd: &OwnedFd, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::from(fd.as_fd().try_clone_to_owned()?);
    file.write_all(bytes)?;
    file.sync_all()
}

/// A record is believed only if it is a regular file that root or this
/// user owns and nobody else may write.
fn check(path: &Path, st: &FileStat) -> Result<()> {
    if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) != SFlag::S_IFREG {
        return Err(not_regular(path, "special file"));
    }
    if !ownership::is_trusted(st.st_uid) || st.st_mode & 0o022 != 0 {
        return Err(untrusted(path, Some(st)));
    }
    Ok(())
}

fn not_regular(path: &Path, kind: &'static str) -> Error {
    Error::NotRegularFile {
        path: path.to_owned(),
        kind,
    }
}

fn untrusted(path: &Path, st: Option<&FileStat>) -> Error {
    let whose = st.map_or_else(|| "not this user's".to_owned(), ownership::describe);
    Error::PermissionDenied {
        path: path.to_owned(),
        detail: format!(
            "the record of the last successful run (--once-per) is {whose}, and only a record \
             of root or this user that nobody else can write is believed; remove it, or run as \
             its owner"
        ),
    }
}

fn decode(text: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('\n')?;
    let micros: u64 = text.parse().ok()?;
    UNIX_EPOCH.checked_add(Duration::from_micros(micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_and_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let record = RunRecord::of(&dir.path().join("job.lock"));
        assert!(record.read().unwrap().is_none());
        let first = UNIX_EPOCH + Duration::from_micros(1_764_443_710_123_456);
        record.write(first).unwrap();
        assert_eq!(record.read().unwrap().unwrap().at, first);
        let later = first + Duration::from_secs(60);
        record.write(later).unwrap();
        assert_eq!(record.read().unwrap().unwrap().at, later);
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["job.lock.last-success"], "no file left behind");
    }

    #[test]
    fn a_record_others_may_write_or_a_link_is_not_believed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let record = RunRecord::of(&dir.path().join("job.lock"));
        std::fs::write(record.path(), "1764443710123456\n").unwrap();
        std::fs::set_permissions(record.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(matches!(record.read(), Err(Error::PermissionDenied { .. })));
        std::fs::remove_file(record.path()).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", record.path()).unwrap();
        assert!(matches!(record.read(), Err(Error::NotRegularFile { .. })));
        std::fs::remove_file(record.path()).unwrap();
        std::fs::write(record.path(), "not a time\n").unwrap();
        assert!(matches!(record.read(), Err(Error::NotRegularFile { .. })));
    }
}
