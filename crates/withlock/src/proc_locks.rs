//! Reading `/proc/locks`, the kernel's list of every file lock on the system.
//!
//! Linux only. The file is world-readable, so it shows other users' locks
//! too. Each line is `N: [->] KIND FLAVOUR ACCESS PID MAJ:MIN:INODE START END`,
//! with `->` marking a request that is blocked waiting. The device is the
//! file system's (`i_sb->s_dev`), printed in hex; the pid is the process
//! that took the lock, even if it has since exited.

use std::io::{self, Read};

use nix::sys::stat::FileStat;

/// Which locking call made an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// flock(2).
    Flock,
    /// fcntl(2) record lock owned by a process.
    Posix,
    /// fcntl(2) record lock owned by an open file description (`F_OFD_*`),
    /// which the kernel lists with pid -1.
    Ofd,
    /// Anything else (leases, delegations).
    Other,
}

/// One line of `/proc/locks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub kind: Kind,
    /// A request still waiting for the lock.
    pub blocked: bool,
    /// A write (exclusive) lock rather than a read (shared) one.
    pub write: bool,
    pub pid: i32,
    pub file: FileId,
    /// The first byte, for record locks.
    pub start: u64,
    /// The last byte, for record locks; `None` up to the end of the file
    /// (and for flock).
    pub end: Option<u64>,
}

/// A file as `/proc/locks` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    pub major: u32,
    pub minor: u32,
    pub inode: u64,
}

impl FileId {
    pub(crate) fn of(stat: &FileStat) -> FileId {
        FileId {
            major: libc::major(stat.st_dev),
            minor: libc::minor(stat.st_dev),
            inode: stat.st_ino,
        }
    }
}

/// Every lock the kernel lists.
///
/// Each read(2) of /proc/locks that has to walk the lock list takes the
/// kernel's file-lock rwsem for writing, which waits for an RCU grace
/// period (milliseconds) and holds up every flock() on the machine
/// meanwhile. So the file is read with a buffer large enough to take it
/// whole in one call rather than in std's small first reads.
pub(crate) fn read() -> io::Result<Vec<Entry>> {
    let mut file = std::fs::File::open("/proc/locks")?;
    let mut text = Vec::with_capacity(READ_SIZE);
    loop {
        let start = text.len();
        text.resize(start + READ_SIZE, 0);
        let n = file.read(&mut text[start..])?;
        text.truncate(start + n);
        if n == 0 {
            break;
        }
    }
    Ok(parse(&String::from_utf8_lossy(&text)))
}

/// How much of /proc/locks one read asks for.
const READ_SIZE: usize = 256 * 1024;

/// The entries on `file`. Where no entry matches the device exactly (btrfs
/// subvolumes and overlayfs report a different device to stat than to
/// /proc/locks), entries on the same inode number are taken instead.
pub(crate) fn on_file(entries: &[Entry], file: FileId) -> Vec<Entry> {
    let exact: Vec<Entry> = entries.iter().filter(|e| e.file == file).cloned().collect();
    if !exact.is_empty() {
        return exact;
    }
    entries
        .iter()
        .filter(|e| e.file.inode == file.inode)
        .cloned()
        .collect()
}

/// Parses the text of `/proc/locks`, skipping lines it does not understand.
pub(crate) fn parse(text: &str) -> Vec<Entry> {
    text.lines().filter_map(parse_line).collect()
}

/// Parses one line of `/proc/locks`, or the part after `lock:` of a line
/// of `/proc/<pid>/fdinfo/<fd>`, which has the same form.
pub(crate) fn parse_line(line: &str) -> Option<Entry> {
    let mut fields = line.split_whitespace().skip(1).peekable();
    let blocked = fields.next_if_eq(&"->").is_some();
    let kind = match fields.next()? {
        "FLOCK" => Kind::Flock,
        "POSIX" => Kind::Posix,
        "OFDLCK" => Kind::Ofd,
        _ => Kind::Other,
    };
    let _flavour = fields.next()?;
    let write = match fields.next()? {
        "WRITE" => true,
        "READ" => false,
        _ => return None,
    };
    let pid = fields.next()?.parse().ok()?;
    let file = parse_file_id(fields.next()?)?;
    let start = fields.next()?.parse().ok()?;
    let end = match fields.next() {
        Some("EOF") | None => None,
        Some(end) => Some(end.parse().ok()?),
    };
    Some(Entry {
        kind,
        blocked,
        write,
        pid,
        file,
        start,
        end,
    })
}

fn parse_file_id(text: &str) -> Option<FileId> {
    let mut parts = text.split(':');
    let major = u32::from_str_radix(parts.next()?, 16).ok()?;
    let minor = u32::from_str_radix(parts.next()?, 16).ok()?;
    let inode = parts.next()?.parse().ok()?;
    Some(FileId {
        major,
        minor,
        inode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
1: FLOCK  ADVISORY  WRITE 4242 00:1a:5678 0 EOF
1: -> FLOCK  ADVISORY  READ 4343 00:1a:5678 0 EOF
2: POSIX  ADVISORY  READ 4242 00:1a:5678 1764150000000000 1764150000000000
3: OFDLCK ADVISORY  READ -1 fd:01:99 0 EOF
4: LEASE  ACTIVE    BREAKING  READ  1 08:02:7 0 EOF
";

    #[test]
    fn parses_holders_waiters_and_stamps() {
        let entries = parse(SAMPLE);
        let file = FileId {
            major: 0,
            minor: 0x1a,
            inode: 5678,
        };
        let mine = on_file(&entries, file);
        assert_eq!(mine.len(), 3);
        assert_eq!(
            (mine[0].kind, mine[0].blocked, mine[0].write),
            (Kind::Flock, false, true)
        );
        assert_eq!((mine[0].pid, mine[1].pid), (4242, 4343));
        assert!(mine[1].blocked && !mine[1].write);
        assert_eq!(
            (mine[2].kind, mine[2].start, mine[2].end),
            (Kind::Posix, 1764150000000000, Some(1764150000000000))
        );
        assert_eq!(mine[0].end, None, "EOF");
    }

    #[test]
    fn open_file_description_locks_have_their_own_kind() {
        let entries = parse(SAMPLE);
        assert_eq!((entries[3].kind, entries[3].pid), (Kind::Ofd, -1));
        let fdinfo = "1: OFDLCK ADVISORY  READ -1 fe:00:10013026 0 0";
        let entry = parse_line(fdinfo).unwrap();
        assert_eq!(
            (entry.kind, entry.start, entry.end),
            (Kind::Ofd, 0, Some(0))
        );
    }

    #[test]
    fn reads_hex_devices_and_skips_odd_lines() {
        let entries = parse(SAMPLE);
        assert_eq!(entries[3].file.major, 0xfd);
        assert_eq!(
            entries.len(),
            4,
            "the LEASE line has an extra field and is skipped"
        );
    }

    #[test]
    fn falls_back_to_the_inode_when_the_device_differs() {
        let entries = parse(SAMPLE);
        let file = FileId {
            major: 0,
            minor: 0x2b,
            inode: 5678,
        };
        assert_eq!(on_file(&entries, file).len(), 3);
    }
}
