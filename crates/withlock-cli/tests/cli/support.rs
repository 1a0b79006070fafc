//! The fluent helper every test uses to run the real `withlock` binary,
//! plus ways to wait for real events (a file appearing, a process blocking
//! in /proc/locks) within generous bounds.

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};

use assert_cmd::assert::OutputAssertExt;
use std::sync::{RwLock, mpsc};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long any awaited event may take before the test fails.
pub(crate) const BOUND: Duration = Duration::from_secs(30);

/// One test's private directory with its own lock directory and its own
/// copy of the binary that other users can execute. It is sticky and
/// writable by all (like /tmp), so a holder running as another user can
/// write its ready file; owned by root, it is still a safe parent for the
/// lock directory.
pub(crate) struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    pub(crate) fn new() -> Env {
        let dir = tempfile::Builder::new()
            .prefix("withlock-test-")
            .tempdir()
            .unwrap();
        set_mode(dir.path(), 0o1777);
        let env = Env { dir };
        fs::create_dir(env.lock_dir()).unwrap();
        set_mode(&env.lock_dir(), 0o1777);
        fs::create_dir(env.path().join("bin")).unwrap();
        set_mode(&env.path().join("bin"), 0o755);
        copy_binary(&env.bin());
        env
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// A sticky, world-writable lock directory, like /run/lock.
    pub(crate) fn lock_dir(&self) -> PathBuf {
        self.path().join("locks")
    }

    /// The lock file of the named lock `name`.
    pub(crate) fn lock_file(&self, name: &str) -> PathBuf {
        self.lock_dir().join(format!("{name}.lock"))
    }

    pub(crate) fn bin(&self) -> PathBuf {
        self.path().join("bin/withlock")
    }

    /// A file path in the test directory.
    pub(crate) fn file(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    /// `withlock --dir <lock dir>`, ready for more arguments.
    pub(crate) fn withlock(&self) -> Run {
        let mut run = Run::new(self.bin());
        run.env("WITHLOCK_DIR", self.lock_dir());
        run
    }

    /// A FIFO in the test directory, for a test to release a command.
    pub(crate) fn fifo(&self, name: &str) -> PathBuf {
        let path = self.file(name);
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
        set_mode(&path, 0o666);
        path
    }

    /// Starts a withlock that holds `lock` until [`Holder::release`]:
    /// its command announces itself by creating a file, then blocks on a FIFO.
    pub(crate) fn hold(&self, run: Run, tag: &str) -> Holder {
        self.hold_with(run.arg("--").command(), tag)
    }

    /// Starts flock(1) holding the lock file `path` until [`Holder::release`].
    pub(crate) fn hold_flock(&self, path: &Path, tag: &str) -> Holder {
        let mut flock = Command::new("flock");
        flock.arg(path);
        self.hold_with(flock, tag)
    }

    /// Runs `locker` (a command line that ends where its command goes) with
    /// a command that announces itself by writing its pid to a file, then
    /// blocks on a FIFO; returns once the command runs, so the lock is held.
    pub(crate) fn hold_with(&self, mut locker: Command, tag: &str) -> Holder {
        let ready = self.file(&format!("{tag}.ready"));
        let go = self.fifo(&format!("{tag}.go"));
        let script = r#"echo "$$" > "$1" || exit 1; read _ < "$2""#;
        let child = spawn(
            locker
                .args(["sh", "-c", script, "sh"])
                .arg(&ready)
                .arg(&go)
                .stdin(Stdio::null())
                .stderr(Stdio::piped()),
        );
        let mut holder = Holder {
            child,
            ready,
            go,
            released: false,
        };
        holder.wait_ready();
        holder
    }
}

/// A withlock invocation being built.
pub(crate) struct Run {
    program: PathBuf,
    args: Vec<std::ffi::OsString>,
    envs: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    user: Option<String>,
    umask: Option<u32>,
}

impl Run {
    fn new(program: PathBuf) -> Run {
        Run {
            program,
            args: Vec::new(),
            envs: Vec::new(),
            user: None,
            umask: None,
        }
    }

    pub(crate) fn arg(mut self, arg: impl AsRef<OsStr>) -> Run {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub(crate) fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Run {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    pub(crate) fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
    }

    /// Runs as another user, through setpriv.
    #[allow(clippy::wrong_self_convention)] // a builder step: run.as_user("alice")
    pub(crate) fn as_user(mut self, user: &str) -> Run {
        self.user = Some(user.to_owned());
        self
    }

    /// Runs under this umask.
    pub(crate) fn umask(mut self, umask: u32) -> Run {
        self.umask = Some(umask);
        self
    }

    pub(crate) fn command(&self) -> Command {
        let mut argv: Vec<std::ffi::OsString> = Vec::new();
        if let Some(user) = &self.user {
            argv.extend(as_user_prefix(user).map(Into::into));
        }
        if let Some(umask) = self.umask {
            let script = format!("umask {umask:03o} && exec \"$@\"");
            argv.extend(["sh".into(), "-c".into(), script.into(), "sh".into()]);
        }
        argv.push(self.program.clone().into());
        argv.extend(self.args.iter().cloned());
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .envs(self.envs.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Runs to the end and checks its outcome with assert_cmd.
    pub(crate) fn assert(&self) -> assert_cmd::assert::Assert {
        output(&mut self.command()).assert()
    }

    pub(crate) fn output(&self) -> Output {
        self.assert().get_output().clone()
    }

    /// Starts it in the background, stderr captured.
    pub(crate) fn spawn(&self) -> Child {
        spawn(self.command().stdin(Stdio::null()).stderr(Stdio::piped()))
    }

    /// Runs to the end with its stdout going to `sink`; returns its exit
    /// code and what it wrote on stderr.
    pub(crate) fn stdout_into(&self, sink: Sink) -> (Option<i32>, String) {
        let mut command = self.command();
        command.stdout(sink.stdio()).stderr(Stdio::piped());
        finish_writing(command)
    }

    /// Runs to the end with its stderr going to `sink`; returns its exit
    /// code and what it wrote on stdout.
    pub(crate) fn stderr_into(&self, sink: Sink) -> (Option<i32>, String) {
        let mut command = self.command();
        command.stderr(sink.stdio()).stdout(Stdio::piped());
        finish_writing(command)
    }
}

/// Where output that cannot be written goes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Sink {
    /// A pipe whose reader is gone before a byte is written (`| head`).
    ClosedPipe,
    /// /dev/full: every write fails with ENOSPC, like a full disk.
    Full,
}

impl Sink {
    fn stdio(self) -> Stdio {
        match self {
            Sink::ClosedPipe => {
                let (reader, writer) = nix::unistd::pipe().unwrap();
                drop(reader);
                writer.into()
            }
            Sink::Full => fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap()
                .into(),
        }
    }
}

/// Runs `command`, whose one captured stream is piped, to the end; returns
/// its exit code and what it wrote on that stream.
fn finish_writing(mut command: Command) -> (Option<i32>, String) {
    let mut child = spawn(command.stdin(Stdio::null()));
    // Our copies of the sink must be closed: a pipe's reader is the test.
    drop(command);
    let mut captured = String::new();
    let pipe: &mut dyn std::io::Read = match (child.stdout.as_mut(), child.stderr.as_mut()) {
        (Some(out), _) => out,
        (None, Some(err)) => err,
        (None, None) => unreachable!("one stream is captured"),
    };
    pipe.read_to_string(&mut captured).unwrap();
    (wait_child(&mut child).code(), captured)
}

/// The setpriv words that run what follows as `user`, with their groups.
fn as_user_prefix(user: &str) -> [&str; 7] {
    [
        "setpriv",
        "--reuid",
        user,
        "--regid",
        user,
        "--init-groups",
        "--",
    ]
}

/// Any program run as another user, the way [`Run::as_user`] runs withlock.
pub(crate) fn command_as(user: &str, program: &str) -> Command {
    let [setpriv, rest @ ..] = as_user_prefix(user);
    let mut command = Command::new(setpriv);
    command.args(rest).arg(program);
    command
}

/// Held for reading while a process is forked and exec'd, and for writing
/// while a test copies the binary: a process forked during the copy would
/// hold the copy's write descriptor until it execs, and exec of the copy
/// would then fail with ETXTBSY.
static FORKING: RwLock<()> = RwLock::new(());

fn copy_binary(to: &Path) {
    without_forks(|| fs::copy(env!("CARGO_BIN_EXE_withlock"), to).unwrap());
}

/// Runs `f` while no test starts a process, so no child can inherit a
/// descriptor `f` opens and closes (a socket that must end up stale, say).
pub(crate) fn without_forks<T>(f: impl FnOnce() -> T) -> T {
    let _no_forks = FORKING.write().unwrap_or_else(|e| e.into_inner());
    f()
}

/// Starts `command`; every test process is started through here.
pub(crate) fn spawn(command: &mut Command) -> Child {
    let _forking = FORKING.read().unwrap_or_else(|e| e.into_inner());
    match command.spawn() {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let program = command.get_program().to_string_lossy().into_owned();
            panic!(
                "{program} is missing, and the tests need it: {}",
                install_hint(&program)
            )
        }
        Err(e) => panic!("cannot start {command:?}: {e}"),
    }
}

/// The command that installs a program the tests run (Debian package names).
fn install_hint(program: &str) -> String {
    let package = match program {
        "flock" | "setpriv" | "unshare" | "mount" => "util-linux",
        "useradd" => "passwd",
        "make" => "make",
        "groff" => "groff-base",
        "python3" => "python3",
        "mknod" | "sh" => "coreutils dash",
        _ => return format!("install {program} and run the tests again"),
    };
    format!("run `apt-get install {package}` and the tests again")
}

/// Runs `command` to the end with stdout and stderr captured; kills it and
/// fails the test if it runs longer than [`BOUND`].
pub(crate) fn output(command: &mut Command) -> Output {
    let child = spawn(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let pid = child.id() as i32;
    let (done, finished) = mpsc::channel();
    std::thread::spawn(move || done.send(child.wait_with_output()));
    match finished.recv_timeout(BOUND) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            panic!("{command:?} ran longer than {BOUND:?}");
        }
    }
}

/// A withlock (or flock(1)) holding a lock until released.
pub(crate) struct Holder {
    pub child: Child,
    ready: PathBuf,
    go: PathBuf,
    released: bool,
}

impl Holder {
    fn wait_ready(&mut self) {
        let ready = self.ready.clone();
        let child = &mut self.child;
        wait_for("the holder's command to start", || {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut err);
                }
                panic!("the holder exited early with {status}: {err}");
            }
            // The shell creates the file before it writes its pid into it.
            fs::read_to_string(&ready).is_ok_and(|pid| pid.ends_with('\n'))
        });
    }

    /// The pid of the holder's command (the shell that blocks).
    pub(crate) fn command_pid(&self) -> i32 {
        fs::read_to_string(&self.ready)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// The pid of withlock (or flock(1)) itself.
    pub(crate) fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Lets the command finish, and returns withlock's status.
    pub(crate) fn release(mut self) -> ExitStatus {
        fs::OpenOptions::new()
            .write(true)
            .open(&self.go)
            .unwrap()
            .write_all(b"\n")
            .unwrap();
        self.released = true;
        wait_child(&mut self.child)
    }
}

impl Drop for Holder {
    /// A failed test must not leave the command blocked on its FIFO, holding
    /// the test's output pipes open.
    fn drop(&mut self) {
        if self.released {
            // The command has ended; its pid may already belong to another.
            return;
        }
        if let Ok(pid) = fs::read_to_string(&self.ready) {
            if let Ok(pid) = pid.trim().parse() {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for a child within [`BOUND`].
pub(crate) fn wait_child(child: &mut Child) -> ExitStatus {
    let mut status = None;
    wait_for("a process to exit", || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    status.unwrap()
}

/// Polls `condition` until it holds; fails the test after [`BOUND`].
pub(crate) fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < BOUND, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The pids blocked in the kernel waiting for the lock on `path`: in
/// flock(2) (flock(1), or withlock past its queue), or in withlock's
/// arrival queue. Queued waiters block in `fcntl(F_OFD_SETLKW)`, which
/// /proc/locks lists without a pid, so a process counts when it has a
/// stamp on the file (a POSIX lock, which names it), holds no flock on it,
/// sleeps in fcntl(2) or flock(2), and some request on the file is blocked.
pub(crate) fn blocked_on(path: &Path) -> Vec<i32> {
    let mut pids = flock_entries(path, true);
    let Ok(meta) = fs::metadata(path) else {
        return pids;
    };
    let inode = format!(":{}", meta.ino());
    let locks = fs::read_to_string("/proc/locks").unwrap();
    let on_file = |line: &&str| {
        line.split_whitespace()
            .any(|field| field.ends_with(&inode) && field.matches(':').count() == 2)
    };
    if !locks.lines().filter(on_file).any(|l| l.contains("->")) {
        return pids;
    }
    let holders = flock_entries(path, false);
    let stamped: Vec<i32> = locks
        .lines()
        .filter(on_file)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1) == Some(&"POSIX")).then(|| fields.get(4)?.parse().ok())?
        })
        .collect();
    for pid in stamped {
        if !holders.contains(&pid) && !pids.contains(&pid) && sleeps_in_a_lock_call(pid) {
            pids.push(pid);
        }
    }
    pids
}

/// True when `pid`'s main thread sleeps in fcntl(2) or flock(2).
fn sleeps_in_a_lock_call(pid: i32) -> bool {
    #[cfg(target_arch = "x86_64")]
    const LOCK_CALLS: [&str; 2] = ["72", "73"];
    #[cfg(target_arch = "aarch64")]
    const LOCK_CALLS: [&str; 2] = ["25", "32"];
    let syscall = fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
    let in_call = syscall
        .split_whitespace()
        .next()
        .is_some_and(|n| LOCK_CALLS.contains(&n));
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let sleeping = stat
        .rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next())
        == Some("S");
    in_call && sleeping
}

/// The pids holding a flock on `path`.
pub(crate) fn holding(path: &Path) -> Vec<i32> {
    flock_entries(path, false)
}

fn flock_entries(path: &Path, blocked: bool) -> Vec<i32> {
    let Ok(meta) = fs::metadata(path) else {
        return Vec::new();
    };
    let inode = format!(":{}", meta.ino());
    let locks = fs::read_to_string("/proc/locks").unwrap();
    locks
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let fields = if fields.get(1) == Some(&"->") {
                if !blocked {
                    return None;
                }
                &fields[2..]
            } else {
                if blocked {
                    return None;
                }
                &fields[1..]
            };
            let on_file = fields.get(4).is_some_and(|id| id.ends_with(&inode));
            (fields[0] == "FLOCK" && on_file).then(|| fields[3].parse().unwrap())
        })
        .collect()
}

/// Waits until `pid` is blocked in the kernel on the lock file `path`.
pub(crate) fn wait_blocked(path: &Path, pid: i32) {
    wait_for(&format!("pid {pid} to block on {}", path.display()), || {
        blocked_on(path).contains(&pid)
    });
}

pub(crate) fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

pub(crate) fn signal(pid: i32, signal: Signal) {
    kill(Pid::from_raw(pid), signal).unwrap();
}

/// Fails with the command that fixes it unless the tests run as root.
pub(crate) fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (it creates users and changes sysctls): \
         run `sudo cargo test --locked --workspace`"
    );
}

/// The stderr of an output, as text.
pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// What an exited child wrote to its piped stderr (read once: the pipe is
/// taken).
pub(crate) fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    let mut pipe = child.stderr.take().expect("stderr piped");
    std::io::Read::read_to_string(&mut pipe, &mut text).unwrap();
    text
}

/// Needs root. `user` connects to the abstract socket `name`, sends the
/// byte `notice` and waits until the listener closes the connection, as a
/// stranger asking a holder or waiter to give way would; fails the test if
/// the connection or the send fails.
pub(crate) fn send_notice_as(user: &str, name: &str, notice: u8) {
    let script = "import socket, sys\n\
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n\
        s.connect('\\0' + sys.argv[1])\n\
        s.sendall(bytes([int(sys.argv[2])]))\n\
        s.recv(1)\n";
    let out = output(
        command_as(user, "python3")
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .args(["-c", script, name])
            .arg(notice.to_string()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A lock directory only root can enter, for tests of what another user
/// who cannot open the lock file may do.
pub(crate) fn private_dir(env: &Env) -> PathBuf {
    let dir = env.file("private");
    fs::create_dir(&dir).unwrap();
    set_mode(&dir, 0o700);
    dir
}

/// Two unprivileged test users, created on first use.
pub(crate) const ALICE: &str = "wl-alice";
pub(crate) const BOB: &str = "wl-bob";

/// A lock shared by every test process (cargo test threads and nextest
/// processes alike), taken with withlock's own library.
fn machine_lock(name: &str) -> withlock::FileGuard {
    use withlock::Lock;
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.lock"));
    withlock::FileLock::at_path(&path)
        .unwrap()
        .acquire()
        .unwrap()
}

/// Makes sure the test user `name` exists (needs root).
pub(crate) fn ensure_user(name: &str) {
    require_root();
    let _serial = machine_lock("useradd");
    if nix::unistd::User::from_name(name).unwrap().is_some() {
        return;
    }
    let out = output(Command::new("useradd").args([
        "--system",
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
        name,
    ]));
    assert!(out.status.success(), "useradd {name}: {}", stderr(&out));
}

/// Sets a sysctl for as long as it lives, then restores it. Only one test
/// at a time may hold one, across all test processes, whichever sysctl.
pub(crate) struct Sysctl {
    file: &'static str,
    previous: String,
    _serial: withlock::FileGuard,
}

impl Sysctl {
    /// Sets the sysctl whose file is `file` (under /proc/sys) to `value`.
    pub(crate) fn set(file: &'static str, value: u8) -> Sysctl {
        require_root();
        let serial = machine_lock("sysctl");
        let previous = fs::read_to_string(file).unwrap();
        fs::write(file, value.to_string()).unwrap();
        Sysctl {
            file,
            previous,
            _serial: serial,
        }
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        fs::write(self.file, self.previous.trim()).unwrap();
    }
}

/// fs.protected_regular, set for as long as the returned [`Sysctl`] lives.
pub(crate) struct ProtectedRegular;

impl ProtectedRegular {
    pub(crate) fn set(value: u8) -> Sysctl {
        Sysctl::set("/proc/sys/fs/protected_regular", value)
    }
}

/// fs.protected_symlinks, set for as long as the returned [`Sysctl`] lives.
pub(crate) struct ProtectedSymlinks;

impl ProtectedSymlinks {
    pub(crate) fn set(value: u8) -> Sysctl {
        Sysctl::set("/proc/sys/fs/protected_symlinks", value)
    }
}

/// A non-atomic read-increment-write of the file named by "$0": loses
/// updates unless something serialises it.
pub(crate) const INCREMENT: &str = r#"n=$(cat "$0"); echo $((n + 1)) > "$0""#;

/// A contention storm: one client per entry of `lockers`, all at once, each
/// running `rounds` times `<locker> sh -c INCREMENT COUNTER`, where a locker
/// is the start of a command line that runs what follows under a lock
/// (`withlock NAME --`, `flock FILE`). Returns the counter's final value,
/// which is `lockers.len() * rounds` unless an update was lost.
pub(crate) fn storm(env: &Env, lockers: &[String], rounds: u32) -> u64 {
    let counter = env.file("storm-counter");
    fs::write(&counter, "0\n").unwrap();
    let runners: Vec<Child> = lockers
        .iter()
        .map(|locker| {
            let locked = format!("{locker} sh -c '{INCREMENT}' \"$1\"");
            let script = format!("for i in $(seq {rounds}); do {locked} || exit 1; done");
            let mut command = Command::new("sh");
            command
                .args(["-c", &script, "sh"])
                .arg(&counter)
                .env("WITHLOCK_DIR", env.lock_dir());
            spawn(&mut command)
        })
        .collect();
    for mut runner in runners {
        assert!(wait_child(&mut runner).success(), "a storm client failed");
    }
    fs::read_to_string(&counter)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// How often the main thread of `pid` has gone to sleep voluntarily; a
/// process blocked in the kernel does not add to it, a poller does.
pub(crate) fn voluntary_switches(pid: i32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/task/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Fails unless `pid`'s main thread stays asleep for a while: a waiter that
/// blocks in the kernel makes no voluntary context switch, a poller does.
/// (Showing that nothing happens takes an interval; nothing is timed.)
pub(crate) fn assert_sleeps_without_polling(pid: i32, what: &str) {
    let before = voluntary_switches(pid);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        voluntary_switches(pid),
        before,
        "{what} woke while it should sleep"
    );
}

/// The lines of a log that commands append to (none if it does not exist).
pub(crate) fn lines(log: &Path) -> Vec<String> {
    fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits for each child and requires it to succeed.
pub(crate) fn finish(children: Vec<Child>) {
    for mut child in children {
        assert!(wait_child(&mut child).success());
    }
}
