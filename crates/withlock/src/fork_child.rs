//! Keeping lock files out of fork children, for programs that fork without
//! exec while a thread holds or waits for a lock (Python's `multiprocessing`
//! with the fork start method, say).
//!
//! Linux only. A lock belongs to the open file description: its flock(2)
//! and the arrival queue's OFD record locks stay while any copy of the
//! descriptor is open, so a child that inherits one keeps the parent's lock
//! (or its place in the queue) after the parent dies. After
//! [`close_lock_files_in_fork_children`], every lock file and lock socket
//! (a [`crate::SocketLock`]'s) this process opens is recorded, and in a
//! child made by fork(2) (a `pthread_atfork` handler, so any fork that runs
//! them: `os.fork()`, C code; not `vfork` or `posix_spawn`, which exec
//! anyway) each recorded descriptor is replaced by one on `/dev/null`
//! before the child runs a line of its own code. The
//! descriptor number stays taken, so whatever later closes it in the child
//! closes only that. The open and its record are one step that a fork waits
//! for (a read lock that the fork's `prepare` handler takes for writing), so
//! no fork falls between them; a fork during a wait cannot leave the child
//! the waiting descriptor.
//!
//! A record is dropped when its number is recorded again or no longer
//! names its file; until then, a descriptor the program itself opened on
//! that same lock file under a number withlock had used is swapped too.
//!
//! Off by default: the `withlock` command relies on the opposite, its
//! command inheriting the lock so that the lock outlives withlock itself.

use std::cell::UnsafeCell;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

/// One recorded lock file descriptor, with the file it was opened on so
/// that a number since reused for another file is left alone.
#[derive(Clone, Copy)]
struct Entry {
    fd: RawFd,
    dev: libc::dev_t,
    ino: libc::ino_t,
}

impl Entry {
    /// True while `fd` is still open on the recorded file.
    fn is_current(&self) -> bool {
        // SAFETY: an all-zero stat is a valid value for fstat to fill in;
        // fstat only writes to it.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: `st` is valid for the call; a closed `fd` just fails.
        unsafe {
            libc::fstat(self.fd, &mut st) == 0 && st.st_dev == self.dev && st.st_ino == self.ino
        }
    }
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static RECORDED: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// Readers: opens being recorded. Writer: a fork, between its `prepare`
/// and its `parent`/`child` handlers.
struct ForkLock(UnsafeCell<libc::pthread_rwlock_t>);

// SAFETY: the rwlock is only used through the pthread calls, which are
// made for sharing between threads.
unsafe impl Sync for ForkLock {}

static FORK_LOCK: ForkLock = ForkLock(UnsafeCell::new(libc::PTHREAD_RWLOCK_INITIALIZER));

/// From now on, lock files opened by this process are closed in its fork
/// children, as the module docs say. Idempotent.
pub fn close_lock_files_in_fork_children() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: the handlers are plain functions that live for the whole
        // program; registering them has no other precondition.
        unsafe { libc::pthread_atfork(Some(prepare), Some(in_parent), Some(in_child)) };
        ENABLED.store(true, Ordering::SeqCst);
    });
}

/// Runs `open` (which opens one lock file) so that no fork happens between
/// the open and its record, and records the descriptor it returns.
pub(crate) fn opening<E>(open: impl FnOnce() -> Result<OwnedFd, E>) -> Result<OwnedFd, E> {
    if !ENABLED.load(Ordering::SeqCst) {
        return open();
    }
    // SAFETY: FORK_LOCK is a valid, initialised rwlock; unlocked below.
    unsafe { libc::pthread_rwlock_rdlock(FORK_LOCK.0.get()) };
    let opened = open();
    if let Ok(fd) = &opened {
        record(fd);
    }
    // SAFETY: this thread took the read lock above.
    unsafe { libc::pthread_rwlock_unlock(FORK_LOCK.0.get()) };
    opened
}

/// Records `fd`, and forgets records whose descriptor has since been
/// closed or reused, so the list stays as long as the open lock files.
fn record(fd: &OwnedFd) {
    // SAFETY: as in `Entry::is_current`.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is valid for the call and `fd` is open.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return;
    }
    let mut recorded = RECORDED.lock().unwrap_or_else(|e| e.into_inner());
    // A record of the same number is of a descriptor closed since, even
    // when the number now names the same file again.
    recorded.retain(|entry| entry.fd != fd.as_raw_fd() && entry.is_current());
    recorded.push(Entry {
        fd: fd.as_raw_fd(),
        dev: st.st_dev,
        ino: st.st_ino,
    });
}

extern "C" fn prepare() {
    // SAFETY: FORK_LOCK is a valid rwlock; released by one of the handlers
    // below, in the parent and in the child.
    unsafe { libc::pthread_rwlock_wrlock(FORK_LOCK.0.get()) };
}

extern "C" fn in_parent() {
    // SAFETY: `prepare` took the write lock in this thread.
    unsafe { libc::pthread_rwlock_unlock(FORK_LOCK.0.get()) };
}

/// In the child: only async-signal-safe calls (fstat, open, dup3, close).
/// Nobody holds RECORDED: every user holds FORK_LOCK for reading, which
/// `prepare` waited out.
extern "C" fn in_child() {
    if let Ok(mut recorded) = RECORDED.try_lock() {
        // SAFETY: a constant NUL-terminated path; the result is checked.
        let null = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        for entry in recorded.iter().filter(|e| e.is_current()) {
            // SAFETY: `entry.fd` is open (checked); dup3 replaces it with
            // `/dev/null` in one step, or close drops it where there is none.
            unsafe {
                if null < 0 || libc::dup3(null, entry.fd, libc::O_CLOEXEC) < 0 {
                    libc::close(entry.fd);
                }
            }
        }
        if null >= 0 {
            // SAFETY: `null` was opened above and is not used after this.
            unsafe { libc::close(null) };
        }
        // No allocation: the child keeps the capacity.
        recorded.clear();
    }
    // SAFETY: the forking thread, which is this one in the child, took the
    // write lock in `prepare`.
    unsafe { libc::pthread_rwlock_unlock(FORK_LOCK.0.get()) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, BorrowedFd};

    #[test]
    fn the_record_is_as_long_as_the_open_lock_files() {
        close_lock_files_in_fork_children();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("again.lock");
        let open = || opening(|| std::fs::File::create(&path).map(OwnedFd::from)).unwrap();
        let kept = open();
        for _ in 0..100 {
            // Closed at once: the next open reuses the number, same file.
            drop(open());
        }
        let recorded = RECORDED.lock().unwrap();
        let on_file = |fd: RawFd| recorded.iter().filter(|e| e.fd == fd).count();
        assert_eq!(on_file(kept.as_raw_fd()), 1);
        assert!(recorded.len() <= 2 + 8, "{} records", recorded.len());
    }

    #[test]
    fn a_fork_child_keeps_no_recorded_lock_file() {
        close_lock_files_in_fork_children();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.lock");
        let fd: OwnedFd = opening(|| std::fs::File::create(&path).map(OwnedFd::from)).unwrap();
        let other: OwnedFd = std::fs::File::create(dir.path().join("other"))
            .unwrap()
            .into();
        // SAFETY: the child only makes system calls and exits.
        match unsafe { libc::fork() } {
            0 => {
                let points_at = |fd: BorrowedFd| {
                    std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()
                };
                let ok = points_at(fd.as_fd()) == Some("/dev/null".into())
                    && points_at(other.as_fd()) == Some(dir.path().join("other"));
                // SAFETY: leaves the child at once, running nothing of the test harness.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) }
            }
            child => {
                let mut status = 0;
                // SAFETY: `child` is our child; `status` is valid.
                assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
                assert!(
                    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                    "{status:x}"
                );
            }
        }
        // The parent's descriptor is untouched.
        assert_eq!(
            std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap(),
            path
        );
    }
}
