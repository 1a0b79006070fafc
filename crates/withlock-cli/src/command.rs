//! Finding, starting and waiting for the protected command.
//!
//! The command is executed directly (no shell), in a process group of its
//! own, and inherits the locked descriptor: if withlock itself is killed,
//! even with SIGKILL, the command still holds the lock until it exits, so no
//! second holder can get in while it runs. When the command exits, withlock
//! unlocks the descriptor explicitly, which releases the lock for every
//! process sharing it: a daemon the command left behind keeps an open
//! descriptor but not the lock. (Only if withlock is killed before the
//! command ends do such daemons go on holding the lock until they exit.)
//!
//! A PostgreSQL lock lives in withlock's own server session and cannot be
//! inherited, so there the command gets SIGTERM if withlock dies
//! (`PR_SET_PDEATHSIG`): it must not run on without the lock.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid, waitpid};
use nix::unistd::{AccessFlags, Pid, access, getpid};

use crate::exit_code;
use crate::fence_env::EnvChanges;
use crate::signals;
use crate::terminal::{self, Terminal};

/// Why the command could not be started; nothing ran.
#[derive(Debug)]
pub(crate) enum StartError {
    /// Not on PATH, or no file at the path given.
    NotFound(OsString),
    /// There, but not executable (a directory, no x bit, a bad format).
    CannotExecute(OsString, io::Error),
    /// A script whose `#!` interpreter (the second field, as shown) is
    /// missing.
    NoInterpreter(OsString, String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::NotFound(name) => write!(
                f,
                "command not found: {}: check the spelling, or give its full path",
                shown(name)
            ),
            // chmod +x would not make a directory run.
            StartError::CannotExecute(name, err) if err.raw_os_error() == Some(libc::EISDIR) => {
                write!(
                    f,
                    "cannot execute {}: it is a directory, not a program: name the program to run",
                    shown(name)
                )
            }
            StartError::CannotExecute(name, err) => write!(
                f,
                "cannot execute {}: {err}: check it is an executable file (chmod +x)",
                shown(name)
            ),
            StartError::NoInterpreter(name, interpreter) => write!(
                f,
                "cannot execute {}: the script is there, but its #! interpreter {} is \
                 missing: install it, or correct the script's first line",
                shown(name),
                interpreter
            ),
        }
    }
}

impl std::error::Error for StartError {}

impl StartError {
    /// The status env(1) would exit with.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            StartError::NotFound(_) => exit_code::NOT_FOUND,
            StartError::CannotExecute(..) | StartError::NoInterpreter(..) => {
                exit_code::CANNOT_EXECUTE
            }
        }
    }

    /// The system's error number, if the system refused.
    pub(crate) fn os_error(&self) -> Option<i32> {
        match self {
            StartError::CannotExecute(_, err) => err.raw_os_error(),
            _ => None,
        }
    }
}

fn shown(name: &OsStr) -> String {
    withlock::escape::argument(name.as_bytes())
}

/// Finds `program` the way execvp(3) would, before the lock is taken, so a
/// typo fails at once instead of after a long wait.
pub(crate) fn resolve(program: &OsStr) -> Result<PathBuf, StartError> {
    if program.as_bytes().contains(&b'/') {
        let path = PathBuf::from(program);
        return check_executable(&path, program).map(|()| path);
    }
    let mut denied = None;
    for dir in path_dirs() {
        let candidate = dir.join(program);
        match check_executable(&candidate, program) {
            Ok(()) => return Ok(candidate),
            Err(e @ (StartError::CannotExecute(..) | StartError::NoInterpreter(..))) => {
                denied = denied.or(Some(e))
            }
            Err(StartError::NotFound(_)) => {}
        }
    }
    Err(denied.unwrap_or_else(|| StartError::NotFound(program.to_owned())))
}

/// The directories of PATH as execvp(3) searches them.
fn path_dirs() -> Vec<PathBuf> {
    let search = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    std::env::split_paths(&search)
        .map(|dir| match dir.as_os_str().is_empty() {
            true => PathBuf::from("."),
            false => dir,
        })
        .collect()
}

fn check_executable(path: &Path, program: &OsStr) -> Result<(), StartError> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StartError::NotFound(program.to_owned()));
        }
        Err(e) => return Err(StartError::CannotExecute(program.to_owned(), e)),
    };
    if meta.is_dir() {
        let err = io::Error::from_raw_os_error(libc::EISDIR);
        return Err(StartError::CannotExecute(program.to_owned(), err));
    }
    access(path, AccessFlags::X_OK)
        .map_err(|e| StartError::CannotExecute(program.to_owned(), e.into()))?;
    match missing_interpreter(path) {
        Some(interpreter) => Err(StartError::NoInterpreter(program.to_owned(), interpreter)),
        None => Ok(()),
    }
}

/// The `#!` interpreter of the script at `path`, as shown in a message,
/// if it is missing: an absolute path where there is nothing (execve(2)
/// then fails with ENOENT, as if the script itself were missing), or the
/// program `/usr/bin/env` is to find on PATH. A script this user cannot
/// read is left for execve to judge.
fn missing_interpreter(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut head = [0; 256];
    let mut file = std::fs::File::open(path).ok()?;
    let read = file.read(&mut head).ok()?;
    let line = head[..read].strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next()?;
    let mut words = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|word| !word.is_empty())
        .map(|word| Path::new(OsStr::from_bytes(word)));
    let interpreter = words.next()?;
    if !interpreter.is_absolute() {
        return None;
    }
    if std::fs::metadata(interpreter).is_err_and(|e| e.kind() == io::ErrorKind::NotFound) {
        return Some(shown(interpreter.as_os_str()));
    }
    // `#!/usr/bin/env NAME`: env looks NAME up on PATH.
    let program = words.next().filter(|_| interpreter.ends_with("env"))?;
    let plain = !program.as_os_str().as_bytes().starts_with(b"-")
        && !program.as_os_str().as_bytes().contains(&b'/');
    let found = path_dirs().iter().any(|dir| dir.join(program).is_file());
    (plain && !found).then(|| {
        format!(
            "{} (which {} looks for on PATH)",
            shown(program.as_os_str()),
            shown(interpreter.as_os_str())
        )
    })
}

/// How the command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// It exited with this status.
    Exited(u8),
    /// A signal ended it.
    Killed(Signal),
    /// Waiting for it failed, so how it ended is not known.
    Unknown,
}

impl Ended {
    /// The status withlock passes on: the command's own, 128+N for signal
    /// N as shells report it, EX_OSERR when unknown.
    pub(crate) fn exit_code(self) -> u8 {
        match self {
            Ended::Exited(code) => code,
            Ended::Killed(signal) => exit_code::for_signal(signal as i32),
            Ended::Unknown => exit_code::OS_ERROR,
        }
    }
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Exited(code) => write!(f, "exited with status {code}"),
            Ended::Killed(signal) => write!(f, "was killed by {}", signal.as_str()),
            Ended::Unknown => f.write_str("ended in a way withlock could not learn"),
        }
    }
}

/// Runs the command holding every descriptor of `lock_fds` (one per held
/// lock), with `env` changed in its environment (the fencing tokens);
/// returns how it ended. With `ends_with_withlock` (a lock
/// held by withlock's own server session, which dies with it) the command
/// gets SIGTERM if withlock dies.
pub(crate) fn run(
    program: &Path,
    args: &[OsString],
    lock_fds: &[BorrowedFd<'_>],
    env: &EnvChanges,
    ends_with_withlock: bool,
) -> Result<Ended, StartError> {
    let terminal = Terminal::foreground();
    signals::starting();
    let child = match spawn(program, args, lock_fds, env, terminal, ends_with_withlock) {
        Ok(child) => child,
        Err(err) => {
            signals::stop_forwarding();
            return Err(err);
        }
    };
    signals::forward_to(child.id() as i32);
    let group = Pid::from_raw(child.id() as i32);
    if let Some(terminal) = terminal {
        terminal.give_to(group);
    }
    let status = wait(group, terminal);
    signals::stop_forwarding();
    if let Some(terminal) = terminal {
        terminal.take_back();
    }
    drop(child);
    Ok(status)
}

fn spawn(
    program: &Path,
    args: &[OsString],
    lock_fds: &[BorrowedFd<'_>],
    env: &EnvChanges,
    terminal: Option<Terminal>,
    ends_with_withlock: bool,
) -> Result<Child, StartError> {
    let (arg0, rest) = args
        .split_first()
        .expect("Cli::parse_args requires a command");
    let mut command = Command::new(program);
    command.arg0(arg0).args(rest).process_group(0);
    for (key, value) in env {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    if ends_with_withlock {
        // A server-held lock cannot be inherited: it ends with withlock's
        // session. If withlock is killed, even with SIGKILL, the lock is
        // gone, so the command must stop too rather than run unprotected.
        let parent = getpid().as_raw();
        // SAFETY: the closure runs between fork and exec and calls only
        // async-signal-safe functions (prctl, getppid).
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                    return Err(io::Error::last_os_error());
                }
                // withlock died before the prctl: its signal will not come.
                if libc::getppid() != parent {
                    return Err(io::Error::other("withlock exited"));
                }
                Ok(())
            });
        }
    }
    if let Some(terminal) = terminal {
        let terminal_fd = terminal.raw_fd();
        // SAFETY: the closure runs between fork and exec and calls only
        // async-signal-safe functions (getpid, sigprocmask, tcsetpgrp).
        unsafe {
            command.pre_exec(move || {
                terminal::set_foreground(terminal_fd, libc::getpid());
                Ok(())
            });
        }
    }
    // Let the command inherit the locks, so they outlive a killed withlock
    // for as long as the command runs. Clearing close-on-exec here rather
    // than in the child keeps the fast posix_spawn path open when no
    // terminal is involved; no other thread of ours starts processes.
    let _inherit = lock_fds
        .iter()
        .map(|fd| Inherit::start(*fd))
        .collect::<io::Result<Vec<Inherit>>>()
        .map_err(|e| StartError::CannotExecute(arg0.clone(), e))?;
    command.spawn().map_err(|e| match e.kind() {
        // Checked before the lock was taken, but it may have changed since.
        io::ErrorKind::NotFound => match missing_interpreter(program) {
            Some(interpreter) => StartError::NoInterpreter(arg0.clone(), interpreter),
            None => StartError::NotFound(arg0.clone()),
        },
        _ => StartError::CannotExecute(arg0.clone(), e),
    })
}

/// Clears close-on-exec on a descriptor until dropped.
struct Inherit {
    fd: i32,
}

impl Inherit {
    fn start(fd: BorrowedFd<'_>) -> io::Result<Inherit> {
        let fd = fd.as_raw_fd();
        // SAFETY: F_SETFD only changes the flags of a descriptor we own.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(Inherit { fd })
    }
}

impl Drop for Inherit {
    fn drop(&mut self) {
        // SAFETY: as in `start`; the descriptor is still open.
        unsafe { libc::fcntl(self.fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}

/// Waits for the command to end and returns how it ended. With a
/// terminal, a stopped command stops withlock too, the way a shell job does.
///
/// The end is seen first without reaping (`WNOWAIT`): until it is reaped
/// the command's pid, and so its group id, cannot be anyone else's, so
/// forwarding stops before that and a lost lock's signals from another
/// thread ([`signals::stop_command`]) never reach a stranger.
fn wait(group: Pid, terminal: Option<Terminal>) -> Ended {
    let stops = match terminal {
        Some(_) => WaitPidFlag::WSTOPPED,
        None => WaitPidFlag::empty(),
    };
    let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | stops;
    loop {
        match waitid(Id::Pid(group), flags) {
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => {
                signals::stop_forwarding();
                return reap(group);
            }
            Ok(WaitStatus::Stopped(..)) => {
                // Take the stop's report, or it would be seen again.
                let _ = waitid(Id::Pid(group), WaitPidFlag::WSTOPPED | WaitPidFlag::WNOHANG);
                if let Some(terminal) = terminal {
                    stop_with_command(group, terminal);
                }
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return Ended::Unknown,
        }
    }
}

/// Reaps the command, which has ended, and returns how.
fn reap(group: Pid) -> Ended {
    loop {
        match waitpid(group, None) {
            Ok(WaitStatus::Exited(_, code)) => return Ended::Exited(code as u8),
            Ok(WaitStatus::Signaled(_, signal, _)) => return Ended::Killed(signal),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return Ended::Unknown,
        }
    }
}

/// The command was stopped (Ctrl-Z): stop withlock so the shell sees the
/// job stop, and when continued, continue the command too.
fn stop_with_command(group: Pid, terminal: Terminal) {
    terminal.take_back();
    let _ = kill(getpid(), Signal::SIGSTOP);
    // Continued: by `fg` (the terminal is ours again) or `bg` (it is not).
    if terminal.is_ours() {
        terminal.give_to(group);
    }
    let _ = killpg(group, Signal::SIGCONT);
}
