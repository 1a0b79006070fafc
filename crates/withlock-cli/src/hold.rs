//! `withlock hold NAME... --until-exit PID`: takes the locks as a run
//! would, then keeps them in a background process until PID exits or
//! `withlock release NAME` ends the hold.
//!
//! Linux 5.3 or later (pidfd). The calling withlock opens a pidfd for PID
//! first (no such process: 64), checks the lock specs, then forks. The
//! child is the holder. It closes every descriptor it inherited but
//! stderr, points stdin and stdout at /dev/null, and takes the locks in the
//! caller's process group, so Ctrl-C still stops the wait and the waiting
//! line still shows. Once they are held it starts a session of its own
//! (no terminal, no job control), points stderr at /dev/null too, and
//! tells the caller through a pipe, which then exits 0: the caller's
//! pipes (`$(withlock hold ...)`) are not held open. If the child fails,
//! the pipe closes unwritten and the caller exits with the child's status
//! (the child said why on stderr).
//!
//! The holder then sleeps in `poll()` (no polling loop) on the pidfd, the
//! hold's release sockets ([`withlock::hold::HoldPoint`]) and a pipe a
//! lost lock writes to. PID's exit ends the hold; so does a release by
//! this user or root; the locks are released and the holder exits. A
//! holder that dies (SIGKILL) releases everything with it: the kernel
//! drops its file locks, the server ends its session. SIGTERM, SIGINT or
//! SIGHUP end it at once the same way.
//!
//! A `--url` lock lost while held (noticed by the heartbeat, as for a
//! command) ends the hold, logs the loss to syslog (`withlock[pid]`), and
//! sends SIGTERM to PID itself through its pidfd, which cannot reach
//! another process that reused the number. Not to PID's process group,
//! and no SIGKILL: PID is usually a shell (a CI step's, which SIGTERM
//! ends, failing the step; an interactive one, which ignores it), and
//! whatever it runs next under the lock would find it gone
//! (`withlock release` says there is no hold).

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::unistd::ForkResult;
use withlock::hold::HoldPoint;
use withlock::readable::wait_readable;

use crate::cli::Cli;
use crate::exit_code;
use crate::lock_request;
use crate::signals;

/// Holds the locks `cli` names until its `--until-exit` process exits.
pub(crate) fn run(cli: &Cli) -> anyhow::Result<u8> {
    let pid = cli.until_exit.unwrap_or_default();
    let followed = match pidfd_open(pid) {
        Ok(fd) => fd,
        Err(Errno::ESRCH) => {
            say!(
                "withlock: --until-exit {pid}: no such process: give the pid of a running \
                 process, such as $$ (this shell) or $PPID (a script's caller)"
            );
            return Ok(exit_code::USAGE);
        }
        Err(e) => anyhow::bail!("opening a pidfd for process {pid} (Linux 5.3 or later): {e}"),
    };
    // Bad specs are refused here, before anything forks.
    drop(lock_request::lock_set(cli)?);
    let (ready_read, ready) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    // SAFETY: nothing has started a thread yet (the locks are not taken,
    // the signal handlers not installed), so the child may do anything.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { child } => {
            drop(ready);
            Ok(caller_status(&ready_read, child))
        }
        ForkResult::Child => {
            drop(ready_read);
            close_inherited(&[followed.as_raw_fd(), ready.as_raw_fd(), 2]);
            hold(cli, followed, ready)
        }
    }
}

/// The caller's side: 0 once the holder says the locks are held, else the
/// status the holder exited with.
fn caller_status(ready: &OwnedFd, holder: nix::unistd::Pid) -> u8 {
    let mut byte = [0u8];
    loop {
        match nix::unistd::read(ready, &mut byte) {
            Ok(1) => return 0,
            Err(Errno::EINTR) => continue,
            _ => break,
        }
    }
    loop {
        match nix::sys::wait::waitpid(holder, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => return code as u8,
            Ok(nix::sys::wait::WaitStatus::Signaled(_, signal, _)) => {
                return exit_code::for_signal(signal as i32);
            }
            Err(Errno::EINTR) | Ok(_) => continue,
            Err(_) => return exit_code::OS_ERROR,
        }
    }
}

/// The holder: takes the locks, tells the caller, then keeps them until
/// `followed` exits, a release comes, or a lock is lost.
fn hold(cli: &Cli, followed: OwnedFd, ready: OwnedFd) -> anyhow::Result<u8> {
    to_dev_null(&[0, 1])?;
    let set = lock_request::lock_set(cli)?;
    signals::install();
    let (mut guard, _) = lock_request::take(cli, &set, cli.wait_limit())?;
    let mut point = HoldPoint::open(&set)?;
    let followed = Arc::new(followed);
    let (lost_read, lost) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    // Kept open here too: only a loss wakes the hold, not the end of a
    // watch (file locks have none, and drop the callback at once).
    let lost = Arc::new(lost);
    {
        let followed = Arc::clone(&followed);
        let lost = Arc::clone(&lost);
        guard.watch_for_loss(move |loss| {
            log(&format!(
                "{loss}; the hold ends, SIGTERM to the process it followed"
            ));
            let _ = pidfd_send_signal(&followed, libc::SIGTERM);
            let _ = nix::unistd::write(&*lost, b"!");
        })?;
    }
    nix::unistd::setsid()?;
    to_dev_null(&[2])?;
    // Keep no directory of the caller's busy (an unmount, a removal).
    std::env::set_current_dir("/")?;
    if nix::unistd::write(&ready, b"0").is_err() {
        // The caller is gone (killed while it waited): nobody knows of
        // this hold, so it ends.
        guard.release()?;
        return Ok(exit_code::OS_ERROR);
    }
    drop(ready);
    let status = keep(&followed, &lost_read, &mut point);
    match status {
        Kept::Released(asked) => {
            let _ = guard.release();
            asked.done();
            Ok(0)
        }
        Kept::Exited => {
            let _ = guard.release();
            Ok(0)
        }
        Kept::Lost => Ok(exit_code::LOCK_LOST),
    }
}

/// How a hold ended.
enum Kept {
    /// The followed process exited.
    Exited,
    /// A release by this user or root, to be answered once the locks are free.
    Released(Box<withlock::hold::ReleaseAsked>),
    /// A lock was lost (logged already).
    Lost,
}

/// Sleeps in poll() until the hold ends.
fn keep(followed: &OwnedFd, lost: &OwnedFd, point: &mut HoldPoint) -> Kept {
    loop {
        let ready = {
            let held = point.fds();
            let fds: Vec<BorrowedFd<'_>> = [followed.as_fd(), lost.as_fd()]
                .into_iter()
                .chain(held.iter().map(AsFd::as_fd))
                .collect();
            wait_readable(&fds)
        };
        let Ok(ready) = ready else {
            // Nothing to wait on any more: hold until the followed exits
            // is no longer possible to tell, so let go.
            return Kept::Exited;
        };
        if ready[0] {
            return Kept::Exited;
        }
        if ready[1] {
            return Kept::Lost;
        }
        let ready: Vec<usize> = ready[2..]
            .iter()
            .enumerate()
            .filter(|(_, ready)| **ready)
            .map(|(index, _)| index)
            .collect();
        // From the highest down: handling one changes the indices above it.
        for index in ready.into_iter().rev() {
            if let Some(asked) = point.ready(index) {
                return Kept::Released(Box::new(asked));
            }
        }
    }
}

/// pidfd_open(2): a descriptor that becomes readable when `pid` exits.
fn pidfd_open(pid: i32) -> Result<OwnedFd, Errno> {
    // SAFETY: a plain system call with integer arguments.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: the kernel just returned this descriptor (close-on-exec),
    // owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// pidfd_send_signal(2): signals the process `pidfd` refers to, never
/// another that took its number.
fn pidfd_send_signal(pidfd: &OwnedFd, signal: i32) -> Result<(), Errno> {
    // SAFETY: a plain system call; no siginfo is passed (null).
    let done = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if done < 0 { Err(Errno::last()) } else { Ok(()) }
}

/// Closes every descriptor but `keep`, so the holder keeps none of the
/// caller's pipes or files open.
fn close_inherited(keep: &[RawFd]) {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let open: Vec<RawFd> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2 && !keep.contains(fd))
        .collect();
    for fd in open {
        // SAFETY: closing a descriptor this process no longer uses; no
        // other thread exists to race with (just forked).
        unsafe { libc::close(fd) };
    }
}

/// Points each of `fds` at /dev/null.
fn to_dev_null(fds: &[RawFd]) -> std::io::Result<()> {
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for &fd in fds {
        // SAFETY: dup2 onto a standard descriptor of this process.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// One line to syslog, the detached holder's only voice.
fn log(line: &str) {
    let text = withlock::escape::text(line).replace('\0', "");
    let Ok(text) = CString::new(text) else { return };
    // SAFETY: both strings are valid and NUL-terminated; "%s" takes one
    // string argument; openlog's ident is static.
    unsafe {
        libc::openlog(c"withlock".as_ptr(), libc::LOG_PID, libc::LOG_USER);
        libc::syslog(libc::LOG_WARNING, c"%s".as_ptr(), text.as_ptr());
    }
}
