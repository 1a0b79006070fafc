//! The "held since" stamp: the time a lock was taken, kept by the kernel.
//!
//! Linux only. Lock files are never written (another user's file may not be
//! touched), yet other users must be able to see how long a holder has held
//! a lock, and the record must vanish when the holder dies. So the holder
//! takes a POSIX record lock (`fcntl(F_SETLK)`, `F_RDLCK`) on one byte of
//! the lock file at offset = microseconds since the Unix epoch. The kernel
//! lists it in `/proc/locks` beside the holder's pid, readable by everyone,
//! and drops it when the process exits. Read locks never conflict with each
//! other, and on Linux record locks and flock(2) locks are independent, so
//! the stamp changes nothing about who may hold the lock.
//!
//! The stamp belongs to the process, not the descriptor: a child that
//! inherits the lock descriptor does not inherit it, and closing any
//! descriptor of the file in this process drops it. It is information only;
//! when it is missing the holder is shown without a "since".

use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Offsets below this are not stamps (before 2001-09-09).
const EARLIEST_STAMP_MICROS: u64 = 1_000_000_000_000_000;
/// Offsets above this are not stamps either (after 9999-12-31T23:59:59Z,
/// the last time RFC 3339 can write): anyone who can open the lock file can
/// lock any offset, and such a time would break the listing.
const LATEST_STAMP_MICROS: u64 = 253_402_300_799_999_999;

/// Sets (or with `F_UNLCK` removes) a one-byte POSIX record lock of this
/// process at `offset`; false when the kernel refuses.
pub(crate) fn record_lock(fd: BorrowedFd<'_>, kind: i32, offset: u64) -> bool {
    let Ok(start) = libc::off_t::try_from(offset) else {
        return false;
    };
    let record = libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: start,
        l_len: 1,
        l_pid: 0,
    };
    // SAFETY: `record` is a valid flock struct; F_SETLK never blocks and
    // only reads it.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETLK, &record) == 0 }
}

/// Stamps `now` on the lock file open as `fd`; returns the stamp's offset,
/// or `None` when the stamp could not be set (the lock is held regardless).
pub(crate) fn stamp(fd: BorrowedFd<'_>, now: SystemTime) -> Option<u64> {
    let micros = u64::try_from(now.duration_since(UNIX_EPOCH).ok()?.as_micros()).ok()?;
    record_lock(fd, libc::F_RDLCK, micros).then_some(micros)
}

/// Stamps `now` for a waiter: a write lock for an exclusive request, so an
/// inspection can tell the waiter's mode, else (or where the descriptor is
/// read-only) a read lock.
pub(crate) fn stamp_waiting(fd: BorrowedFd<'_>, now: SystemTime, exclusive: bool) -> Option<u64> {
    let micros = u64::try_from(now.duration_since(UNIX_EPOCH).ok()?.as_micros()).ok()?;
    let written = exclusive && record_lock(fd, libc::F_WRLCK, micros);
    (written || record_lock(fd, libc::F_RDLCK, micros)).then_some(micros)
}

/// Removes a stamp set by [`stamp`] or [`stamp_waiting`].
pub(crate) fn remove(fd: BorrowedFd<'_>, offset: u64) {
    record_lock(fd, libc::F_UNLCK, offset);
}

/// The time a stamp at `offset` stands for, if it looks like one.
pub(crate) fn decode(offset: u64) -> Option<SystemTime> {
    if !(EARLIEST_STAMP_MICROS..=LATEST_STAMP_MICROS).contains(&offset) {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::from_micros(offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_reverses_the_encoding_to_the_microsecond() {
        let now = SystemTime::now();
        let micros = now.duration_since(UNIX_EPOCH).unwrap().as_micros() as u64;
        let back = decode(micros).unwrap();
        let diff = now.duration_since(back).unwrap();
        assert!(diff < Duration::from_micros(1));
    }

    #[test]
    fn small_and_far_future_offsets_are_not_stamps() {
        assert_eq!(decode(0), None);
        assert_eq!(decode(4096), None);
        assert!(decode(LATEST_STAMP_MICROS).is_some());
        assert_eq!(decode(LATEST_STAMP_MICROS + 1), None);
        assert_eq!(decode(i64::MAX as u64), None);
    }
}
