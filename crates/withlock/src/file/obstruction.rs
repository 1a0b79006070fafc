//! Record locks on the arrival queue's bytes that are not the queue's own:
//! who holds them, as far as the kernel tells.
//!
//! Linux only. The queue ([`crate::file::queue`]) keeps its gate, tickets and
//! markers as one-byte record locks on the lock file, and any process that
//! can open the file can lock those bytes too: a read lock needs only read
//! access. Such a lock makes withlock take the flock unordered; this module
//! finds it in `/proc/locks` and says who holds it.
//!
//! A POSIX lock (`fcntl(F_SETLK)`, `lockf`) names its process there. An
//! open file description lock (`F_OFD_SETLK`) shows pid -1, in
//! `/proc/locks` as in `F_OFD_GETLK`; its holder is found through the
//! `lock:` lines of `/proc/<pid>/fdinfo/<fd>`, which only root (or the
//! holder's own user) may read. When that fails, the message says who can
//! open the file, and so could have taken the lock.

use std::fs;

use nix::sys::stat::FileStat;
use nix::unistd::{Gid, Group};

use crate::file::queue_bytes;
use crate::holder::Holder;
use crate::ownership;
use crate::proc_locks::{self, Entry, FileId, Kind};
use crate::request::Mode;

/// A record lock on the queue's bytes held outside the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Foreign {
    /// Its first byte.
    pub start: u64,
    /// Its last byte; `None` up to the end of the file.
    pub end: Option<u64>,
    /// A write lock rather than a read lock.
    pub write: bool,
    /// The owning process, for a POSIX lock; `None` for an open file
    /// description lock, which the kernel does not attribute.
    pub pid: Option<i32>,
}

impl Foreign {
    /// The lock `F_OFD_GETLK` reported.
    pub(crate) fn from_record(record: &libc::flock) -> Foreign {
        let start = record.l_start.max(0) as u64;
        Foreign {
            start,
            end: (record.l_len > 0).then(|| start + record.l_len as u64 - 1),
            write: record.l_type == libc::F_WRLCK as libc::c_short,
            pid: (record.l_pid > 0).then_some(record.l_pid),
        }
    }

    fn from_entry(entry: &Entry) -> Foreign {
        Foreign {
            start: entry.start,
            end: entry.end,
            write: entry.write,
            pid: (entry.kind == Kind::Posix && entry.pid > 0).then_some(entry.pid),
        }
    }

    fn same_lock(&self, entry: &Entry) -> bool {
        !entry.blocked
            && matches!(entry.kind, Kind::Ofd | Kind::Posix)
            && Foreign::from_entry(entry) == *self
    }

    /// "a read lock on byte 0 (the queue's gate), held by pid 42 (bob) ..."
    /// for the lock file with status `file`.
    pub(crate) fn describe(&self, file: &FileStat) -> String {
        let kind = if self.write { "write" } else { "read" };
        let span = match self.end {
            Some(end) if end == self.start => format!("byte {}", self.start),
            Some(end) => format!("bytes {}-{end}", self.start),
            None => format!("bytes {} to the end of the file", self.start),
        };
        let part = if self.start == queue_bytes::GATE {
            "the queue's gate"
        } else {
            "the queue's tickets"
        };
        let mode = if self.write {
            Mode::Exclusive
        } else {
            Mode::Shared
        };
        let by = match self.pid {
            Some(pid) => format!("held by {}", Holder::of_pid(pid, mode)),
            None => match ofd_holders(FileId::of(file), self).as_slice() {
                [] => format!(
                    "that the kernel does not attribute to a process (an open file \
                     description lock); {}",
                    who_can_open(file)
                ),
                [only] => format!(
                    "held through an open file of {}",
                    Holder::of_pid(*only, mode)
                ),
                [first, rest @ ..] => format!(
                    "held through an open file of {} (and {} more processes)",
                    Holder::of_pid(*first, mode),
                    rest.len()
                ),
            },
        };
        format!("a {kind} lock on {span} ({part}), {by}")
    }
}

/// A foreign lock among `entries`, the `/proc/locks` entries of one file,
/// if there is one. A one-byte read lock on a ticket or marker may be a
/// waiter's own, held for the moment it takes to wake up, so such a lock
/// counts only if a second look still finds it.
pub(crate) fn find(entries: &[Entry], file: FileId) -> Option<Foreign> {
    let on_queue = |e: &&Entry| {
        !e.blocked && matches!(e.kind, Kind::Ofd | Kind::Posix) && e.start <= queue_bytes::LAST
    };
    let certain = |e: &&Entry| {
        let one_byte = e.end == Some(e.start);
        e.kind == Kind::Posix || !one_byte || (e.start == queue_bytes::GATE && !e.write)
    };
    if let Some(entry) = entries.iter().filter(on_queue).find(certain) {
        return Some(Foreign::from_entry(entry));
    }
    let maybe: Vec<Foreign> = entries
        .iter()
        .filter(on_queue)
        .filter(|e| !e.write && e.start != queue_bytes::GATE)
        .map(Foreign::from_entry)
        .collect();
    if maybe.is_empty() {
        return None;
    }
    let again = proc_locks::on_file(&proc_locks::read().ok()?, file);
    maybe
        .into_iter()
        .find(|foreign| again.iter().any(|e| foreign.same_lock(e)))
}

/// The processes with an open file description that holds `lock` on
/// `file`, as far as this user may read their `/proc/<pid>/fdinfo`.
fn ofd_holders(file: FileId, lock: &Foreign) -> Vec<i32> {
    let Ok(processes) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<i32> = processes
        .flatten()
        .filter_map(|process| process.file_name().to_str()?.parse().ok())
        .filter(|&pid| holds_through_a_descriptor(pid, file, lock))
        .collect();
    pids.sort_unstable();
    pids
}

fn holds_through_a_descriptor(pid: i32, file: FileId, lock: &Foreign) -> bool {
    let Ok(descriptors) = fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return false;
    };
    descriptors.flatten().any(|fd| {
        fs::read_to_string(fd.path()).is_ok_and(|info| {
            info.lines()
                .filter_map(|line| line.strip_prefix("lock:"))
                .filter_map(proc_locks::parse_line)
                .any(|e| e.file.inode == file.inode && lock.same_lock(&e))
        })
    })
}

/// Who can open the file with status `file`, and so lock its bytes.
fn who_can_open(file: &FileStat) -> String {
    let owner = ownership::user_name(file.st_uid);
    let status = ownership::describe(file);
    if file.st_mode & 0o004 != 0 {
        format!("every user can open the file ({status})")
    } else if file.st_mode & 0o040 != 0 {
        let group = match Group::from_gid(Gid::from_raw(file.st_gid)) {
            Ok(Some(group)) => group.name,
            _ => format!("gid {}", file.st_gid),
        };
        format!("users who can open the file: {owner}, group {group} and root ({status})")
    } else {
        format!("users who can open the file: {owner} and root ({status})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proc_locks::parse;

    const FILE: FileId = FileId {
        major: 0,
        minor: 0x1a,
        inode: 5678,
    };

    fn found(text: &str) -> Option<Foreign> {
        find(&parse(text), FILE)
    }

    #[test]
    fn the_queue_s_own_locks_are_not_foreign() {
        let own = "\
1: OFDLCK ADVISORY  WRITE -1 00:1a:5678 0 0
2: OFDLCK ADVISORY  WRITE -1 00:1a:5678 1099511627777 1099511627777
3: OFDLCK ADVISORY  WRITE -1 00:1a:5678 2199023255553 2199023255553
4: -> OFDLCK ADVISORY  READ -1 00:1a:5678 1099511627777 1099511627777
5: POSIX  ADVISORY  READ 4242 00:1a:5678 1764150000000000 1764150000000000
6: FLOCK  ADVISORY  WRITE 4242 00:1a:5678 0 EOF
";
        assert_eq!(found(own), None);
    }

    #[test]
    fn a_read_lock_on_the_gate_or_a_wide_lock_is_foreign() {
        let gate = "1: OFDLCK ADVISORY  READ -1 00:1a:5678 0 0\n";
        assert_eq!(
            found(gate),
            Some(Foreign {
                start: 0,
                end: Some(0),
                write: false,
                pid: None
            })
        );
        let wide = "1: OFDLCK ADVISORY  READ -1 00:1a:5678 1099511627776 EOF\n";
        assert_eq!(found(wide).map(|f| f.end), Some(None));
        let posix = "1: POSIX  ADVISORY  READ 77 00:1a:5678 0 0\n";
        assert_eq!(found(posix).and_then(|f| f.pid), Some(77));
    }
}
