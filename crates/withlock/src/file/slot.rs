//! Which of the N places of a `--max N` lock file a holder has: its slot,
//! 0 to N-1, unique among the current holders of the lock.
//!
//! Linux only. A holder that has its place (its turn in the arrival queue
//! and the flock, `file_lock.rs`) claims the first free slot: slot i is an
//! open file description (OFD) write lock on byte [`BASE`] + i of the lock
//! file, taken with `F_OFD_SETLK`, so two holders can never have the same
//! one (the kernel grants a byte's write lock to one description) and no
//! claim waits. Like the ticket it belongs to the lock's descriptor: the
//! command inherits it, so a SIGKILLed withlock's slot stays taken while
//! its command runs, and it is unlocked explicitly on release, before the
//! ticket (the next waiter, admitted when the ticket goes, must find it
//! free), so a daemon the command left behind keeps neither.
//!
//! Since every request of a semaphore with the same N holds a place before
//! it claims a slot, fewer than N other holders have one, and a free slot
//! is always there; a freed slot goes to the next request in arrival
//! order, the one the queue admits. Only a lock on a slot's byte from
//! outside the semaphore (a holder with a different N, or a process that
//! can open the lock file and takes record locks on these bytes, which it
//! could as well on the queue's) can leave none: then the request gives
//! the place back and fails as busy, naming why, rather than run without a
//! slot. A request that took the flock exclusively (unordered, past a
//! foreign lock on the queue: `file_lock.rs`) is the only holder, and
//! takes slot 0 whatever locks are on the slot bytes.
//!
//! OFD locks show pid -1 in `/proc/locks`, so a holder also marks its slot
//! for listings with a POSIX read lock on byte [`MARK_BASE`] + i, listed
//! beside its pid; it belongs to withlock's process (a command left
//! running by a killed withlock shows no slot). Both ranges lie past the
//! queue's bytes and the place stamp, far below the since stamps.
//!
//! A read-only descriptor (another user's 0644 lock file) cannot take a
//! write lock: such a holder, which is not in the queue either, has no slot.

use std::io;
use std::os::fd::BorrowedFd;

use crate::file::queue;
use crate::file::since_stamp::record_lock;

/// Slot i is an OFD write lock on byte `BASE + i`.
const BASE: u64 = 1 << 45;
/// A holder of slot i marks it with a POSIX read lock on byte `MARK_BASE + i`.
const MARK_BASE: u64 = 1 << 46;

// Past the place stamp, and the slots' bytes never reach the marks'.
const _: () = assert!(BASE > crate::file::place_stamp::OFFSET);
const _: () = assert!(BASE + u32::MAX as u64 <= MARK_BASE);

/// Claims the first free slot of `max` on the lock file open as `fd`, and
/// marks it; `None` if every one is taken.
pub(crate) fn claim(fd: BorrowedFd<'_>, max: u32) -> io::Result<Option<u32>> {
    for slot in 0..max {
        match queue::try_write_lock(fd, BASE + u64::from(slot))? {
            true => {
                // Information only: a slot unmarked is still held.
                record_lock(fd, libc::F_RDLCK, MARK_BASE + u64::from(slot));
                return Ok(Some(slot));
            }
            false => continue,
        }
    }
    Ok(None)
}

/// The slot of a holder that took the flock exclusively (unordered, past
/// a foreign lock on the queue): no other holder can be there, so slot 0
/// is its own whatever locks others put on the slot bytes; only marked.
pub(crate) fn alone(fd: BorrowedFd<'_>) -> u32 {
    record_lock(fd, libc::F_RDLCK, MARK_BASE);
    0
}

/// Gives `slot` back, and its mark (a slot taken [`alone`] has no byte
/// lock: unlocking it changes nothing).
pub(crate) fn release(fd: BorrowedFd<'_>, slot: u32) {
    record_lock(fd, libc::F_UNLCK, MARK_BASE + u64::from(slot));
    queue::unlock_byte(fd, BASE + u64::from(slot));
}

/// The slot a POSIX lock at `offset` marks, if it is a slot's mark.
pub(crate) fn of_mark(offset: u64) -> Option<u32> {
    let slot = offset.checked_sub(MARK_BASE)?;
    u32::try_from(slot).ok()
}

// A mark is never taken for a since stamp.
const _: () = assert!(MARK_BASE + u32::MAX as u64 <= 1_000_000_000_000_000);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::since_stamp;

    #[test]
    fn marks_are_neither_stamps_nor_anything_else() {
        assert_eq!(since_stamp::decode(MARK_BASE), None);
        assert_eq!(of_mark(MARK_BASE + 2), Some(2));
        assert_eq!(of_mark(BASE), None);
        assert_eq!(of_mark(MARK_BASE + (1 << 40)), None);
    }
}
