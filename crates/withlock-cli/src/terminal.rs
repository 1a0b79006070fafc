//! Handing the terminal to the command, as a shell does for a job.
//!
//! The command runs in its own process group. When withlock runs in the
//! foreground of a terminal, it makes the command's group the foreground
//! group, so Ctrl-C, Ctrl-\ and Ctrl-Z reach the command directly, and
//! takes the terminal back when the command stops or ends. If the command
//! is stopped (Ctrl-Z), withlock stops itself too so the shell sees the job
//! stop, and on `fg` hands the terminal back and continues the command.
//! Without a terminal (CI, cron) nothing here happens.

use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, RawFd};

use nix::unistd::{Pid, getpgrp, isatty, tcgetpgrp};

/// A terminal on which withlock is the foreground process group.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Terminal {
    fd: RawFd,
}

impl Terminal {
    /// The first of stdin, stdout and stderr that is a terminal whose
    /// foreground group is withlock's own.
    pub(crate) fn foreground() -> Option<Terminal> {
        (0..=2).find_map(|fd| {
            // SAFETY: 0..=2 stay open for the life of the process, or the
            // calls below fail harmlessly with EBADF.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            let ours = isatty(borrowed).unwrap_or(false)
                && tcgetpgrp(borrowed).is_ok_and(|group| group == getpgrp());
            ours.then_some(Terminal { fd })
        })
    }

    /// The raw descriptor, for the child to use between fork and exec.
    pub(crate) fn raw_fd(self) -> RawFd {
        self.fd
    }

    /// Makes `group` the foreground process group.
    pub(crate) fn give_to(self, group: Pid) {
        set_foreground(self.fd, group.as_raw());
    }

    /// Makes withlock's own group the foreground again.
    pub(crate) fn take_back(self) {
        set_foreground(self.fd, getpgrp().as_raw());
    }

    /// True when withlock's group is in the foreground (after `fg`, not `bg`).
    pub(crate) fn is_ours(self) -> bool {
        // SAFETY: see `foreground`.
        let borrowed = unsafe { BorrowedFd::borrow_raw(self.fd) };
        tcgetpgrp(borrowed).is_ok_and(|group| group == getpgrp())
    }
}

/// tcsetpgrp from a background group raises SIGTTOU, which would stop us,
/// so it is blocked around the call. Only async-signal-safe calls are made:
/// the child also runs this between fork and exec.
pub(crate) fn set_foreground(fd: RawFd, group: libc::pid_t) {
    // SAFETY: sigset initialised by sigemptyset; the calls only touch this
    // thread's mask and the terminal's foreground group.
    unsafe {
        let mut set: libc::sigset_t = MaybeUninit::zeroed().assume_init();
        let mut old: libc::sigset_t = MaybeUninit::zeroed().assume_init();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTTOU);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        libc::tcsetpgrp(fd, group);
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
}
