//! What SIGTERM, SIGHUP, SIGINT and SIGQUIT do to withlock: while it waits
//! for the lock they end it at once with 128+N and nothing runs; while the
//! command runs they reach the command exactly once, whether sent to
//! withlock, to withlock's process group or typed on its terminal; and
//! Ctrl-Z stops the command and withlock together.
//!
//! Counting deliveries: the command is a shell script that traps each of the
//! four signals and appends its name to a log, and does not exit on it. Once
//! the first line is there, the test sends SIGUSR1 straight to the script
//! (trapped to log "usr1") and waits for that line too, then lets the script
//! exit and checks the whole log. A second delivery of the same event (the
//! kernel and withlock both delivering it, or withlock forwarding twice) is
//! sent at about the same time as the first, so before the marker, and the
//! shell runs every trap whose signal has arrived before it runs another
//! command, so the duplicate's line is in the log by the time the script
//! exits: the log then has two lines for the signal instead of one. (Two
//! copies that arrive before the shell has taken the first are merged by the
//! kernel, which no test can see; the tests also check the structure that
//! rules duplicates out, such as the command's own process group and the
//! terminal's foreground group.)

use std::fs;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::pty::{Winsize, openpty};
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getpgid, tcgetpgrp};

use crate::support::{Env, Run, signal, spawn, wait_blocked, wait_child, wait_for};

// ---------------------------------------------------------------------------
// While waiting for the lock.

/// A holder holds `t`; a waiter that would create a marker file blocks on
/// it in the kernel and gets `sig`: it must exit 128+N by itself (not die of
/// the signal), and its command must never run, not even once the lock is
/// free.
fn interrupt_the_wait(options: &[&str], sig: Signal) {
    let env = Env::new();
    let holder = env.hold(env.withlock().arg("t"), "holder");
    let marker = env.file("MARKER");
    let mut waiter = env
        .withlock()
        .args(options)
        .args(["t", "--", "touch"])
        .arg(&marker)
        .spawn();
    let waiter_pid = waiter.id() as i32;
    wait_blocked(&env.lock_file("t"), waiter_pid);

    signal(waiter_pid, sig);
    let status = wait_child(&mut waiter);
    assert_eq!(
        status.code(),
        Some(128 + sig as i32),
        "{sig} while waiting must end withlock with 128+N, got {status}"
    );
    assert!(
        !marker.exists(),
        "the command ran after {sig} while waiting"
    );

    assert!(holder.release().success());
    assert!(
        !marker.exists(),
        "the command ran once the lock was free, after {sig} while waiting"
    );
    // The interrupted waiter left nothing behind that holds the lock.
    env.withlock()
        .args(["-n", "t", "--", "true"])
        .assert()
        .success();
}

#[test]
fn sigterm_while_waiting_exits_143_and_runs_nothing() {
    interrupt_the_wait(&[], Signal::SIGTERM);
}

#[test]
fn sigint_while_waiting_exits_130_and_runs_nothing() {
    interrupt_the_wait(&[], Signal::SIGINT);
}

#[test]
fn sighup_while_waiting_exits_129_and_runs_nothing() {
    interrupt_the_wait(&[], Signal::SIGHUP);
}

#[test]
fn sigquit_while_waiting_exits_131_and_runs_nothing() {
    interrupt_the_wait(&[], Signal::SIGQUIT);
}

#[test]
fn sigterm_during_a_timed_wait_exits_143_and_runs_nothing() {
    interrupt_the_wait(&["-w", "30"], Signal::SIGTERM);
}

// ---------------------------------------------------------------------------
// While the command runs.

/// Logs each handled signal (and SIGUSR1, the marker) without exiting, and
/// exits with `$4` once a line is written to the FIFO `$3`.
///
/// The script waits with the `wait` builtin, which a trapped signal
/// interrupts without a race (dash checks for pending signals with them
/// blocked before it sleeps), for a background reader of the FIFO. The
/// reader ignores the four signals, so those sent to the whole group leave
/// it alone, and it announces the script's pid (`$$` is the script's in a
/// subshell) only once it ignores them. (A foreground `read _ < "$go"`
/// would race: a signal landing after dash last ran its traps but before
/// open() blocks on the FIFO would wait until the FIFO is written.)
const SCRIPT: &str = r#"
log=$1 ready=$2 go=$3 status=$4
trap 'echo TERM >> "$log"' TERM
trap 'echo HUP >> "$log"' HUP
trap 'echo INT >> "$log"' INT
trap 'echo QUIT >> "$log"' QUIT
trap 'echo usr1 >> "$log"' USR1
(trap '' TERM HUP INT QUIT; echo "$$" > "$ready"; read _ < "$go") &
until wait "$!"; do [ "$?" -gt 128 ] || exit 99; done
exit "$status"
"#;

/// The files of one [`SCRIPT`].
struct Script {
    log: PathBuf,
    ready: PathBuf,
    go: PathBuf,
}

impl Script {
    fn new(env: &Env) -> Script {
        Script {
            log: env.file("LOG"),
            ready: env.file("READY"),
            go: env.fifo("GO"),
        }
    }

    /// `withlock <lock> -- sh -c SCRIPT`, the script exiting with `status`.
    fn under(&self, env: &Env, lock: &str, status: u8) -> Run {
        env.withlock()
            .args([lock, "--", "sh", "-c", SCRIPT, "sh"])
            .arg(&self.log)
            .arg(&self.ready)
            .arg(&self.go)
            .arg(status.to_string())
    }

    /// Waits until the script runs and traps its signals; returns its pid,
    /// which is also its process group.
    fn wait_started(&self, withlock: &mut Child) -> i32 {
        let mut pid = None;
        wait_for("the command to start", || {
            if let Ok(Some(status)) = withlock.try_wait() {
                panic!("withlock exited early with {status}");
            }
            // `echo` writes the whole line at once.
            pid = fs::read_to_string(&self.ready)
                .ok()
                .filter(|text| text.ends_with('\n'))
                .map(|text| text.trim().parse().unwrap());
            pid.is_some()
        });
        pid.unwrap()
    }

    fn lines(&self) -> Vec<String> {
        match fs::read_to_string(&self.log) {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn wait_line(&self, line: &str) {
        wait_for(&format!("{line:?} in the command's log"), || {
            self.lines().iter().any(|l| l == line)
        });
    }

    /// Sends the marker straight to the script and waits for its line: a
    /// duplicate of what was logged before would have been sent by now.
    fn mark(&self, command: i32) {
        signal(command, Signal::SIGUSR1);
        self.wait_line("usr1");
    }

    /// Lets the script exit. Opening without blocking (which fails while the
    /// reader is not there) keeps a broken test from hanging.
    fn release(&self) {
        let mut go = None;
        wait_for("the command's reader of the FIFO", || {
            go = fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&self.go)
                .ok();
            go.is_some()
        });
        go.unwrap().write_all(b"\n").unwrap();
    }
}

/// A running withlock; if the test fails halfway, it and the command's
/// group are killed instead of being left blocked on the FIFO.
pub(crate) struct Running {
    pub(crate) child: Child,
    group: Option<i32>,
}

impl Running {
    fn new(child: Child) -> Running {
        Running { child, group: None }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Only while withlock runs: afterwards its command has been waited
        // for and the group's number may belong to someone else.
        if let Ok(None) = self.child.try_wait() {
            if let Some(group) = self.group {
                let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The handled signals blocked in the mask that `SigBlk:` shows in
/// `status`, the text of a /proc/<pid>/status.
fn blocked_handled_signals(status: &str) -> Vec<Signal> {
    let line = status
        .lines()
        .find_map(|line| line.trim().strip_prefix("SigBlk:"))
        .unwrap_or_else(|| panic!("no SigBlk line in {status:?}"));
    let mask = u64::from_str_radix(line.trim(), 16).unwrap();
    [
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
    ]
    .into_iter()
    .filter(|&sig| mask & (1 << (sig as i32 - 1)) != 0)
    .collect()
}

/// withlock blocks the signals it forwards while it starts the command;
/// the command must not inherit that mask, or it never receives them.
#[test]
fn the_command_starts_with_the_forwarded_signals_unblocked() {
    let env = Env::new();
    let out = env
        .withlock()
        .args(["m", "--", "cat", "/proc/self/status"])
        .output();
    assert!(out.status.success());
    let blocked = blocked_handled_signals(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(blocked, [], "the command starts with these signals blocked");
}

/// Sends `sig` to withlock's pid while [`SCRIPT`] runs: the script must see
/// it exactly once, and withlock must exit with the script's status.
fn forward_once(sig: Signal, name: &str) {
    let env = Env::new();
    let script = Script::new(&env);
    let mut withlock = Running::new(script.under(&env, "r", 7).spawn());
    let command = script.wait_started(&mut withlock.child);
    withlock.group = Some(command);

    signal(withlock.pid(), sig);
    script.wait_line(name);
    script.mark(command);
    script.release();
    let status = wait_child(&mut withlock.child);
    assert_eq!(
        script.lines(),
        [name, "usr1"],
        "{sig} sent to withlock must reach the command exactly once"
    );
    assert_eq!(
        status.code(),
        Some(7),
        "withlock must exit with the command's status"
    );
}

#[test]
fn sigterm_to_withlock_reaches_the_command_once() {
    forward_once(Signal::SIGTERM, "TERM");
}

#[test]
fn sighup_to_withlock_reaches_the_command_once() {
    forward_once(Signal::SIGHUP, "HUP");
}

#[test]
fn sigint_to_withlock_reaches_the_command_once() {
    forward_once(Signal::SIGINT, "INT");
}

#[test]
fn sigquit_to_withlock_reaches_the_command_once() {
    forward_once(Signal::SIGQUIT, "QUIT");
}

/// Sends `sig` to withlock's whole process group (as a shell's `kill %1`
/// or a service manager does) while [`SCRIPT`] runs: the command is in a
/// group of its own, so it gets the signal only through withlock, once.
fn group_signal_once(sig: Signal, name: &str) {
    let env = Env::new();
    let script = Script::new(&env);
    let mut command = script.under(&env, "g", 7).command();
    // Its own group, so the test itself is not signalled.
    command
        .process_group(0)
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    let mut withlock = Running::new(spawn(&mut command));
    let pid = withlock.pid();
    let command = script.wait_started(&mut withlock.child);
    withlock.group = Some(command);
    assert_eq!(getpgid(Some(Pid::from_raw(pid))), Ok(Pid::from_raw(pid)));
    assert_eq!(
        getpgid(Some(Pid::from_raw(command))),
        Ok(Pid::from_raw(command)),
        "the command must lead a process group of its own"
    );

    killpg(Pid::from_raw(pid), sig).unwrap();
    script.wait_line(name);
    script.mark(command);
    script.release();
    let status = wait_child(&mut withlock.child);
    assert_eq!(
        script.lines(),
        [name, "usr1"],
        "{sig} sent to withlock's process group must reach the command exactly once"
    );
    assert_eq!(
        status.code(),
        Some(7),
        "withlock must exit with the command's status"
    );
}

#[test]
fn sigterm_to_withlocks_group_reaches_the_command_once() {
    group_signal_once(Signal::SIGTERM, "TERM");
}

#[test]
fn sigint_to_withlocks_group_reaches_the_command_once() {
    group_signal_once(Signal::SIGINT, "INT");
}

#[test]
fn a_command_killed_by_a_forwarded_sigterm_gives_143() {
    let env = Env::new();
    let script = Script::new(&env);
    // Traps nothing, so SIGTERM ends it.
    let untrapped = r#"echo "$$" > "$2"; read _ < "$3""#;
    let mut withlock = Running::new(
        env.withlock()
            .args(["u", "--", "sh", "-c", untrapped, "sh"])
            .arg(&script.log)
            .arg(&script.ready)
            .arg(&script.go)
            .spawn(),
    );
    let command = script.wait_started(&mut withlock.child);
    withlock.group = Some(command);

    signal(withlock.pid(), Signal::SIGTERM);
    let status = wait_child(&mut withlock.child);
    assert_eq!(status.code(), Some(143), "got {status}");
    // withlock exited after waiting for its command, which SIGTERM ended:
    // it did not just exit 143 itself and leave the command running.
    assert_eq!(
        kill(Pid::from_raw(command), None),
        Err(Errno::ESRCH),
        "the command outlived withlock"
    );
    env.withlock()
        .args(["-n", "u", "--", "true"])
        .assert()
        .success();
}

// ---------------------------------------------------------------------------
// On a terminal.

/// withlock running as the session leader of a new pseudo-terminal, which is
/// its controlling terminal and its stdin, stdout and stderr, as it would be
/// in an interactive shell.
pub(crate) struct OnTerminal {
    pub(crate) withlock: Running,
    master: fs::File,
    /// What withlock and the command wrote to the terminal.
    output: Arc<Mutex<Vec<u8>>>,
    /// Set once every slave descriptor is closed and all output is read.
    drained: Arc<AtomicBool>,
}

impl OnTerminal {
    pub(crate) fn start(run: &Run) -> OnTerminal {
        OnTerminal::start_sized(run, None)
    }

    /// The same on a terminal `columns` wide, if given.
    pub(crate) fn start_sized(run: &Run, columns: Option<u16>) -> OnTerminal {
        let size = columns.map(|ws_col| Winsize {
            ws_row: 24,
            ws_col,
            ws_xpixel: 0,
            ws_ypixel: 0,
        });
        let pty = openpty(size.as_ref(), None).unwrap();
        // openpty does not set close-on-exec: keep the terminal out of the
        // processes other tests start meanwhile.
        for fd in [&pty.master, &pty.slave] {
            fcntl(fd.as_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).unwrap();
        }
        let slave: OwnedFd = pty.slave;
        let mut command = run.command();
        command
            .stdin(slave.try_clone().unwrap())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave);
        // SAFETY: runs between fork and exec, after stdio is in place, and
        // calls only async-signal-safe functions (setsid, ioctl) and
        // io::Error::last_os_error, which only reads errno.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() == -1 || libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = spawn(&mut command);
        // Closes our copies of the slave, so the drain sees the end.
        drop(command);

        let output = Arc::new(Mutex::new(Vec::new()));
        let mut reader = fs::File::from(pty.master.try_clone().unwrap());
        let sink = Arc::clone(&output);
        let drained = Arc::new(AtomicBool::new(false));
        let end = Arc::clone(&drained);
        // Keeps the terminal's output flowing so nobody blocks writing to it;
        // ends with EIO once the last slave descriptor is closed.
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = reader.read(&mut buf) {
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
            end.store(true, Ordering::SeqCst);
        });
        OnTerminal {
            withlock: Running::new(child),
            master: fs::File::from(pty.master),
            output,
            drained,
        }
    }

    fn foreground(&self) -> Option<i32> {
        tcgetpgrp(self.master.as_fd()).ok().map(Pid::as_raw)
    }

    fn wait_foreground(&self, group: i32, whose: &str) {
        wait_for(
            &format!("{whose} group {group} to own the terminal"),
            || self.foreground() == Some(group),
        );
    }

    /// Types `byte` on the terminal.
    fn type_byte(&mut self, byte: u8) {
        self.master.write_all(&[byte]).unwrap();
    }

    /// Waits until everything written to the terminal has been read.
    pub(crate) fn wait_drained(&self) {
        wait_for("the terminal's output to end", || {
            self.drained.load(Ordering::SeqCst)
        });
    }

    pub(crate) fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }
}

/// The same on a terminal, where withlock starts the command differently
/// (it hands the command the terminal between fork and exec).
#[test]
fn the_command_starts_with_the_forwarded_signals_unblocked_on_a_terminal() {
    let env = Env::new();
    let run = env.withlock().args(["m", "--", "cat", "/proc/self/status"]);
    let mut terminal = OnTerminal::start(&run);
    let status = wait_child(&mut terminal.withlock.child);
    assert!(status.success(), "terminal: {:?}", terminal.output());
    terminal.wait_drained();
    let blocked = blocked_handled_signals(&terminal.output());
    assert_eq!(blocked, [], "the command starts with these signals blocked");
}

/// On a terminal the waiting line is redrawn every second, in place, and
/// erased before the command writes anything.
#[test]
fn the_waiting_line_updates_in_place_on_a_terminal() {
    let env = Env::new();
    let holder = env.hold(env.withlock().arg("t"), "h");
    let run = env.withlock().args(["t", "--", "echo", "RAN"]);
    let mut terminal = OnTerminal::start(&run);
    // The line is redrawn about every second, each time with how long the
    // wait has lasted, which on a loaded machine need not be a round 2.0s.
    wait_for(
        "a second rendering of the waiting line, 2s or more in",
        || {
            let output = terminal.output();
            let shown = renderings(&output);
            shown.len() >= 2 && shown[shown.len() - 1].waited >= Duration::from_secs(2)
        },
    );
    let output = terminal.output();
    let shown = renderings(&output);
    assert!(
        shown[0].waited >= Duration::from_secs(1),
        "shown after the quiet second: {output:?}"
    );
    for pair in shown.windows(2) {
        assert!(pair[0].waited < pair[1].waited, "{output:?}");
        assert!(
            !pair[1].before.contains('\n') && pair[1].before.contains("\r\x1b[2K"),
            "each rendering replaces the one before on the same line: {output:?}"
        );
    }
    assert!(holder.release().success());
    assert!(wait_child(&mut terminal.withlock.child).success());
    terminal.wait_drained();
    let output = terminal.output();
    let last_line = output.rfind("waiting ").unwrap();
    let ran = output.rfind("RAN").expect("the command ran");
    assert!(last_line < ran, "{output:?}");
    assert!(
        output[last_line..ran].contains("\x1b[2K"),
        "the line is erased before the command's output: {output:?}"
    );
}

/// One rendering of the waiting line on a terminal.
struct Rendering<'a> {
    /// How long the wait had lasted, as the line says.
    waited: Duration,
    /// What was written between the previous rendering's start and this one.
    before: &'a str,
}

/// Every rendering of `withlock: waiting D for t: held exclusive by pid`
/// in `output`, in order.
fn renderings(output: &str) -> Vec<Rendering<'_>> {
    const START: &str = "withlock: waiting ";
    let starts: Vec<usize> = output.match_indices(START).map(|(at, _)| at).collect();
    let mut shown = Vec::new();
    for (i, &at) in starts.iter().enumerate() {
        let rest = &output[at + START.len()..];
        let Some((waited, _)) = rest.split_once(" for t: held exclusive by pid") else {
            continue;
        };
        let waited = match waited.strip_suffix("ms") {
            Some(ms) => ms.parse().ok().map(Duration::from_millis),
            None => waited
                .strip_suffix('s')
                .and_then(|s| s.parse().ok())
                .map(Duration::from_secs_f64),
        };
        let Some(waited) = waited else { continue };
        let from = if i == 0 { 0 } else { starts[i - 1] };
        shown.push(Rendering {
            waited,
            before: &output[from..at],
        });
    }
    shown
}

/// The state letter of `pid` in /proc/<pid>/stat ('T' when stopped).
fn state(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 1..].trim_start().chars().next()
}

#[test]
fn ctrl_c_on_the_terminal_reaches_the_command_once() {
    let env = Env::new();
    let script = Script::new(&env);
    let mut terminal = OnTerminal::start(&script.under(&env, "c", 5));
    let withlock = terminal.withlock.pid();
    let command = script.wait_started(&mut terminal.withlock.child);
    terminal.withlock.group = Some(command);
    // withlock handed the terminal to the command's group: Ctrl-C now goes
    // to the command alone, from the kernel, and not to withlock.
    terminal.wait_foreground(command, "the command's");
    assert_ne!(command, withlock);

    terminal.type_byte(0x03);
    script.wait_line("INT");
    script.mark(command);
    script.release();
    let status = wait_child(&mut terminal.withlock.child);
    assert_eq!(
        script.lines(),
        ["INT", "usr1"],
        "Ctrl-C must reach the command exactly once; terminal: {:?}",
        terminal.output()
    );
    assert_eq!(
        status.code(),
        Some(5),
        "withlock must exit with the command's status; terminal: {:?}",
        terminal.output()
    );
}

#[test]
fn ctrl_z_stops_the_command_and_withlock_and_sigcont_resumes_both() {
    let env = Env::new();
    let script = Script::new(&env);
    let mut terminal = OnTerminal::start(&script.under(&env, "z", 5));
    let withlock = terminal.withlock.pid();
    let command = script.wait_started(&mut terminal.withlock.child);
    terminal.withlock.group = Some(command);
    terminal.wait_foreground(command, "the command's");

    terminal.type_byte(0x1a);
    // withlock stops itself only once it has seen the command stop.
    wait_for("withlock to stop", || state(withlock) == Some('T'));
    assert_eq!(state(command), Some('T'), "the command must be stopped");
    assert_eq!(
        terminal.foreground(),
        Some(withlock),
        "a stopped withlock must have taken the terminal back, as a shell would"
    );

    // As `fg` would, once the shell gave withlock the terminal back.
    signal(withlock, Signal::SIGCONT);
    terminal.wait_foreground(command, "the command's");
    wait_for("the command to continue", || state(command) != Some('T'));
    // The whole group goes on: the script's background reader of the FIFO
    // must read the release for the script to exit.
    script.release();
    let status = wait_child(&mut terminal.withlock.child);
    assert_eq!(
        status.code(),
        Some(5),
        "withlock must exit with the command's status; terminal: {:?}",
        terminal.output()
    );
    assert_eq!(script.lines(), Vec::<String>::new(), "no signal was logged");
}
