//! The mark of a `--max N` holder or waiter, for inspections.
//!
//! Linux only. A semaphore holder takes the flock shared, so /proc/locks
//! alone cannot tell it from a `-s` holder. It therefore also takes, from
//! the moment it opens the lock file, a POSIX
//! record lock (`F_RDLCK`) on byte [`OFFSET`] of the lock file, past every
//! byte of the arrival queue ([`crate::file::queue`], so it is never taken for a
//! lock on the queue) and far below the since stamps, which the kernel
//! lists beside its pid. Like the since stamp ([`crate::file::since_stamp`]) it
//! belongs to the process, changes nothing about who may hold the lock,
//! and vanishes when the process exits: a command left holding the lock
//! after its withlock was killed is shown as shared.

use std::os::fd::BorrowedFd;

use crate::file::since_stamp::record_lock;

/// The byte a semaphore holder marks.
pub(crate) const OFFSET: u64 = 1 << 44;

// Past the queue: its last range starts at PLACE_MARK_BASE and is no
// longer than the one before it.
const _: () = assert!(OFFSET > 2 * crate::file::queue_bytes::PLACE_MARK_BASE);

/// Marks the process as holding, or waiting for, one of a semaphore's
/// places; false when the mark could not be set (the lock is taken
/// regardless).
pub(crate) fn set(fd: BorrowedFd<'_>) -> bool {
    record_lock(fd, libc::F_RDLCK, OFFSET)
}

/// Removes the mark set by [`set`].
pub(crate) fn remove(fd: BorrowedFd<'_>) {
    record_lock(fd, libc::F_UNLCK, OFFSET);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mark_is_no_since_stamp() {
        assert_eq!(crate::file::since_stamp::decode(OFFSET), None);
    }
}
