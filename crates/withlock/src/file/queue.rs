//! The arrival-order queue in front of the flock: tickets kept by the
//! kernel as open-file-description (OFD) record locks on the lock file.
//!
//! Linux only. flock(2) wakes its waiters in no particular order, so a
//! newcomer may barge ahead of a long waiter and a stream of shared holders
//! can starve an exclusive one. withlock clients therefore queue first, in
//! byte ranges of the lock file far below the since stamps (which sit at
//! offset ≈ 2^50, see [`crate::file::since_stamp`]); nothing is ever written to
//! the file, the ranges are only locked:
//!
//! - the **gate**, byte 0: a write lock held for the few microseconds it
//!   takes to draw a ticket;
//! - **tickets**, byte [`TICKET_BASE`] + t (t ≥ 1): a write lock held by
//!   each queued or running request, from arrival until release;
//! - **exclusive markers**, byte [`MARK_BASE`] + t: a write lock held beside
//!   ticket t when that request is exclusive;
//! - **place markers**, byte [`PLACE_MARK_BASE`] + t: a write lock held
//!   beside ticket t when that request is for one of N places (`--max N`).
//!
//! Under the gate a request finds the highest held ticket with
//! `F_OFD_GETLK` probes (a binary search over the ticket range) and takes
//! the next one, so tickets rise with arrival. It then waits, blocking in
//! `F_OFD_SETLKW` for a read lock on one predecessor's byte (which conflicts
//! with the predecessor's write lock, so the kernel wakes it when that
//! ticket is released or its owner dies), for as long as a predecessor
//! that matters is held:
//!
//! - exclusive: any ticket below its own (it blocks on the highest);
//! - shared: any exclusive or place marker below its own, so consecutive
//!   shared requests run together, and a shared request never slips past
//!   the limit of `--max` requests ahead of it (it does not know N, so it
//!   waits until they are gone);
//! - at most N (`--max N`): an exclusive marker below its own, as for a
//!   shared request, else N or more tickets below its own (shared ones
//!   count, so shared holders take places too): it waits until
//!   any of the N oldest of those (the running holders) leaves, with one
//!   helper thread per extra ticket ([`wait_for_any`]), so a place freed
//!   by any holder goes to the next waiter at once.
//!
//! Only then does it take the flock itself, which now only contends with
//! peers that do not queue (flock(1), other tools). The ticket is kept while
//! the lock is held and unlocked explicitly on release. OFD locks belong to
//! the open file description, so a killed waiter's ticket vanishes with its
//! last descriptor, and a running command that inherited the descriptor
//! keeps the ticket, like the flock, if withlock itself is killed.
//!
//! The bytes are plain record locks, so anyone who can open the file can
//! lock them too; a descriptor open only for reading can take read locks.
//! Participants never hold a read lock on the gate, nor a read lock on a
//! ticket or marker byte for longer than it takes to wake up, and never a
//! lock of more than one byte. So a request that finds the gate held by a
//! read lock (or by a write lock for longer than [`GATE_BOUND`]), or whose
//! ticket or marker byte is taken, has met a foreign lock
//! ([`crate::file::obstruction`]): it does not wait for it or fail, it leaves the
//! queue and takes the flock unordered, as flock(1) does.
//!
//! A request whose turn comes but that never takes the lock (a stopped or
//! frozen waiter, a ticket byte locked by someone else) must not hold up
//! the ones behind it. The request right behind the head of the queue
//! therefore waits for it with a timer: if after [`STALL_BOUND`] the head's
//! ticket is still there and nobody holds the flock, it passes the head
//! over (see `FileLock`). The timer runs only while the request waited for
//! is at the head; while a holder runs, waiters sleep in the kernel.
//!
//! A write lock needs a descriptor open for writing. A lock file this user
//! cannot open read-write (a 0644 file made by flock(1) as another user) is
//! locked with plain flock, unordered; so are all requests of peers that do
//! not know this protocol, and every lock on a network or FUSE file system,
//! where flock(2) may be emulated with record locks that would conflict
//! with the queue's. The order is promised only among withlock clients
//! that could open the file read-write.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::thread::JoinHandleExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::file::obstruction::Foreign;
use crate::timer_signal::{install_noop_handler, set_signal_blocked, timer_signal};

use crate::file::queue_bytes::SPAN;
pub(crate) use crate::file::queue_bytes::{GATE, MARK_BASE, PLACE_MARK_BASE, TICKET_BASE};

/// How long a request waits for the gate when another request holds it
/// with a write lock: drawing a ticket takes microseconds, so a gate held
/// longer is stuck (its holder stopped or frozen, or a foreign lock).
pub(crate) const GATE_BOUND: Duration = Duration::from_secs(1);

/// How long the head of the queue may leave a free lock untaken before
/// the request behind it passes it over.
pub(crate) const STALL_BOUND: Duration = Duration::from_secs(1);

/// What a queued request waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Every request ahead of it.
    Exclusive,
    /// The exclusive requests ahead of it.
    Shared,
    /// Fewer than N requests ahead of it.
    AtMost(u32),
}

/// A place in the queue: ticket `number` of `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket {
    pub number: u64,
    pub kind: Kind,
}

fn ofd(fd: BorrowedFd<'_>, cmd: i32, kind: i32, start: u64, len: u64) -> io::Result<libc::flock> {
    let mut record = libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: start as libc::off_t,
        l_len: len as libc::off_t,
        // OFD requests must leave the pid zero.
        l_pid: 0,
    };
    // SAFETY: `record` is a valid flock struct the kernel reads and, for
    // F_OFD_GETLK, writes back.
    if unsafe { libc::fcntl(fd.as_raw_fd(), cmd, &mut record) } == 0 {
        Ok(record)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// File systems whose flock(2) may be emulated with byte-range locks over
/// the whole file (NFS, SMB, Ceph, FUSE, 9p, AFS, cluster file systems):
/// there a flock would conflict with the queue's record locks, so the
/// queue is not used and the lock is taken unordered.
const FLOCK_MAY_BE_RECORD_LOCK: [i64; 11] = [
    0x6969,      // NFS
    0x517B,      // SMB
    0xFF53_4D42, // CIFS
    0xFE53_4D42, // SMB2
    0x00C3_6400, // Ceph
    0x6573_5546, // FUSE
    0x0102_1997, // 9p
    0x5346_414F, // AFS
    0x7461_636F, // OCFS2
    0x0116_1970, // GFS2
    0x0BD0_0BD0, // Lustre
];

/// True when `fd` can take the queue's write locks (open read-write) on a
/// file system where they are independent of flock(2).
pub(crate) fn usable(fd: BorrowedFd<'_>) -> bool {
    // SAFETY: F_GETFL only reads the descriptor's flags.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 || flags & libc::O_ACCMODE != libc::O_RDWR {
        return false;
    }
    let mut fs = std::mem::MaybeUninit::<libc::statfs>::zeroed();
    // SAFETY: fstatfs writes a statfs struct into the buffer we own.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), fs.as_mut_ptr()) } != 0 {
        return false;
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width depends on the architecture
    // SAFETY: fstatfs succeeded, so the struct is initialised.
    let kind = unsafe { fs.assume_init() }.f_type as i64;
    !FLOCK_MAY_BE_RECORD_LOCK.contains(&kind)
}

fn is_busy(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EAGAIN | libc::EACCES))
}

/// Takes a write lock on `byte` if nobody holds a lock there; false if
/// someone does (a semaphore's slot: `slot.rs`).
pub(crate) fn try_write_lock(fd: BorrowedFd<'_>, byte: u64) -> io::Result<bool> {
    match ofd(fd, libc::F_OFD_SETLK, libc::F_WRLCK, byte, 1) {
        Ok(_) => Ok(true),
        Err(e) if is_busy(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Unlocks `byte`, taken with [`try_write_lock`].
pub(crate) fn unlock_byte(fd: BorrowedFd<'_>, byte: u64) {
    let _ = ofd(fd, libc::F_OFD_SETLK, libc::F_UNLCK, byte, 1);
}

/// Takes the gate if nobody holds it; false if someone does.
pub(crate) fn try_gate(fd: BorrowedFd<'_>) -> io::Result<bool> {
    match ofd(fd, libc::F_OFD_SETLK, libc::F_WRLCK, GATE, 1) {
        Ok(_) => Ok(true),
        Err(e) if is_busy(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Blocks until the gate is ours (`EINTR` when a signal interrupts).
pub(crate) fn wait_gate(fd: BorrowedFd<'_>) -> io::Result<()> {
    ofd(fd, libc::F_OFD_SETLKW, libc::F_WRLCK, GATE, 1).map(drop)
}

/// Who keeps the gate closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GateHolder {
    /// Nobody any more.
    Nobody,
    /// A write lock on byte 0 alone: a request drawing its ticket.
    Participant,
    /// Anything else: a read lock, a wider lock, a process's POSIX lock.
    Foreign(Foreign),
}

/// Looks at what holds the gate, without waiting.
pub(crate) fn gate_holder(fd: BorrowedFd<'_>) -> io::Result<GateHolder> {
    let found = ofd(fd, libc::F_OFD_GETLK, libc::F_WRLCK, GATE, 1)?;
    if found.l_type == libc::F_UNLCK as libc::c_short {
        return Ok(GateHolder::Nobody);
    }
    let foreign = Foreign::from_record(&found);
    let participant = foreign.write && foreign.pid.is_none() && foreign.start == GATE;
    Ok(if participant && foreign.end == Some(GATE) {
        GateHolder::Participant
    } else {
        GateHolder::Foreign(foreign)
    })
}

/// What a foreign lock on `byte` looks like, for a message; a lock that
/// is gone by now is described as a read lock on that byte alone.
fn foreign_at(fd: BorrowedFd<'_>, byte: u64) -> Foreign {
    match ofd(fd, libc::F_OFD_GETLK, libc::F_WRLCK, byte, 1) {
        Ok(found) if found.l_type != libc::F_UNLCK as libc::c_short => Foreign::from_record(&found),
        _ => Foreign {
            start: byte,
            end: Some(byte),
            write: false,
            pid: None,
        },
    }
}

/// The outcome of drawing a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drawn {
    /// A place in the queue.
    Ticket(Ticket),
    /// The byte of the next ticket or its marker is locked by someone
    /// outside the protocol (or the queue is full of such locks).
    Obstructed(Foreign),
}

/// Releases the gate.
pub(crate) fn open_gate(fd: BorrowedFd<'_>) {
    let _ = ofd(fd, libc::F_OFD_SETLK, libc::F_UNLCK, GATE, 1);
}

/// Draws the next ticket; the caller holds the gate.
pub(crate) fn take_ticket(fd: BorrowedFd<'_>, kind: Kind) -> io::Result<Drawn> {
    let number = highest(fd, TICKET_BASE, 1, SPAN - 1)?.map_or(1, |t| t + 1);
    if number >= SPAN {
        // Only a foreign write lock reaches the top of the range.
        return Ok(Drawn::Obstructed(foreign_at(fd, TICKET_BASE + SPAN - 1)));
    }
    let take = |byte: u64| match ofd(fd, libc::F_OFD_SETLK, libc::F_WRLCK, byte, 1) {
        Ok(_) => Ok(None),
        Err(e) if is_busy(&e) => Ok(Some(foreign_at(fd, byte))),
        Err(e) => Err(e),
    };
    if let Some(foreign) = take(TICKET_BASE + number)? {
        return Ok(Drawn::Obstructed(foreign));
    }
    let ticket = Ticket { number, kind };
    if let Some(marker) = marker(kind) {
        if let Some(foreign) = take(marker + number)? {
            leave(fd, ticket);
            return Ok(Drawn::Obstructed(foreign));
        }
    }
    Ok(Drawn::Ticket(ticket))
}

/// The marker range a request of `kind` holds a byte of beside its ticket.
fn marker(kind: Kind) -> Option<u64> {
    match kind {
        Kind::Exclusive => Some(MARK_BASE),
        Kind::Shared => None,
        Kind::AtMost(_) => Some(PLACE_MARK_BASE),
    }
}

/// Leaves the queue: unlocks the ticket and its marker.
pub(crate) fn leave(fd: BorrowedFd<'_>, ticket: Ticket) {
    let _ = ofd(
        fd,
        libc::F_OFD_SETLK,
        libc::F_UNLCK,
        TICKET_BASE + ticket.number,
        1,
    );
    if let Some(marker) = marker(ticket.kind) {
        let _ = ofd(
            fd,
            libc::F_OFD_SETLK,
            libc::F_UNLCK,
            marker + ticket.number,
            1,
        );
    }
}

/// The bytes `ticket` must wait on now, any one of which may let it move:
/// none when it may go ahead. An exclusive or shared request waits on one
/// predecessor; a request for one of N places, while N or more requests
/// ahead of it hold their tickets, on the N oldest of them (the ones
/// running), since whichever of them ends first frees a place. Tickets in
/// `passed` (stalled heads the request passed over) do not count.
pub(crate) fn blockers(fd: BorrowedFd<'_>, ticket: Ticket, passed: &[u64]) -> io::Result<Vec<u64>> {
    let below = ticket.number - 1;
    if below == 0 {
        return Ok(Vec::new());
    }
    let one = |found: Option<u64>, base: u64| found.map(|t| base + t).into_iter().collect();
    Ok(match ticket.kind {
        Kind::Exclusive => one(highest_but(fd, TICKET_BASE, below, passed)?, TICKET_BASE),
        Kind::Shared => match highest_but(fd, MARK_BASE, below, passed)? {
            Some(mark) => vec![MARK_BASE + mark],
            None => one(
                highest_but(fd, PLACE_MARK_BASE, below, passed)?,
                PLACE_MARK_BASE,
            ),
        },
        Kind::AtMost(n) => {
            // Like a shared request it never passes an exclusive one.
            if let Some(mark) = highest_but(fd, MARK_BASE, below, passed)? {
                return Ok(vec![MARK_BASE + mark]);
            }
            let mut oldest = Vec::new();
            let mut from = 1;
            while oldest.len() < n as usize {
                match lowest(fd, TICKET_BASE, from, below)? {
                    Some(t) if passed.contains(&t) => from = t + 1,
                    Some(t) => {
                        oldest.push(TICKET_BASE + t);
                        from = t + 1;
                    }
                    None => return Ok(Vec::new()),
                }
            }
            oldest
        }
    })
}

/// The ticket number a byte of [`blockers`] belongs to.
pub(crate) fn number_of(byte: u64) -> u64 {
    if byte >= PLACE_MARK_BASE {
        byte - PLACE_MARK_BASE
    } else if byte >= MARK_BASE {
        byte - MARK_BASE
    } else {
        byte - TICKET_BASE
    }
}

/// The head of the queue ahead of `ticket`: the oldest ticket still held,
/// but for those in `passed`.
pub(crate) fn head(fd: BorrowedFd<'_>, ticket: Ticket, passed: &[u64]) -> io::Result<Option<u64>> {
    let mut from = 1;
    while let Some(t) = lowest(fd, TICKET_BASE, from, ticket.number - 1)? {
        if !passed.contains(&t) {
            return Ok(Some(t));
        }
        from = t + 1;
    }
    Ok(None)
}

/// The ticket held right before ticket `number`, but for those in `passed`.
pub(crate) fn just_ahead_of(
    fd: BorrowedFd<'_>,
    number: u64,
    passed: &[u64],
) -> io::Result<Option<u64>> {
    highest_but(fd, TICKET_BASE, number.saturating_sub(1), passed)
}

/// The highest index held in `base + [1, hi]` that is not in `passed`.
fn highest_but(
    fd: BorrowedFd<'_>,
    base: u64,
    mut hi: u64,
    passed: &[u64],
) -> io::Result<Option<u64>> {
    while let Some(found) = highest(fd, base, 1, hi)? {
        if !passed.contains(&found) {
            return Ok(Some(found));
        }
        hi = found - 1;
    }
    Ok(None)
}

/// The first of [`blockers`], for tests that look at one predecessor.
#[cfg(test)]
fn blocker(fd: BorrowedFd<'_>, ticket: Ticket) -> io::Result<Option<u64>> {
    Ok(blockers(fd, ticket, &[])?.first().copied())
}

/// Blocks until the predecessor's byte `at` is released (`EINTR` when a
/// signal interrupts), then lets go of it again.
pub(crate) fn wait_for(fd: BorrowedFd<'_>, at: u64) -> io::Result<()> {
    ofd(fd, libc::F_OFD_SETLKW, libc::F_RDLCK, at, 1)?;
    let _ = ofd(fd, libc::F_OFD_SETLK, libc::F_UNLCK, at, 1);
    Ok(())
}

/// Blocks until the request at any one of `at` leaves: the calling thread
/// waits on the first byte and one helper thread on each of the others;
/// the helper whose predecessor leaves first interrupts the caller with
/// [`timer_signal`]. Returns `EINTR` like [`wait_for`] when the caller is
/// interrupted for another reason (the deadline, a signal of its own).
///
/// A helper whose predecessor left signals the caller again every
/// [`RESIGNAL`] until the caller's wait has ended: the caller may not be in
/// its `fcntl()` yet when the first signal lands, and a signal handled
/// before the call would leave it asleep until the first byte's owner
/// leaves. The timer signal is unblocked in the calling thread meanwhile,
/// as a deadline unblocks it. Helpers unblock only the timer signal, so a
/// Ctrl-C is delivered to the calling thread as before. Before returning,
/// the caller gives its helpers the word to stop ([`Stop`]: one waiting
/// between signals hears it at once) and interrupts those still in their
/// `fcntl()` with the same signal, sent again every [`STOP_AGAIN`] until
/// each has ended (one might be about to enter its wait when the first
/// arrives); it learns that they have ended from a channel they hold, not
/// by looking. Both are bounded waits after the event, not a poll for the
/// lock.
pub(crate) fn wait_for_any(fd: BorrowedFd<'_>, at: &[u64]) -> io::Result<()> {
    let Some((&first, others)) = at.split_first() else {
        return Ok(());
    };
    if others.is_empty() {
        return wait_for(fd, first);
    }
    install_noop_handler();
    let was_blocked = set_signal_blocked(timer_signal(), false)?;
    let raw = fd.as_raw_fd();
    // SAFETY: pthread_self has no preconditions.
    let caller = unsafe { libc::pthread_self() } as usize;
    let woken = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(Stop::default());
    // Every helper holds a sender until it ends: once all are dropped, the
    // receiver says so at once.
    let (running, ended) = mpsc::channel::<()>();
    let helpers: Vec<JoinHandle<()>> = others
        .iter()
        .map(|&byte| {
            let (woken, stop, running) = (Arc::clone(&woken), Arc::clone(&stop), running.clone());
            std::thread::spawn(move || {
                // SAFETY: `raw` stays open until every helper is joined below.
                let fd = unsafe { BorrowedFd::borrow_raw(raw) };
                helper_wait(fd, byte, caller, &woken, &stop);
                drop(running);
            })
        })
        .collect();
    drop(running);
    let result = wait_for(fd, first);
    stop.give();
    loop {
        for helper in helpers.iter().filter(|helper| !helper.is_finished()) {
            // SAFETY: the thread has not been joined, so its pthread_t is valid.
            unsafe { libc::pthread_kill(helper.as_pthread_t(), timer_signal()) };
        }
        if ended.recv_timeout(STOP_AGAIN) == Err(RecvTimeoutError::Disconnected) {
            break;
        }
    }
    for helper in helpers {
        let _ = helper.join();
    }
    if was_blocked {
        let _ = set_signal_blocked(timer_signal(), true);
    }
    match result {
        Err(e) if e.raw_os_error() == Some(libc::EINTR) && woken.load(Ordering::SeqCst) => Ok(()),
        other => other,
    }
}

/// How often a helper of [`wait_for_any`] signals the caller again until
/// the caller's wait has ended.
const RESIGNAL: Duration = Duration::from_millis(1);

/// How often the caller of [`wait_for_any`] signals a helper still in its
/// `fcntl()` again, should the first signal have come before the call.
const STOP_AGAIN: Duration = Duration::from_micros(200);

/// The word from the caller of [`wait_for_any`] to its helpers that its
/// wait is over. A helper waiting between two signals to the caller wakes
/// as soon as it is given.
#[derive(Default)]
struct Stop {
    given: Mutex<bool>,
    changed: Condvar,
}

impl Stop {
    fn give(&self) {
        *self.given.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.changed.notify_all();
    }

    fn given(&self) -> bool {
        *self.given.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits at most `timeout` for the word; true once it is given.
    fn wait(&self, timeout: Duration) -> bool {
        let given = self.given.lock().unwrap_or_else(PoisonError::into_inner);
        let (given, _) = self
            .changed
            .wait_timeout_while(given, timeout, |given| !*given)
            .unwrap_or_else(PoisonError::into_inner);
        *given
    }
}

/// One helper of [`wait_for_any`]: waits for `byte`'s owner to leave, then
/// wakes the caller until it stops the helpers; gives up when told to stop.
fn helper_wait(fd: BorrowedFd<'_>, byte: u64, caller: usize, woken: &AtomicBool, stop: &Stop) {
    only_timer_signal_unblocked();
    loop {
        if stop.given() {
            return;
        }
        match ofd(fd, libc::F_OFD_SETLKW, libc::F_RDLCK, byte, 1) {
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
            outcome => {
                if outcome.is_ok() {
                    let _ = ofd(fd, libc::F_OFD_SETLK, libc::F_UNLCK, byte, 1);
                }
                if stop.given() {
                    return;
                }
                woken.store(true, Ordering::SeqCst);
                loop {
                    // SAFETY: the caller's thread waits in wait_for_any and
                    // joins this thread before it returns, so it is alive.
                    unsafe { libc::pthread_kill(caller as libc::pthread_t, timer_signal()) };
                    if stop.wait(RESIGNAL) {
                        return;
                    }
                }
            }
        }
    }
}

/// Blocks every signal in this thread but [`timer_signal`], so that
/// process-directed signals (Ctrl-C) go to the thread that handles them.
fn only_timer_signal_unblocked() {
    // SAFETY: the set is initialised by sigfillset before use, and
    // pthread_sigmask only changes this thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::sigdelset(&mut set, timer_signal());
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// The first byte of a write lock another description holds in
/// `base + [lo, hi]`, as an index from `base`, if there is one.
fn probe(fd: BorrowedFd<'_>, base: u64, lo: u64, hi: u64) -> io::Result<Option<u64>> {
    // A read request conflicts only with write locks: tickets and markers,
    // not other waiters' passing read locks on them.
    let found = ofd(fd, libc::F_OFD_GETLK, libc::F_RDLCK, base + lo, hi - lo + 1)?;
    if found.l_type == libc::F_UNLCK as libc::c_short {
        return Ok(None);
    }
    let start = (found.l_start as u64).saturating_sub(base);
    Ok(Some(start.clamp(lo, hi)))
}

/// The highest held index in `base + [lo, hi]`.
fn highest(fd: BorrowedFd<'_>, base: u64, mut lo: u64, mut hi: u64) -> io::Result<Option<u64>> {
    // Mostly the queue is empty: one probe of the whole range says so,
    // where the bisection alone would take some forty.
    if lo > hi || probe(fd, base, lo, hi)?.is_none() {
        return Ok(None);
    }
    let mut best = None;
    while lo <= hi {
        let mid = lo + (hi - lo) / 2;
        match probe(fd, base, mid, hi)? {
            Some(found) => {
                best = Some(found);
                lo = found + 1;
            }
            None if mid == lo => break,
            None => hi = mid - 1,
        }
    }
    Ok(best)
}

/// The lowest held index in `base + [lo, hi]`.
fn lowest(fd: BorrowedFd<'_>, base: u64, mut lo: u64, mut hi: u64) -> io::Result<Option<u64>> {
    if lo > hi || probe(fd, base, lo, hi)?.is_none() {
        return Ok(None);
    }
    let mut best = None;
    while lo <= hi {
        let mid = lo + (hi - lo) / 2;
        match probe(fd, base, lo, mid)? {
            Some(found) => {
                best = Some(found);
                if found == lo {
                    break;
                }
                hi = found - 1;
            }
            None => lo = mid + 1,
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::fd::AsFd;
    use std::sync::mpsc::{self, Receiver};

    /// How long any one blocking step of these tests may take: generous,
    /// so a loaded machine never fails them, and a lost wake-up fails
    /// rather than hangs.
    const BOUND: Duration = Duration::from_secs(60);

    /// How many times a wake-up is raced against the caller's own wait.
    const WAKE_UPS: usize = 500;

    /// Runs `wait` in a thread of its own; its result comes through the
    /// receiver (see [`woken`]).
    fn waiter<T: Send + 'static>(wait: impl FnOnce() -> T + Send + 'static) -> Receiver<T> {
        let (done, result) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(wait());
        });
        result
    }

    /// The result of a [`waiter`], which must come within [`BOUND`].
    fn woken<T>(result: &Receiver<T>) -> T {
        result
            .recv_timeout(BOUND)
            .unwrap_or_else(|e| panic!("the waiter did not wake within {BOUND:?}: {e}"))
    }

    fn files(n: usize) -> (tempfile::TempDir, Vec<File>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.lock");
        File::create(&path).unwrap();
        let open = || {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap()
        };
        (dir, (0..n).map(|_| open()).collect())
    }

    fn enqueue(file: &File, kind: Kind) -> Ticket {
        assert!(try_gate(file.as_fd()).unwrap());
        let Drawn::Ticket(ticket) = take_ticket(file.as_fd(), kind).unwrap() else {
            panic!("obstructed");
        };
        open_gate(file.as_fd());
        ticket
    }

    #[test]
    fn a_read_write_descriptor_on_a_local_file_system_can_queue() {
        let (dir, f) = files(1);
        assert!(usable(f[0].as_fd()));
        let read_only = File::open(dir.path().join("q.lock")).unwrap();
        assert!(!usable(read_only.as_fd()));
    }

    #[test]
    fn tickets_rise_and_restart_once_the_queue_empties() {
        let (_dir, f) = files(4);
        let numbers: Vec<u64> = f[..3]
            .iter()
            .map(|file| enqueue(file, Kind::Exclusive).number)
            .collect();
        assert_eq!(numbers, [1, 2, 3]);
        // The middle one leaves: the next is still above all live ones.
        leave(
            f[1].as_fd(),
            Ticket {
                number: 2,
                kind: Kind::Exclusive,
            },
        );
        assert_eq!(enqueue(&f[3], Kind::Shared).number, 4);
        for (file, number) in [(&f[0], 1), (&f[2], 3), (&f[3], 4)] {
            leave(
                file.as_fd(),
                Ticket {
                    number,
                    kind: Kind::Exclusive,
                },
            );
        }
        assert_eq!(enqueue(&f[1], Kind::Shared).number, 1);
    }

    #[test]
    fn the_search_finds_the_extremes_among_scattered_tickets() {
        let (_dir, f) = files(2);
        let held = [3u64, 17, 1000, 65_537, SPAN - 2];
        for t in held {
            ofd(
                f[0].as_fd(),
                libc::F_OFD_SETLK,
                libc::F_WRLCK,
                TICKET_BASE + t,
                1,
            )
            .unwrap();
        }
        let probe_fd = f[1].as_fd();
        assert_eq!(
            highest(probe_fd, TICKET_BASE, 1, SPAN - 1).unwrap(),
            Some(SPAN - 2)
        );
        assert_eq!(highest(probe_fd, TICKET_BASE, 1, 999).unwrap(), Some(17));
        assert_eq!(lowest(probe_fd, TICKET_BASE, 1, SPAN - 1).unwrap(), Some(3));
        assert_eq!(
            lowest(probe_fd, TICKET_BASE, 18, SPAN - 1).unwrap(),
            Some(1000)
        );
        assert_eq!(lowest(probe_fd, TICKET_BASE, 4, 16).unwrap(), None);
        assert_eq!(highest(probe_fd, TICKET_BASE, 1, 2).unwrap(), None);
        // Its own locks are invisible to a description.
        assert_eq!(
            highest(f[0].as_fd(), TICKET_BASE, 1, SPAN - 1).unwrap(),
            None
        );
    }

    #[test]
    fn each_kind_waits_for_the_right_predecessors() {
        let (_dir, f) = files(5);
        let shared = enqueue(&f[0], Kind::Shared);
        let exclusive = enqueue(&f[1], Kind::Exclusive);
        let late_shared = enqueue(&f[2], Kind::Shared);
        let two = enqueue(&f[3], Kind::AtMost(2));
        let four = enqueue(&f[4], Kind::AtMost(4));
        assert_eq!(blocker(f[0].as_fd(), shared).unwrap(), None);
        assert_eq!(
            blocker(f[1].as_fd(), exclusive).unwrap(),
            Some(TICKET_BASE + 1)
        );
        assert_eq!(
            blocker(f[2].as_fd(), late_shared).unwrap(),
            Some(MARK_BASE + 2)
        );
        // Behind an exclusive request, a semaphore request waits for it first.
        assert_eq!(blocker(f[3].as_fd(), two).unwrap(), Some(MARK_BASE + 2));
        assert_eq!(blocker(f[4].as_fd(), four).unwrap(), Some(MARK_BASE + 2));
        leave(f[1].as_fd(), exclusive);
        assert_eq!(blocker(f[3].as_fd(), two).unwrap(), Some(TICKET_BASE + 1));
        assert_eq!(blocker(f[4].as_fd(), four).unwrap(), None, "3 ahead < 4");
        leave(f[0].as_fd(), shared);
        assert_eq!(blocker(f[3].as_fd(), two).unwrap(), None, "1 ahead < 2");
        // A dead owner's ticket is gone with its descriptor.
        drop(f);
    }

    #[test]
    fn a_shared_request_waits_for_the_semaphore_holders_ahead_of_it() {
        let (_dir, f) = files(4);
        let place = enqueue(&f[0], Kind::AtMost(3));
        let shared = enqueue(&f[1], Kind::Shared);
        assert_eq!(
            blocker(f[1].as_fd(), shared).unwrap(),
            Some(PLACE_MARK_BASE + 1)
        );
        // A later request for a place counts the shared one as taking one.
        let one = enqueue(&f[2], Kind::AtMost(1));
        assert_eq!(blocker(f[2].as_fd(), one).unwrap(), Some(TICKET_BASE + 1));
        leave(f[0].as_fd(), place);
        assert_eq!(blocker(f[1].as_fd(), shared).unwrap(), None);
        assert_eq!(blocker(f[2].as_fd(), one).unwrap(), Some(TICKET_BASE + 2));
        // A shared request behind a place request still waits for it.
        let late = enqueue(&f[3], Kind::Shared);
        assert_eq!(
            blocker(f[3].as_fd(), late).unwrap(),
            Some(PLACE_MARK_BASE + 3)
        );
    }

    #[test]
    fn a_place_freed_by_the_younger_of_two_holders_lets_the_next_in() {
        let (_dir, mut f) = files(3);
        let older = enqueue(&f[0], Kind::AtMost(2));
        let younger = enqueue(&f[1], Kind::AtMost(2));
        let next = enqueue(&f[2], Kind::AtMost(2));
        let at = blockers(f[2].as_fd(), next, &[]).unwrap();
        assert_eq!(at, [TICKET_BASE + 1, TICKET_BASE + 2]);
        let waiter_file = f.pop().unwrap();
        let waiter = waiter(move || {
            wait_for_any(waiter_file.as_fd(), &at).unwrap();
            blockers(waiter_file.as_fd(), next, &[]).unwrap()
        });
        leave(f[1].as_fd(), younger);
        assert!(woken(&waiter).is_empty(), "one place is free");
        let _ = older;
    }

    #[test]
    fn a_wake_up_that_comes_before_the_caller_blocks_is_not_lost() {
        let (_dir, mut f) = files(2);
        // Ticket 1 stays held; byte 2 is free, so the helper waiting on it
        // wakes the caller at once, often before the caller is in its own
        // wait on byte 1.
        let _held = enqueue(&f[0], Kind::Exclusive);
        let waiter_file = f.pop().unwrap();
        let waiter = waiter(move || {
            for _ in 0..WAKE_UPS {
                wait_for_any(waiter_file.as_fd(), &[TICKET_BASE + 1, TICKET_BASE + 2]).unwrap();
            }
        });
        let outcome = waiter.recv_timeout(BOUND);
        // Let a stuck waiter go before failing.
        drop(f);
        assert!(outcome.is_ok(), "a wake-up was lost: {outcome:?}");
    }

    #[test]
    fn a_caller_that_blocks_the_timer_signal_is_woken_all_the_same() {
        let (_dir, mut f) = files(2);
        let _held = enqueue(&f[0], Kind::Exclusive);
        let waiter_file = f.pop().unwrap();
        let waiter = waiter(move || {
            set_signal_blocked(timer_signal(), true).unwrap();
            wait_for_any(waiter_file.as_fd(), &[TICKET_BASE + 1, TICKET_BASE + 2]).unwrap();
            // And it is blocked again afterwards, as the caller had it.
            set_signal_blocked(timer_signal(), true).unwrap()
        });
        let outcome = waiter.recv_timeout(BOUND);
        drop(f);
        assert_eq!(outcome, Ok(true), "the caller was not woken");
    }

    #[test]
    fn a_read_lock_on_the_gate_is_foreign_and_a_drawing_request_is_not() {
        let (dir, f) = files(2);
        let reader = File::open(dir.path().join("q.lock")).unwrap();
        ofd(reader.as_fd(), libc::F_OFD_SETLK, libc::F_RDLCK, GATE, 1).unwrap();
        assert!(!try_gate(f[0].as_fd()).unwrap());
        match gate_holder(f[0].as_fd()).unwrap() {
            GateHolder::Foreign(foreign) => assert!(!foreign.write && foreign.pid.is_none()),
            other => panic!("{other:?}"),
        }
        drop(reader);
        assert!(try_gate(f[0].as_fd()).unwrap());
        assert_eq!(gate_holder(f[1].as_fd()).unwrap(), GateHolder::Participant);
        open_gate(f[0].as_fd());
        assert_eq!(gate_holder(f[1].as_fd()).unwrap(), GateHolder::Nobody);
    }

    #[test]
    fn a_locked_ticket_or_marker_byte_obstructs_the_draw_and_keeps_nothing() {
        let (dir, f) = files(2);
        let reader = File::open(dir.path().join("q.lock")).unwrap();
        ofd(
            reader.as_fd(),
            libc::F_OFD_SETLK,
            libc::F_RDLCK,
            MARK_BASE + 1,
            1,
        )
        .unwrap();
        assert!(try_gate(f[0].as_fd()).unwrap());
        let drawn = take_ticket(f[0].as_fd(), Kind::Exclusive).unwrap();
        assert!(matches!(drawn, Drawn::Obstructed(foreign) if foreign.start == MARK_BASE + 1));
        // The ticket taken before the marker failed is given back.
        assert_eq!(
            highest(f[1].as_fd(), TICKET_BASE, 1, SPAN - 1).unwrap(),
            None
        );
        // A shared request needs no marker, so it draws ticket 1.
        assert!(matches!(
            take_ticket(f[0].as_fd(), Kind::Shared).unwrap(),
            Drawn::Ticket(Ticket { number: 1, .. })
        ));
    }

    #[test]
    fn passed_over_tickets_neither_block_nor_head_the_queue() {
        let (_dir, f) = files(3);
        let _stalled = enqueue(&f[0], Kind::Exclusive);
        let _second = enqueue(&f[1], Kind::Exclusive);
        let third = enqueue(&f[2], Kind::Exclusive);
        let fd = f[2].as_fd();
        assert_eq!(blockers(fd, third, &[]).unwrap(), [TICKET_BASE + 2]);
        assert_eq!(head(fd, third, &[]).unwrap(), Some(1));
        assert_eq!(just_ahead_of(fd, 2, &[]).unwrap(), Some(1));
        assert_eq!(head(fd, third, &[1]).unwrap(), Some(2));
        assert_eq!(blockers(fd, third, &[2]).unwrap(), [TICKET_BASE + 1]);
        assert!(blockers(fd, third, &[1, 2]).unwrap().is_empty());
    }

    #[test]
    fn a_waiter_wakes_when_its_predecessor_leaves() {
        let (_dir, mut f) = files(2);
        let first = enqueue(&f[0], Kind::Exclusive);
        let second = enqueue(&f[1], Kind::Exclusive);
        let at = blocker(f[1].as_fd(), second).unwrap().unwrap();
        let waiter_file = f.pop().unwrap();
        let waiter = waiter(move || {
            wait_for(waiter_file.as_fd(), at).unwrap();
            blocker(waiter_file.as_fd(), second).unwrap()
        });
        let _ = first;
        // Closing the only descriptor releases the ticket, as a death would.
        drop(f);
        assert_eq!(woken(&waiter), None);
    }
}
