//! The deadline stamp: when a holder's `--time-limit` runs out, kept by
//! the kernel for listings.
//!
//! Linux only. Like the since stamp ([`crate::file::since_stamp`]), a
//! POSIX record lock (`F_RDLCK`) of the holder's process on one byte of
//! the lock file, which `/proc/locks` lists beside its pid for every user
//! and which vanishes when the process exits; its offset is [`BASE`] plus
//! the deadline in microseconds since the Unix epoch. [`BASE`] puts every
//! deadline above the since stamps' range and far below `off_t`'s limit,
//! so neither is ever taken for the other. Read locks conflict with
//! nothing withlock takes, so the stamp changes nothing about who may hold
//! the lock. Anyone who can open the lock file can set such a stamp, but
//! only beside their own pid: a holder's deadline cannot be faked by
//! another process.

use std::os::fd::BorrowedFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::file::since_stamp::{self, record_lock};

/// Deadline stamps are at `BASE + microseconds since the epoch`.
const BASE: u64 = 1 << 58;

// Above every since stamp (whose latest is in the year 9999).
const _: () = assert!(BASE > 253_402_300_799_999_999);

/// Stamps `deadline` on the lock file open as `fd`; returns the stamp's
/// offset, or `None` when it could not be set (the limit holds regardless:
/// the stamp is only what listings show).
pub(crate) fn stamp(fd: BorrowedFd<'_>, deadline: SystemTime) -> Option<u64> {
    let micros = deadline.duration_since(UNIX_EPOCH).ok()?.as_micros();
    // A deadline the listing could not show is left out, as is one in the
    // far future.
    since_stamp::decode(u64::try_from(micros).ok()?)?;
    let offset = BASE + u64::try_from(micros).ok()?;
    record_lock(fd, libc::F_RDLCK, offset).then_some(offset)
}

/// Removes a stamp set by [`stamp`].
pub(crate) fn remove(fd: BorrowedFd<'_>, offset: u64) {
    record_lock(fd, libc::F_UNLCK, offset);
}

/// The deadline a stamp at `offset` stands for, if it looks like one.
pub(crate) fn decode(offset: u64) -> Option<SystemTime> {
    let micros = offset.checked_sub(BASE)?;
    since_stamp::decode(micros)?;
    UNIX_EPOCH.checked_add(Duration::from_micros(micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_is_no_since_stamp_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.lock");
        std::fs::write(&path, "").unwrap();
        // A read lock needs a descriptor open for reading.
        let file = std::fs::File::open(&path).unwrap();
        use std::os::fd::AsFd;
        let deadline = UNIX_EPOCH + Duration::from_micros(1_764_443_710_123_456);
        let offset = stamp(file.as_fd(), deadline).unwrap();
        assert_eq!(since_stamp::decode(offset), None);
        assert_eq!(decode(offset), Some(deadline));
        // A since stamp is no deadline.
        assert_eq!(decode(1_764_443_710_123_456), None);
        remove(file.as_fd(), offset);
    }
}
