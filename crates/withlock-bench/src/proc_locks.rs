//! Seeing from outside that a process is blocked on a lock.
//!
//! A handoff is only measured once the waiter is really asleep in the kernel
//! on the lock; otherwise the measurement would include the waiter's own
//! start-up. The kernel lists each blocked request in `/proc/locks`, as
//! `N: -> FLOCK  ADVISORY  WRITE PID MAJ:MIN:INODE 0 EOF` for flock(2), or
//! `N: -> OFDLCK ADVISORY  READ -1 MAJ:MIN:INODE START END` for a withlock
//! waiter in its arrival queue (one such entry per queued waiter).

use std::io;

/// How many requests are blocked on the file with inode `inode`.
pub(crate) fn blocked_count(inode: u64) -> io::Result<usize> {
    let text = std::fs::read_to_string("/proc/locks")?;
    Ok(text
        .lines()
        .filter(|line| is_blocked_flock_on(line, inode))
        .count())
}

/// Whether `line` of `/proc/locks` is a blocked flock(2) request, or a
/// withlock waiter's blocked OFD request, on `inode`.
///
/// Only the inode number is compared, not the device: on overlayfs and
/// btrfs the device in `/proc/locks` differs from the one stat reports, and
/// the benchmark's own lock files are the only ones with waiters here.
pub(crate) fn is_blocked_flock_on(line: &str, inode: u64) -> bool {
    let mut fields = line.split_whitespace();
    let _ordinal = fields.next();
    if fields.next() != Some("->") || !matches!(fields.next(), Some("FLOCK" | "OFDLCK")) {
        return false;
    }
    // After FLOCK: ADVISORY, READ or WRITE, the pid, then MAJ:MIN:INODE.
    fields
        .nth(3)
        .and_then(|file| file.rsplit(':').next())
        .and_then(|number| number.parse::<u64>().ok())
        == Some(inode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_blocked_flock_request_on_the_inode() {
        let line = "3: -> FLOCK  ADVISORY  WRITE 4343 00:1a:5678 0 EOF";
        assert!(is_blocked_flock_on(line, 5678));
        assert!(!is_blocked_flock_on(line, 567));
        assert!(!is_blocked_flock_on(line, 56789));
    }

    #[test]
    fn ignores_holders_other_kinds_and_odd_lines() {
        for line in [
            "3: FLOCK  ADVISORY  WRITE 4242 00:1a:5678 0 EOF",
            "4: -> POSIX  ADVISORY  WRITE 4242 00:1a:5678 0 EOF",
            "5: OFDLCK ADVISORY  WRITE -1 fd:01:5678 1099511627777 1099511627777",
            "6: -> FLOCK  ADVISORY  WRITE",
            "",
        ] {
            assert!(!is_blocked_flock_on(line, 5678), "{line}");
        }
        assert!(is_blocked_flock_on(
            "7: -> FLOCK  ADVISORY  READ 1 fd:01:5678 0 EOF",
            5678
        ));
        assert!(is_blocked_flock_on(
            "8: -> OFDLCK ADVISORY  READ -1 fd:01:5678 1099511627777 1099511627777",
            5678
        ));
    }

    #[test]
    fn reads_this_machines_proc_locks() {
        assert_eq!(blocked_count(u64::MAX).unwrap(), 0);
    }
}
