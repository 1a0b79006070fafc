//! Seeing from outside that a process is blocked on a lock.
//!
//! A handoff is only measured once the waiter is really asleep in the kernel
//! on the lock; otherwise the measurement would include the waiter's own
//! start-up. The kernel lists each blocked request in `/proc/locks`, as
//! `N: -> FLOCK  ADVISORY  WRITE PID MAJ:MIN:INODE 0 EOF` for flock(2); a
//! withlock waiter in its arrival queue blocks on OFD record locks, which
//! show no pid (and may be several per waiter), so it is recognised by its
//! waiting stamp instead: a POSIX record lock of its own pid on the file.

use std::collections::BTreeSet;
use std::io;

/// How many requests are waiting for the lock file with inode `inode`:
/// blocked flock(2) requests (flock(1)'s), plus withlock's queued waiters,
/// counted once each by their waiting stamp, a POSIX record lock of a
/// process that holds no flock on the file. Their blocked OFD requests
/// cannot be counted instead: a waiter may block in more than one thread,
/// and the kernel shows no pid for them.
pub(crate) fn blocked_count(inode: u64) -> io::Result<usize> {
    Ok(waiting_in(&std::fs::read_to_string("/proc/locks")?, inode))
}

fn waiting_in(text: &str, inode: u64) -> usize {
    let entries: Vec<Entry> = text.lines().filter_map(Entry::parse).collect();
    let on_file = || entries.iter().filter(|e| e.inode == inode);
    let blocked_flocks = on_file().filter(|e| e.blocked && e.kind == "FLOCK").count();
    let holders: BTreeSet<i64> = on_file()
        .filter(|e| !e.blocked && e.kind == "FLOCK")
        .map(|e| e.pid)
        .collect();
    let stamped: BTreeSet<i64> = on_file()
        .filter(|e| !e.blocked && e.kind == "POSIX" && !holders.contains(&e.pid))
        .map(|e| e.pid)
        .collect();
    blocked_flocks + stamped.len()
}

/// One line of `/proc/locks`: `N: [->] KIND ADVISORY MODE PID MAJ:MIN:INODE ...`.
struct Entry<'a> {
    blocked: bool,
    kind: &'a str,
    pid: i64,
    inode: u64,
}

impl<'a> Entry<'a> {
    fn parse(line: &'a str) -> Option<Entry<'a>> {
        let mut fields = line.split_whitespace().skip(1).peekable();
        let blocked = fields.next_if_eq(&"->").is_some();
        let kind = fields.next()?;
        let pid = fields.nth(2)?.parse().ok()?;
        let inode = fields.next()?.rsplit(':').next()?.parse().ok()?;
        Some(Entry {
            blocked,
            kind,
            pid,
            inode,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_blocked_flocks_and_stamped_withlock_waiters_once_each() {
        let text = "\
1: FLOCK  ADVISORY  WRITE 10 00:1a:5678 0 EOF
2: POSIX  ADVISORY  READ 10 00:1a:5678 1764000000000000 1764000000000000
3: -> FLOCK  ADVISORY  WRITE 11 00:1a:5678 0 EOF
4: POSIX  ADVISORY  WRITE 12 00:1a:5678 1764000000000001 1764000000000001
5: -> OFDLCK ADVISORY  READ -1 00:1a:5678 1099511627777 1099511627777
6: -> OFDLCK ADVISORY  READ -1 00:1a:5678 1099511627776 1099511627776
7: POSIX  ADVISORY  WRITE 13 00:1a:9999 1764000000000002 1764000000000002
8: OFDLCK ADVISORY  WRITE -1 00:1a:5678 1099511627778 1099511627778
";
        // flock(1) waiter 11, withlock waiter 12 (two blocked OFD requests,
        // one stamp); 10 is the holder and 13 waits on another file.
        assert_eq!(waiting_in(text, 5678), 2);
        assert_eq!(waiting_in(text, 9999), 1);
        assert_eq!(waiting_in(text, 1), 0);
    }

    #[test]
    fn odd_lines_are_skipped() {
        assert_eq!(waiting_in("6: -> FLOCK  ADVISORY  WRITE\n\nx\n", 5678), 0);
    }

    #[test]
    fn reads_this_machines_proc_locks() {
        assert_eq!(blocked_count(u64::MAX).unwrap(), 0);
    }
}
