//! Seeing from outside that a process is blocked in flock(2).
//!
//! A handoff is only measured once the waiter is really asleep in the kernel
//! on the lock; otherwise the measurement would include the waiter's own
//! start-up. The kernel lists each blocked request in `/proc/locks`, as
//! `N: -> FLOCK  ADVISORY  WRITE PID MAJ:MIN:INODE 0 EOF`.

use std::io;

/// Whether any request is blocked on the file with inode `inode`.
pub fn blocked_on(inode: u64) -> io::Result<bool> {
    let text = std::fs::read_to_string("/proc/locks")?;
    Ok(text.lines().any(|line| is_blocked_flock_on(line, inode)))
}

/// Whether `line` of `/proc/locks` is a blocked flock(2) request on `inode`.
///
/// Only the inode number is compared, not the device: on overlayfs and
/// btrfs the device in `/proc/locks` differs from the one stat reports, and
/// the benchmark's own lock files are the only ones with waiters here.
pub fn is_blocked_flock_on(line: &str, inode: u64) -> bool {
    let mut fields = line.split_whitespace();
    let _ordinal = fields.next();
    if fields.next() != Some("->") || fields.next() != Some("FLOCK") {
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
            "5: -> OFDLCK ADVISORY  READ -1 fd:01:5678 0 EOF",
            "6: -> FLOCK  ADVISORY  WRITE",
            "",
        ] {
            assert!(!is_blocked_flock_on(line, 5678), "{line}");
        }
        assert!(is_blocked_flock_on(
            "7: -> FLOCK  ADVISORY  READ 1 fd:01:5678 0 EOF",
            5678
        ));
    }

    #[test]
    fn reads_this_machines_proc_locks() {
        assert!(!blocked_on(u64::MAX).unwrap());
    }
}
