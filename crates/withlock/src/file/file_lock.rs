//! The local lock: flock(2) on a lock file, found by name or by path.
//!
//! Linux only. Taking the lock:
//! 1. open and check the lock directory ([`crate::file::lock_dir`]);
//! 2. open or create the lock file inside it ([`crate::file::lock_file`]);
//! 3. queue in arrival order ([`crate::file::queue`]): draw a ticket, wait in
//!    the kernel until the requests ahead that matter are gone;
//! 4. flock(2) it, shared or exclusive, waiting in the kernel
//!    ([`crate::flock_wait`]) for peers that do not queue (flock(1));
//! 5. check the path still names the file we locked: if it was deleted or
//!    replaced meanwhile, our lock guards nothing, so unlock and start over
//!    on the file that is there now;
//! 6. set the "held since" stamp ([`crate::file::since_stamp`]).
//!
//! flock(2) locks belong to the open file description, so they exclude
//! flock(1) and every other flock-based tool on the same file, survive
//! `fork` and `exec` in whoever inherits the descriptor, and are released by
//! the kernel when the last such descriptor closes. withlock never deletes a
//! lock file: deleting a held one would let the next caller lock a new file.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{FileStat, fstat, fstatat};

use crate::deadline::Deadline;
use crate::error::{Error, Result};
use crate::file::deadline_stamp;
use crate::file::lock_dir::{self, LockDir};
use crate::file::lock_file::{self, MAX_ATTEMPTS};
use crate::file::obstruction::{self, Foreign};
use crate::file::place_stamp;
use crate::file::queue::{self, Drawn, GateHolder, Kind, Ticket};
use crate::file::run_record::RunRecord;
use crate::file::since_stamp;
use crate::file::slot;
use crate::flock_wait::{self, Outcome};
use crate::holder::Holders;
use crate::lock::{Lock, WaitHooks};
use crate::name::LockName;
use crate::proc_locks::{self, FileId};
use crate::request::Mode;
use crate::run_record::LastSuccess;
use crate::spec::FileTarget;

/// How often a busy lock whose holder cannot be seen is tried again.
const UNSEEN_HOLDER_RETRIES: u32 = 3;

/// How a request came out of the queue's gate.
enum Entered {
    /// With a ticket.
    Queued(Ticket),
    /// Without one: a foreign lock obstructs the queue; the flock is taken
    /// unordered.
    Unordered(Foreign),
    /// Not at all: the deadline passed or the caller stopped the wait.
    Stopped(Outcome),
}

/// How a wait in the queue ended.
enum Turn {
    /// Its turn: take the flock. `passed_over` when a stalled request
    /// ahead was passed over.
    Go { passed_over: bool },
    /// Given up.
    Stop(Outcome),
}

/// A lock on a file: `<dir>/<name>.lock` for a lock name, or any path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLock {
    dir: PathBuf,
    file_name: String,
    label: String,
    mode: Mode,
    max: Option<u32>,
}

impl FileLock {
    /// The lock called `name` in `dir`, or in [`lock_dir::default_dir`].
    pub fn named(name: &str, dir: Option<&Path>) -> Result<FileLock> {
        Ok(FileLock::in_dir(&LockName::new(name)?, dir))
    }

    /// The lock called `name`, already checked, in `dir` or in
    /// [`lock_dir::default_dir`].
    pub(crate) fn in_dir(name: &LockName, dir: Option<&Path>) -> FileLock {
        FileLock {
            dir: dir.map_or_else(lock_dir::default_dir, Path::to_owned),
            file_name: name.file_name(),
            label: name.to_string(),
            mode: Mode::Exclusive,
            max: None,
        }
    }

    /// The lock on the file at `path`, shared with flock(1) on that path.
    pub fn at_path(path: &Path) -> Result<FileLock> {
        let invalid = |reason| Error::InvalidName {
            name: path.display().to_string(),
            reason,
        };
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| *n != "." && *n != "..")
            .ok_or_else(|| invalid("a lock path must end in a UTF-8 file name"))?;
        let dir = match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
            _ => PathBuf::from("."),
        };
        Ok(FileLock {
            dir,
            file_name: file_name.to_owned(),
            label: path.display().to_string(),
            mode: Mode::Exclusive,
            max: None,
        })
    }

    /// A lock name, or a path when `spec` contains `/`, as
    /// [`FileTarget::parse`] reads it.
    pub fn parse(spec: &str, dir: Option<&Path>) -> Result<FileLock> {
        FileLock::at(&FileTarget::parse(spec)?, dir)
    }

    /// The lock `target` names, exclusive; a name is a lock file in `dir`,
    /// or in [`lock_dir::default_dir`].
    pub fn at(target: &FileTarget, dir: Option<&Path>) -> Result<FileLock> {
        match target {
            FileTarget::Name(name) => Ok(FileLock::in_dir(name, dir)),
            FileTarget::Path(path) => FileLock::at_path(path),
        }
    }

    /// The same lock, taken in `mode` (and no longer as a semaphore).
    pub fn with_mode(mut self, mode: Mode) -> FileLock {
        self.mode = mode;
        self.max = None;
        self
    }

    /// The same lock as a counting semaphore: up to `max` holders at once
    /// (at least 1), served in arrival order like every request.
    ///
    /// Such a holder takes the flock shared, so it excludes exclusive
    /// holders (and flock(1) `-x`); use the same `max` for every holder of
    /// a name. Shared requests count too: each takes a place, and one
    /// arriving behind a semaphore's holders or waiters waits until they
    /// are gone (it does not know N), so there are never more than `max`
    /// holders while any semaphore holder runs. Only withlock clients
    /// count: flock(1) `-s` peers are not limited.
    pub fn with_max(mut self, max: u32) -> FileLock {
        self.mode = Mode::Shared;
        self.max = Some(max.max(1));
        self
    }

    /// The semaphore's limit, if it is one ([`FileLock::with_max`]).
    pub fn max(&self) -> Option<u32> {
        self.max
    }

    fn queue_kind(&self) -> Kind {
        match (self.max, self.mode) {
            (Some(n), _) => Kind::AtMost(n),
            (None, Mode::Exclusive) => Kind::Exclusive,
            (None, Mode::Shared) => Kind::Shared,
        }
    }

    /// The mode it will be taken in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The lock file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.file_name)
    }

    /// The name, or the path for a lock given by path.
    pub fn label(&self) -> &str {
        &self.label
    }

    fn attempt(
        &self,
        fd: BorrowedFd<'_>,
        deadline: Deadline,
        hooks: &mut dyn WaitHooks,
    ) -> Result<(Outcome, Option<Ticket>, Mode)> {
        let io = |e: std::io::Error| Error::io(format!("lock {}", self.path().display()), e);
        let may_wait = deadline.may_wait();
        let mut waiting = Waiting {
            fd,
            deadline: deadline.end().filter(|_| may_wait),
            exclusive: self.mode == Mode::Exclusive && self.max.is_none(),
            hooks,
            stamp: None,
            told: false,
        };
        let mut mode = self.mode;
        let ticket = if queue::usable(fd) {
            match self.enqueue(&mut waiting, may_wait).map_err(io)? {
                Entered::Queued(ticket) => Some(ticket),
                Entered::Unordered(foreign) => {
                    self.tell_obstructed(fd, &foreign, waiting.hooks);
                    mode = self.unordered_mode();
                    waiting.exclusive = mode == Mode::Exclusive;
                    None
                }
                Entered::Stopped(outcome) => return Ok((outcome, None, mode)),
            }
        } else {
            None
        };
        let leave = |outcome: Outcome| {
            if let Some(ticket) = ticket {
                queue::leave(fd, ticket);
            }
            Ok((outcome, None, self.mode))
        };
        if let Some(ticket) = ticket {
            match self.wait_turn(&mut waiting, ticket, may_wait).map_err(io)? {
                Turn::Go { passed_over: false } => {}
                Turn::Go { passed_over: true } => mode = self.unordered_mode(),
                Turn::Stop(outcome) => return leave(outcome),
            }
        }
        let outcome = match flock_wait::try_lock(fd, mode).map_err(io)? {
            Outcome::Busy if may_wait => waiting
                .block(None, &mut || flock_wait::flock_once(fd, mode))
                .map_err(io)?,
            outcome => outcome,
        };
        if outcome == Outcome::Locked {
            Ok((outcome, ticket, mode))
        } else {
            leave(outcome)
        }
    }

    /// The flock mode of a request that is not counted in the queue's
    /// order: a semaphore's then takes it exclusively, since the others
    /// count only requests in the queue, so the limit still holds.
    fn unordered_mode(&self) -> Mode {
        if self.max.is_some() {
            Mode::Exclusive
        } else {
            self.mode
        }
    }

    /// Draws a ticket under the gate; a request that will have to wait
    /// stamps itself there too, so waiting stamps rise in ticket order.
    fn enqueue(&self, waiting: &mut Waiting<'_, '_>, may_wait: bool) -> std::io::Result<Entered> {
        let fd = waiting.fd;
        if let Some(instead) = self.enter_gate(waiting, may_wait)? {
            return Ok(instead);
        }
        let drawn = queue::take_ticket(fd, self.queue_kind());
        if let Ok(Drawn::Ticket(ticket)) = drawn {
            if may_wait && queue::blockers(fd, ticket, &[]).is_ok_and(|b| !b.is_empty()) {
                waiting.stamp();
            }
        }
        queue::open_gate(fd);
        Ok(match drawn? {
            Drawn::Ticket(ticket) => Entered::Queued(ticket),
            Drawn::Obstructed(foreign) => Entered::Unordered(foreign),
        })
    }

    /// Takes the queue's gate: `None` once it is ours, else what the
    /// request does instead. Another request holds the gate for
    /// microseconds, so it is waited for at most [`queue::GATE_BOUND`];
    /// any other lock on it is foreign and not waited for at all.
    fn enter_gate(
        &self,
        waiting: &mut Waiting<'_, '_>,
        may_wait: bool,
    ) -> std::io::Result<Option<Entered>> {
        let fd = waiting.fd;
        let stuck = Foreign {
            start: queue::GATE,
            end: Some(queue::GATE),
            write: true,
            pid: None,
        };
        for _ in 0..MAX_ATTEMPTS {
            if queue::try_gate(fd)? {
                return Ok(None);
            }
            match queue::gate_holder(fd)? {
                GateHolder::Nobody => continue,
                GateHolder::Foreign(foreign) => return Ok(Some(Entered::Unordered(foreign))),
                GateHolder::Participant => {}
            }
            let bound = Instant::now() + queue::GATE_BOUND;
            let limit = match waiting.deadline {
                Some(deadline) if may_wait => deadline.min(bound),
                _ => bound,
            };
            let hooks = &mut *waiting.hooks;
            match flock_wait::block(Some(limit), &mut || hooks.interrupted(), &mut || {
                queue::wait_gate(fd)
            })? {
                Outcome::Locked => return Ok(None),
                Outcome::TimedOut if waiting.past_deadline() => {
                    return Ok(Some(Entered::Stopped(Outcome::TimedOut)));
                }
                Outcome::TimedOut => {
                    return Ok(Some(Entered::Unordered(match queue::gate_holder(fd)? {
                        GateHolder::Foreign(foreign) => foreign,
                        _ => stuck,
                    })));
                }
                outcome => return Ok(Some(Entered::Stopped(outcome))),
            }
        }
        Ok(Some(Entered::Unordered(stuck)))
    }

    /// Waits in the queue until the requests ahead that matter are gone.
    ///
    /// Mostly it sleeps in the kernel on the bytes of those requests, and
    /// on the ticket just ahead of the first of them, so as to wake when
    /// that one reaches the head of the queue. From then on it also checks
    /// after [`queue::STALL_BOUND`]: if the head still holds its ticket
    /// while nobody holds the flock, the head is stopped or frozen (or its
    /// ticket is a foreign lock) and is passed over. The check goes on
    /// only while nobody holds the lock, or a waiter ahead is stopped.
    fn wait_turn(
        &self,
        waiting: &mut Waiting<'_, '_>,
        ticket: Ticket,
        may_wait: bool,
    ) -> std::io::Result<Turn> {
        let fd = waiting.fd;
        let mut passed = Vec::new();
        let mut check = true;
        loop {
            let at = queue::blockers(fd, ticket, &passed)?;
            if at.is_empty() {
                return Ok(Turn::Go {
                    passed_over: !passed.is_empty(),
                });
            }
            if !may_wait {
                return Ok(Turn::Stop(Outcome::Busy));
            }
            let head = queue::head(fd, ticket, &passed)?
                .filter(|head| at.iter().any(|&byte| queue::number_of(byte) == *head));
            let outcome = match head {
                None => {
                    let mut watch = at.clone();
                    if let Some(first) = at.iter().map(|&byte| queue::number_of(byte)).min() {
                        if let Some(ahead) = queue::just_ahead_of(fd, first, &passed)? {
                            watch.push(queue::TICKET_BASE + ahead);
                        }
                    }
                    waiting.block(None, &mut || queue::wait_for_any(fd, &watch))?
                }
                Some(_) if !check => waiting.block(None, &mut || queue::wait_for_any(fd, &at))?,
                Some(head) => {
                    let soon = Instant::now() + queue::STALL_BOUND;
                    match waiting.block(Some(soon), &mut || queue::wait_for_any(fd, &at))? {
                        Outcome::TimedOut if !waiting.past_deadline() => {
                            // It may have left just as the timer fired.
                            if queue::head(fd, ticket, &passed)? != Some(head) {
                                continue;
                            }
                            let state = fstat(fd)
                                .map(|st| Holders::of_file(&st))
                                .unwrap_or_default();
                            let me = std::process::id() as i32;
                            if state.holders.is_empty() {
                                self.tell_passed_over(&state, head, waiting.hooks);
                                passed.push(head);
                            } else {
                                check = state.stopped_waiter_ahead_of(me).is_some();
                            }
                            continue;
                        }
                        outcome => outcome,
                    }
                }
            };
            if outcome != Outcome::Locked {
                return Ok(Turn::Stop(outcome));
            }
            check = true;
        }
    }

    /// Says that the queue is obstructed and by whom, unless the caller
    /// shows no holders.
    fn tell_obstructed(&self, fd: BorrowedFd<'_>, foreign: &Foreign, hooks: &mut dyn WaitHooks) {
        if !hooks.name_holders() {
            return;
        }
        let what = match fstat(fd) {
            Ok(st) => foreign.describe(&st),
            Err(_) => "a record lock outside its protocol".to_owned(),
        };
        hooks.notice(&format!(
            "the queue of {} is obstructed by {what}; taking the lock without it, \
             in no particular order, as flock(1) does",
            self.label
        ));
    }

    /// Says which request at the head of the queue was passed over.
    fn tell_passed_over(&self, state: &Holders, head: u64, hooks: &mut dyn WaitHooks) {
        if !hooks.name_holders() {
            return;
        }
        let me = std::process::id() as i32;
        let ahead = state
            .stopped_waiter_ahead_of(me)
            .or_else(|| state.waiters.first().filter(|w| w.pid != me));
        let who = match ahead {
            Some(waiter) if waiter.is_stopped() => format!("{waiter} (stopped)"),
            Some(waiter) => waiter.to_string(),
            None => format!("queue ticket {head}, whose owner cannot be seen"),
        };
        hooks.notice(&format!(
            "passing over {who}: its turn for {} came, but it left the lock free for {} \
             without taking it",
            self.label,
            crate::human_duration(queue::STALL_BOUND)
        ));
    }

    /// Who holds and waits for the lock, and what obstructs its queue
    /// (see [`crate::file::obstruction`]), from one read of `/proc/locks`.
    pub(crate) fn status(&self) -> Result<(Holders, Option<String>)> {
        let dir = LockDir::open(&self.dir)?;
        match fstatat(
            dir.fd(),
            self.file_name.as_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => file_status(&st).map_err(|e| Error::io("read /proc/locks", e)),
            Err(Errno::ENOENT) => Ok((Holders::default(), None)),
            Err(e) => Err(Error::io(format!("stat {}", self.path().display()), e)),
        }
    }

    /// The slot of a holder of one of `max` places: `None` for a holder
    /// that cannot write the lock file; busy (the guard, dropped, gives
    /// the place back) when all are taken from outside the semaphore.
    fn claim_slot(&self, guard: &FileGuard, max: u32) -> Result<Option<u32>> {
        let fd = guard.as_fd();
        if !queue::usable(fd) {
            return Ok(None);
        }
        let io = |e| Error::io(format!("claim a slot of {}", self.path().display()), e);
        match slot::claim(fd, max).map_err(io)? {
            Some(slot) => Ok(Some(slot)),
            None if guard.mode() == Mode::Exclusive => Ok(Some(slot::alone(fd))),
            None => Err(Error::Busy {
                lock: self.label.clone(),
                holders: Holders::unidentified(format!(
                    "all {max} of its slots are taken from outside its --max {max} holders \
                     (a holder with another --max, or a record lock on the slot bytes); use the \
                     same --max for every holder of a name"
                )),
            }),
        }
    }

    fn conflict(&self, outcome: Outcome, fd: &OwnedFd, deadline: Deadline, name: bool) -> Error {
        if outcome == Outcome::Interrupted {
            return Error::Interrupted {
                lock: self.label.clone(),
            };
        }
        let holders = match fstat(fd) {
            Ok(st) if name => Holders::of_file(&st),
            _ => Holders::default(),
        };
        deadline.refuse(self.label.clone(), holders)
    }
}

impl Lock for FileLock {
    type Guard = FileGuard;

    fn acquire_until(&self, deadline: Deadline, hooks: &mut dyn WaitHooks) -> Result<FileGuard> {
        let dir = LockDir::open(&self.dir)?;
        let mut unseen_retries = 0;
        for _ in 0..MAX_ATTEMPTS {
            let fd = lock_file::open_or_create(&dir, &self.file_name)?;
            // Waiting or holding, a semaphore request says what it is; the
            // mark goes when `fd` is closed, whatever the outcome.
            let marked = self.max.is_some() && place_stamp::set(fd.as_fd());
            match self.attempt(fd.as_fd(), deadline, hooks)? {
                (Outcome::Locked, ticket, mode) => {
                    if lock_file::still_at_path(&dir, &self.file_name, &fd)? {
                        let mut guard = FileGuard::new(fd, self.path(), mode);
                        guard.ticket = ticket;
                        guard.place_stamp = marked;
                        if let Some(max) = self.max {
                            guard.slot = self.claim_slot(&guard, max)?;
                        }
                        return Ok(guard);
                    }
                    // Deleted or replaced while we waited: lock what is there now.
                    let _ = flock_wait::unlock(fd.as_fd());
                    if let Some(ticket) = ticket {
                        queue::leave(fd.as_fd(), ticket);
                    }
                }
                (outcome, _, _) => {
                    let name = hooks.name_holders();
                    let error = self.conflict(outcome, &fd, deadline, name);
                    // The holder may have let go between our attempt and the
                    // look-up; try again rather than blame nobody. A holder we
                    // cannot see at all (another PID namespace) stays unseen,
                    // so only a few times.
                    let nobody = error.holders().is_some_and(Holders::is_empty);
                    unseen_retries += 1;
                    let retry = name
                        && nobody
                        && matches!(outcome, Outcome::Busy)
                        && unseen_retries <= UNSEEN_HOLDER_RETRIES;
                    if !retry {
                        return Err(error);
                    }
                }
            }
        }
        Err(Error::KeepsChanging {
            path: self.path(),
            attempts: MAX_ATTEMPTS,
        })
    }

    fn holders(&self) -> Result<Holders> {
        Ok(self.status()?.0)
    }

    fn describe(&self) -> String {
        self.label.clone()
    }
}

/// One request's waits: they share the deadline, tell the hooks once
/// and stamp the waiter once.
struct Waiting<'f, 'h> {
    fd: BorrowedFd<'f>,
    deadline: Option<Instant>,
    exclusive: bool,
    hooks: &'h mut dyn WaitHooks,
    stamp: Option<u64>,
    told: bool,
}

impl Waiting<'_, '_> {
    /// Stamps the waiter, so an inspection can list it in arrival order
    /// and say since when it waits.
    fn stamp(&mut self) {
        if self.stamp.is_none() {
            self.stamp = since_stamp::stamp_waiting(self.fd, SystemTime::now(), self.exclusive);
        }
    }

    /// Blocks in `call` until it succeeds, the deadline (or `sooner`)
    /// passes or the hooks ask to stop.
    fn block(
        &mut self,
        sooner: Option<Instant>,
        call: &mut dyn FnMut() -> std::io::Result<()>,
    ) -> std::io::Result<Outcome> {
        self.stamp();
        if !self.told {
            self.told = true;
            self.hooks.waiting();
        }
        let limit = match (self.deadline, sooner) {
            (Some(deadline), Some(sooner)) => Some(deadline.min(sooner)),
            (deadline, sooner) => deadline.or(sooner),
        };
        let hooks = &mut *self.hooks;
        flock_wait::block(limit, &mut || hooks.interrupted(), call)
    }

    /// True once the request's own deadline has passed.
    fn past_deadline(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

impl Drop for Waiting<'_, '_> {
    fn drop(&mut self) {
        if let Some(offset) = self.stamp.take() {
            since_stamp::remove(self.fd, offset);
        }
    }
}

/// Who holds and waits for the file with status `st`, and what obstructs
/// its queue, from one read of `/proc/locks`; an error when it cannot be
/// read, rather than a lock that looks free.
fn file_status(st: &FileStat) -> std::io::Result<(Holders, Option<String>)> {
    let all = proc_locks::read()?;
    let file = FileId::of(st);
    let entries = proc_locks::on_file(&all, file);
    let obstruction = obstruction::find(&entries, file).map(|foreign| foreign.describe(st));
    Ok((Holders::seen_in(&entries, file), obstruction))
}

/// A held file lock; dropping it releases the lock.
///
/// The lock belongs to the open file description. A child process that
/// inherits [`FileGuard::as_fd`] shares it: the lock then stays held while
/// either process keeps the descriptor, until [`FileGuard::release`] or the
/// drop unlocks it for all of them at once. A process that got its copy of
/// the guard through fork(2) and must leave the lock to its parent lets go
/// with [`FileGuard::close_without_release`] instead.
#[derive(Debug)]
pub struct FileGuard {
    fd: OwnedFd,
    path: PathBuf,
    mode: Mode,
    stamp: Option<u64>,
    /// The place in the arrival queue, kept while the lock is held.
    ticket: Option<Ticket>,
    /// True while it marks itself as a `--max` holder ([`place_stamp`]).
    place_stamp: bool,
    /// The offset of its deadline stamp ([`deadline_stamp`]), once announced.
    deadline_stamp: Option<u64>,
    /// Its place among the N of `--max N` ([`slot`]).
    slot: Option<u32>,
    acquired: Instant,
    /// When it was taken, on the wall clock, for the run record.
    taken_at: SystemTime,
    /// False once the guard was closed without unlocking: dropping it must
    /// then leave the lock to the other descriptors that share it.
    unlock_on_drop: bool,
}

impl FileGuard {
    fn new(fd: OwnedFd, path: PathBuf, mode: Mode) -> FileGuard {
        let taken_at = SystemTime::now();
        let stamp = since_stamp::stamp(fd.as_fd(), taken_at);
        FileGuard {
            fd,
            path,
            mode,
            stamp,
            ticket: None,
            place_stamp: false,
            deadline_stamp: None,
            slot: None,
            acquired: Instant::now(),
            taken_at,
            unlock_on_drop: true,
        }
    }

    /// The locked descriptor, for handing to a child process.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The mode the lock is held in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// How long the lock has been held.
    pub fn held_for(&self) -> Duration {
        self.acquired.elapsed()
    }

    /// When a run under this lock last succeeded, from the record beside
    /// the lock file (`file/run_record.rs`, for `--once-per`); `None` if
    /// none was recorded. Read it only while holding the lock exclusively.
    pub fn last_success(&self) -> Result<Option<LastSuccess>> {
        RunRecord::of(&self.path).read()
    }

    /// Records that the run under this hold succeeded: the record beside
    /// the lock file then says when the lock was taken.
    pub fn record_success(&self) -> Result<()> {
        RunRecord::of(&self.path).write(self.taken_at)
    }

    /// Which of the N places of a `--max N` lock this holder has, 0 to
    /// N-1, unique among its current holders; `None` for any other lock,
    /// and for a holder that could open the lock file only for reading.
    pub fn slot(&self) -> Option<u32> {
        self.slot
    }

    /// Tells listings when this holder's time limit runs out, with a
    /// deadline stamp (`deadline_stamp.rs`) beside its pid; left out where the stamp cannot
    /// be set (listings then show no deadline). A second call replaces the
    /// first.
    pub fn announce_deadline(&mut self, deadline: SystemTime) {
        if let Some(offset) = self.deadline_stamp.take() {
            deadline_stamp::remove(self.fd.as_fd(), offset);
        }
        self.deadline_stamp = deadline_stamp::stamp(self.fd.as_fd(), deadline);
    }

    /// Releases the lock now, reporting a failure that a drop would hide.
    pub fn release(mut self) -> Result<()> {
        self.unlock()
    }

    /// Closes this process's descriptor without releasing the lock.
    ///
    /// For a process that inherited the guard through fork(2): unlocking
    /// would release the lock for the parent too, since both descriptors
    /// share one open file description. After this the lock stays with
    /// whoever else has the descriptor open, and is released when they
    /// release it or close it. The since stamp needs nothing either: a
    /// record lock belongs to the process that set it, so a fork child never
    /// had the parent's.
    pub fn close_without_release(mut self) {
        self.unlock_on_drop = false;
    }

    fn unlock(&mut self) -> Result<()> {
        if let Some(offset) = self.stamp.take() {
            since_stamp::remove(self.fd.as_fd(), offset);
        }
        if std::mem::take(&mut self.place_stamp) {
            place_stamp::remove(self.fd.as_fd());
        }
        if let Some(offset) = self.deadline_stamp.take() {
            deadline_stamp::remove(self.fd.as_fd(), offset);
        }
        // Before the flock: a request that takes the flock unordered (and
        // exclusively) must find the slot free.
        if let Some(slot) = self.slot.take() {
            slot::release(self.fd.as_fd(), slot);
        }
        let unlocked = flock_wait::unlock(self.fd.as_fd())
            .map_err(|e| Error::io(format!("unlock {}", self.path.display()), e));
        // Explicitly, so a daemon that inherited the descriptor keeps no
        // place in the queue either.
        if let Some(ticket) = self.ticket.take() {
            queue::leave(self.fd.as_fd(), ticket);
        }
        unlocked
    }
}

impl Drop for FileGuard {
    fn drop(&mut self) {
        if self.unlock_on_drop {
            let _ = self.unlock();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::with_lock;
    use crate::request::Wait;

    fn lock_in(dir: &tempfile::TempDir, name: &str) -> FileLock {
        FileLock::named(name, Some(dir.path())).unwrap()
    }

    #[test]
    fn a_second_acquire_is_busy_and_names_this_process() {
        let dir = tempfile::tempdir().unwrap();
        let lock = lock_in(&dir, "a");
        let _held = lock.try_acquire().unwrap();
        match lock.try_acquire() {
            Err(Error::Busy {
                lock: name,
                holders,
            }) => {
                assert_eq!(name, "a");
                let holder = &holders.holders[0];
                assert_eq!(holder.pid, std::process::id() as i32);
                assert_eq!(holder.mode, Mode::Exclusive);
                assert!(holder.since.is_some(), "the stamp gives the time");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dropping_the_guard_releases_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let lock = lock_in(&dir, "b");
        drop(lock.try_acquire().unwrap());
        lock.try_acquire().unwrap().release().unwrap();
        assert!(lock.holders().unwrap().is_empty());
    }

    #[test]
    fn shared_guards_coexist() {
        let dir = tempfile::tempdir().unwrap();
        let lock = lock_in(&dir, "c").with_mode(Mode::Shared);
        let _one = lock.try_acquire().unwrap();
        let _two = lock.try_acquire().unwrap();
        // Two shared holds, one process: holders are listed per process.
        assert_eq!(lock.holders().unwrap().holders.len(), 1);
        let exclusive = lock.clone().with_mode(Mode::Exclusive);
        assert!(exclusive.try_acquire().unwrap_err().is_conflict());
    }

    #[test]
    fn a_caller_that_will_not_show_holders_is_spared_the_look_up() {
        struct Quiet;
        impl WaitHooks for Quiet {
            fn name_holders(&self) -> bool {
                false
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let lock = lock_in(&dir, "q");
        let _held = lock.try_acquire().unwrap();
        match lock.acquire_with(Wait::NoWait, &mut Quiet) {
            Err(Error::Busy { holders, .. }) => assert!(holders.holders.is_empty()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_timeout_reports_the_wait_and_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let lock = lock_in(&dir, "d");
        let _held = lock.acquire().unwrap();
        match lock.acquire_timeout(Duration::from_millis(30)) {
            Err(Error::TimedOut {
                waited, holders, ..
            }) => {
                assert!(waited >= Duration::from_millis(30));
                assert_eq!(holders.holders.len(), 1);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn with_lock_returns_the_code_errors_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let lock = lock_in(&dir, "e");
        let inner: Result<(), std::io::Error> = with_lock(&lock, Wait::NoWait, || {
            Err(std::io::Error::new(std::io::ErrorKind::WouldBlock, "mine"))
        })
        .expect("the lock itself was free");
        let err = inner.unwrap_err();
        assert_eq!(
            (err.kind(), err.to_string()),
            (std::io::ErrorKind::WouldBlock, "mine".into())
        );
        assert!(
            lock.holders().unwrap().is_empty(),
            "released after the error"
        );
    }

    #[test]
    fn a_deleted_lock_file_is_recreated_and_locked() {
        let dir = tempfile::tempdir().unwrap();
        let lock = lock_in(&dir, "f");
        let first = lock.try_acquire().unwrap();
        std::fs::remove_file(lock.path()).unwrap();
        // The old guard locks an unlinked file: it guards nothing, so a new
        // caller must lock the file now at the path.
        let second = lock.try_acquire().unwrap();
        assert!(lock.path().exists());
        drop((first, second));
    }

    #[test]
    fn closing_without_unlock_leaves_the_lock_to_the_other_descriptors() {
        let dir = tempfile::tempdir().unwrap();
        let lock = lock_in(&dir, "g");
        let guard = lock.try_acquire().unwrap();
        // A duplicate shares the open file description, as a fork parent's
        // descriptor does with its child's.
        let parent = guard.as_fd().try_clone_to_owned().unwrap();
        guard.close_without_release();
        assert!(lock.try_acquire().unwrap_err().is_conflict(), "still held");
        drop(parent);
        lock.try_acquire()
            .expect("free once the last descriptor closed");
    }

    #[test]
    fn a_path_lock_lives_beside_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        let lock = FileLock::parse(path.to_str().unwrap(), None).unwrap();
        assert_eq!(lock.path(), path);
        assert_eq!(lock.label(), path.display().to_string());
        let _held = lock.try_acquire().unwrap();
        assert!(path.exists());
    }
}
