//! Socket-held locks (`tcp:`, `unix:`, `abstract:`): for each mechanism an
//! exclusion storm, release when the holder is SIGKILLed, waiting with and
//! without a limit, the holder message and the refusal of `--shared`; then
//! what only socket files have: stale files, live sockets, symlinks.
//!
//! A waiter is known to be waiting when its main thread sleeps in poll()
//! on one descriptor, its connection to the holder (`/proc/<pid>/syscall`),
//! never by sleeping.

use std::fs;
use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::sys::signal::Signal;

use crate::support::{
    ALICE, BOB, Env, INCREMENT, command_as, ensure_user, holding, set_mode, signal, spawn, stderr,
    storm, wait_child, wait_for, without_forks,
};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Tcp,
    Unix,
    Abstract,
}

/// A fresh lock spec of `kind` for this test.
pub(crate) fn spec(env: &Env, kind: Kind) -> String {
    match kind {
        Kind::Tcp => format!("tcp:{}", free_port()),
        Kind::Unix => format!("unix:{}", env.file("lock.sock").display()),
        Kind::Abstract => {
            let unique = env.path().file_name().unwrap().to_string_lossy();
            format!("abstract:{unique}")
        }
    }
}

/// A port that was free a moment ago, below the ephemeral range (32768 up
/// by default) so that no test's outgoing connection takes it meanwhile.
fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed) + std::process::id() * 31;
        let port = 20_000 + (n % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// True when `pid`'s main thread sleeps in poll() on exactly one descriptor:
/// withlock waiting on its connection to the holder.
fn polls_one_fd(pid: i32) -> bool {
    let Ok(syscall) = fs::read_to_string(format!("/proc/{pid}/syscall")) else {
        return false;
    };
    let fields: Vec<&str> = syscall.split_whitespace().collect();
    let Some(number) = fields.first().and_then(|n| n.parse::<i64>().ok()) else {
        return false;
    };
    #[cfg(target_arch = "x86_64")]
    let is_poll = number == libc::SYS_poll || number == libc::SYS_ppoll;
    #[cfg(not(target_arch = "x86_64"))]
    let is_poll = number == libc::SYS_ppoll;
    is_poll && fields.get(2) == Some(&"0x1")
}

pub(crate) fn wait_polling(pid: i32) {
    wait_for(&format!("pid {pid} to wait in poll()"), || {
        polls_one_fd(pid)
    });
}

fn exclusion_storm(kind: Kind) {
    let env = Env::new();
    let spec = spec(&env, kind);
    let (clients, rounds) = (6, 10);
    let lockers = vec![format!("{} {spec} --", env.bin().display()); clients];
    assert_eq!(
        storm(&env, &lockers, rounds),
        u64::from(rounds) * clients as u64
    );
}

fn sigkill_releases(kind: Kind) {
    let env = Env::new();
    let spec = spec(&env, kind);
    let mut holder = env.hold(env.withlock().arg(&spec), "h");
    let withlock_pid = holder.pid();
    signal(withlock_pid, Signal::SIGKILL);
    holder.child.wait().unwrap();

    // The command inherited the socket: still held.
    let out = env
        .withlock()
        .args(["-n", &spec, "--", "true"])
        .assert()
        .code(75)
        .get_output()
        .clone();
    if kind != Kind::Tcp {
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "pid {withlock_pid} (exited; a process it started still holds the lock)"
            )),
            "{err}"
        );
    }

    // A waiter blocks until the command dies too, then gets in.
    let marker = env.file("marker");
    let mut waiter = env
        .withlock()
        .args([&spec, "--", "touch"])
        .arg(&marker)
        .spawn();
    wait_polling(waiter.id() as i32);
    signal(holder.command_pid(), Signal::SIGKILL);
    assert!(wait_child(&mut waiter).success());
    assert!(marker.exists());
    env.withlock()
        .args(["-n", &spec, "--", "true"])
        .assert()
        .code(0);
}

fn waits_without_a_limit(kind: Kind) {
    let env = Env::new();
    let spec = spec(&env, kind);
    let holder = env.hold(env.withlock().arg(&spec), "h");
    let marker = env.file("marker");
    let mut waiter = env
        .withlock()
        .args([&spec, "--", "touch"])
        .arg(&marker)
        .spawn();
    wait_polling(waiter.id() as i32);
    assert!(!marker.exists(), "the waiter ran while the lock was held");
    assert!(holder.release().success());
    assert!(wait_child(&mut waiter).success());
    assert!(marker.exists());
}

fn waits_with_a_limit(kind: Kind) {
    let env = Env::new();
    let spec = spec(&env, kind);
    let holder = env.hold(env.withlock().arg(&spec), "h");
    let marker = env.file("marker");
    let out = env
        .withlock()
        .args(["-w", "0.1", &spec, "--", "touch"])
        .arg(&marker)
        .assert()
        .code(75)
        .get_output()
        .clone();
    let err = stderr(&out);
    assert!(
        err.starts_with(&format!("withlock: gave up on {spec} after ")),
        "{err}"
    );
    assert!(!marker.exists());

    // A limit long enough: it gets the lock when released.
    let mut waiter = env
        .withlock()
        .args(["-w", "60", &spec, "--", "touch"])
        .arg(&marker)
        .spawn();
    wait_polling(waiter.id() as i32);
    assert!(holder.release().success());
    assert!(wait_child(&mut waiter).success());
    assert!(marker.exists());
}

fn names_the_holder(kind: Kind) {
    let env = Env::new();
    let spec = spec(&env, kind);
    let holder = env.hold(env.withlock().arg(&spec), "h");
    let out = env
        .withlock()
        .args(["-n", &spec, "--", "true"])
        .assert()
        .code(75)
        .get_output()
        .clone();
    let err = stderr(&out);
    if kind == Kind::Tcp {
        assert_eq!(
            err,
            format!(
                "withlock: {spec} is busy: held by a process withlock cannot identify \
                 (TCP gives no peer credentials)\n"
            )
        );
    } else {
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with(&format!(
                "withlock: {spec} is busy: held exclusive by pid {} (root)",
                holder.pid()
            )),
            "{err}"
        );
        assert!(
            err.contains(&format!("withlock {spec} -- sh -c")),
            "the holder's command line: {err}"
        );
    }
    assert!(holder.release().success());
}

fn refuses_shared(kind: Kind) {
    let env = Env::new();
    let spec = spec(&env, kind);
    let marker = env.file("marker");
    let out = env
        .withlock()
        .args(["-s", &spec, "--", "touch"])
        .arg(&marker)
        .assert()
        .code(64)
        .get_output()
        .clone();
    assert_eq!(
        stderr(&out),
        "withlock: socket locks are exclusive only: drop --shared or use a file lock\n"
    );
    assert!(!marker.exists(), "nothing ran");
}

/// `-s` is for the locks without a mode of their own: a socket lock that
/// says `=exclusive` beside a shared file lock is fine, one that says
/// `=shared` is not.
#[test]
fn shared_beside_a_socket_lock_with_its_own_mode() {
    let env = Env::new();
    let spec = format!("abstract:withlock-own-mode-{}", std::process::id());
    env.withlock()
        .args(["-s", "files", &format!("{spec}=exclusive"), "--", "true"])
        .assert()
        .code(0);
    env.withlock()
        .args([&format!("{spec}=shared"), "--", "true"])
        .assert()
        .code(64);
}

macro_rules! for_each_mechanism {
    ($($module:ident => $kind:expr),* $(,)?) => {$(
        mod $module {
            use super::*;

            #[test]
            fn an_exclusion_storm_loses_no_update() {
                exclusion_storm($kind);
            }

            #[test]
            fn sigkill_keeps_it_while_the_command_runs_then_releases() {
                sigkill_releases($kind);
            }

            #[test]
            fn a_waiter_without_a_limit_blocks_until_release() {
                waits_without_a_limit($kind);
            }

            #[test]
            fn a_waiter_with_a_limit_gives_up_or_gets_it() {
                waits_with_a_limit($kind);
            }

            #[test]
            fn a_conflict_names_the_holder_or_says_it_cannot() {
                names_the_holder($kind);
            }

            #[test]
            fn shared_is_refused_with_one_line() {
                refuses_shared($kind);
            }
        }
    )*};
}

for_each_mechanism! {
    tcp => Kind::Tcp,
    unix => Kind::Unix,
    abstract_name => Kind::Abstract,
}

#[test]
fn a_daemon_left_behind_does_not_keep_a_tcp_or_unix_socket_lock() {
    for kind in [Kind::Tcp, Kind::Unix] {
        let env = Env::new();
        let spec = spec(&env, kind);
        let pid_file = env.file("daemon.pid");
        let script = r#"sleep 1000 </dev/null >/dev/null 2>&1 & echo $! > "$0""#;
        env.withlock()
            .args([&spec, "--", "sh", "-c", script])
            .arg(&pid_file)
            .assert()
            .code(0);
        let daemon: i32 = fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let free = env.withlock().args(["-n", &spec, "--", "true"]).output();
        signal(daemon, Signal::SIGKILL);
        assert_eq!(free.status.code(), Some(0), "{}", stderr(&free));
    }
}

#[test]
fn a_stale_socket_file_is_taken_over_by_one_of_many_racing_clients() {
    let env = Env::new();
    let path = env.file("lock.sock");
    // A crashed holder's socket file: bound, listened on, closed.
    without_forks(|| drop(UnixListener::bind(&path).unwrap()));
    assert!(UnixStream::connect(&path).is_err(), "stale");
    let spec = format!("unix:{}", path.display());
    let counter = env.file("counter");
    fs::write(&counter, "0\n").unwrap();
    let clients = 12;
    let mut runners: Vec<_> = (0..clients)
        .map(|_| {
            env.withlock()
                .args([&spec, "--", "sh", "-c", INCREMENT])
                .arg(&counter)
                .spawn()
        })
        .collect();
    for runner in &mut runners {
        assert!(wait_child(runner).success());
    }
    assert_eq!(
        fs::read_to_string(&counter).unwrap().trim(),
        clients.to_string()
    );
    assert!(!path.exists(), "the last holder removed its socket file");
}

#[test]
fn a_socket_someone_listens_on_is_never_removed() {
    let env = Env::new();
    let path = env.file("lock.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let spec = format!("unix:{}", path.display());
    let out = env
        .withlock()
        .args(["-n", &spec, "--", "true"])
        .assert()
        .code(75)
        .get_output()
        .clone();
    assert!(
        stderr(&out).contains(&format!("pid {}", std::process::id())),
        "the test process listens: {}",
        stderr(&out)
    );
    assert!(path.exists());
    UnixStream::connect(&path).expect("still the same live socket");
    drop(listener);
}

#[test]
fn a_symlink_or_other_file_at_a_socket_path_is_refused_and_not_followed() {
    let env = Env::new();
    // A symlink to a stale socket must not be taken over through the link.
    let target = env.file("target.sock");
    without_forks(|| drop(UnixListener::bind(&target).unwrap()));
    let link = env.file("link.sock");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let regular = env.file("regular.sock");
    fs::write(&regular, "keep").unwrap();
    for (path, kind) in [(&link, "symbolic link"), (&regular, "regular file")] {
        let out = env
            .withlock()
            .arg(format!("unix:{}", path.display()))
            .args(["--", "true"])
            .assert()
            .code(78)
            .get_output()
            .clone();
        assert_eq!(
            stderr(&out),
            format!(
                "withlock: {} is a {kind}, not a socket: remove it or choose another socket path\n",
                path.display()
            )
        );
    }
    assert!(
        fs::symlink_metadata(&target)
            .unwrap()
            .file_type()
            .is_socket()
    );
    assert_eq!(fs::read_link(&link).unwrap(), target);
    assert_eq!(fs::read_to_string(&regular).unwrap(), "keep");
}

#[test]
fn list_shows_socket_locks_named_on_the_command_line() {
    let env = Env::new();
    let (tcp, abs) = (spec(&env, Kind::Tcp), spec(&env, Kind::Abstract));
    let unix = spec(&env, Kind::Unix);
    let tcp_holder = env.hold(env.withlock().arg(&tcp), "t");
    let abs_holder = env.hold(env.withlock().arg(&abs), "a");
    let out = env
        .withlock()
        .args(["--list", &tcp, &abs, &unix])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let table = String::from_utf8(out.stdout).unwrap();
    let row = |spec: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{spec} ")))
            .unwrap_or_else(|| panic!("no row for {spec}: {table}"))
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(row(&tcp)[1..4], ["held", "exclusive", "?"]);
    assert!(table.contains("(TCP gives no peer credentials)"), "{table}");
    assert_eq!(
        row(&abs)[1..5],
        ["held", "exclusive", &abs_holder.pid().to_string(), "root"]
    );
    // Nobody ever listened there: no socket file.
    assert_eq!(row(&unix)[1..3], ["free", "(nothing"]);
    assert!(tcp_holder.release().success());
    assert!(abs_holder.release().success());
}

/// The JSON says what the table says of a held TCP lock: held,
/// exclusive, by a holder that cannot be named, and why.
#[test]
fn a_held_tcp_lock_in_json_is_exclusive_and_unidentified() {
    let env = Env::new();
    let tcp = spec(&env, Kind::Tcp);
    let holder = env.hold(env.withlock().arg(&tcp), "t");
    let out = env
        .withlock()
        .args(["--list", "--json", &tcp])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc[0]["state"], "held");
    assert_eq!(doc[0]["mode"], "exclusive");
    assert_eq!(doc[0]["holders"], serde_json::json!([]));
    assert_eq!(doc[0]["unidentified"], "TCP gives no peer credentials");
    assert!(holder.release().success());
    let out = env
        .withlock()
        .args(["--list", "--json", &tcp])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc[0]["state"], "free");
    assert_eq!(doc[0]["mode"], serde_json::Value::Null);
    assert_eq!(doc[0]["unidentified"], serde_json::Value::Null);
}

#[test]
fn another_users_unix_or_abstract_lock_is_named_and_waited_for() {
    // needs root
    ensure_user(ALICE);
    ensure_user(BOB);
    let env = Env::new();
    for (i, kind) in [Kind::Unix, Kind::Abstract].into_iter().enumerate() {
        let spec = spec(&env, kind);
        let holder = env.hold(env.withlock().as_user(ALICE).arg(&spec), &format!("h{i}"));
        let out = env
            .withlock()
            .as_user(BOB)
            .args(["-n", &spec, "--", "true"])
            .assert()
            .code(75)
            .get_output()
            .clone();
        let err = stderr(&out);
        assert!(
            err.contains(&format!("by pid {} ({ALICE})", holder.pid())),
            "{err}"
        );
        let mut waiter = env
            .withlock()
            .as_user(BOB)
            .args([&spec, "--", "true"])
            .spawn();
        wait_polling(waiter.id() as i32);
        assert!(holder.release().success());
        assert!(wait_child(&mut waiter).success());
    }
}

#[test]
fn bad_socket_specs_are_64() {
    let env = Env::new();
    for spec in ["tcp:0", "tcp:x", "unix:", "abstract:"] {
        env.withlock().args([spec, "--", "true"]).assert().code(64);
    }
}

/// The entries of `dir`, sorted.
fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// flock(1) holding a file, with a command that ends when told to.
struct Squatter {
    child: std::process::Child,
    go: std::path::PathBuf,
}

impl Squatter {
    /// Ends its command: once it reads the FIFO or, with `at_once`, if it
    /// is reading it now.
    fn let_go(&self, at_once: bool) {
        use std::os::unix::fs::OpenOptionsExt;
        let flags = if at_once { libc::O_NONBLOCK } else { 0 };
        if let Ok(mut fifo) = fs::OpenOptions::new()
            .write(true)
            .custom_flags(flags)
            .open(&self.go)
        {
            let _ = fifo.write_all(b"\n");
        }
    }
}

impl Drop for Squatter {
    /// A failed test must not leave it holding the file.
    fn drop(&mut self) {
        self.let_go(true);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Needs root. Another user may open and lock `PATH.takeover` (anyone
/// may: it is a lock file). That delays no request on a free or held
/// path and no release; it keeps a stale socket file from being replaced
/// only within the request's -n or -w, naming the user; and once they let
/// go, the stale file is replaced and no takeover file is left.
#[test]
fn another_users_takeover_lock_delays_nothing_past_the_deadline() {
    ensure_user(BOB);
    let env = Env::new();
    let socks = env.file("socks");
    fs::create_dir(&socks).unwrap();
    set_mode(&socks, 0o1777);
    let path = socks.join("d.sock");
    let spec = format!("unix:{}", path.display());
    let sidecar = socks.join("d.sock.takeover");
    let go = env.fifo("squatter.go");
    let mut squatter = Squatter {
        child: spawn(
            command_as(BOB, "flock")
                .arg("-x")
                .arg(&sidecar)
                .args(["sh", "-c", r#"read _ < "$0""#])
                .arg(&go)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        ),
        go,
    };
    wait_for("bob to hold the takeover file", || {
        !holding(&sidecar).is_empty()
    });
    let bob = holding(&sidecar)[0];

    // A free path, then a held one: -n answers at once.
    env.withlock()
        .args(["-n", &spec, "--", "true"])
        .assert()
        .code(0);
    let holder = env.hold(env.withlock().arg(&spec), "h");
    env.withlock()
        .args(["-n", &spec, "--", "true"])
        .assert()
        .code(75);
    // The holder's release ends at once, and takes its socket file away.
    assert!(holder.release().success());
    assert!(!path.exists(), "released: the socket file is gone");

    // A stale file: -n and -w give up in time and name bob.
    without_forks(|| drop(UnixListener::bind(&path).unwrap()));
    for limit in [&["-n"][..], &["-w", "0.2"]] {
        let out = env
            .withlock()
            .args(limit)
            .args([&spec, "--", "true"])
            .assert()
            .code(75)
            .get_output()
            .clone();
        let err = stderr(&out);
        assert!(err.contains(&format!("by pid {bob} ({BOB}")), "{err}");
    }
    assert!(
        path.exists(),
        "the stale file stays while bob holds the lock"
    );
    // Listed as held by bob, as the waiting line names him.
    let out = env
        .withlock()
        .args(["--list", "--json", &spec])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc[0]["state"], "held", "{doc}");
    assert_eq!(doc[0]["holders"][0]["pid"], bob, "{doc}");

    // Bob lets go: the stale file is replaced, and nothing is left behind.
    squatter.let_go(false);
    assert!(wait_child(&mut squatter.child).success());
    env.withlock()
        .args(["-n", &spec, "--", "true"])
        .assert()
        .code(0);
    assert_eq!(entries(&socks), Vec::<String>::new());
}

/// Whatever a `unix:` request ends with (granted, busy, timed out,
/// refused, a stale file replaced), it leaves no takeover or temporary
/// file beside the socket.
#[test]
fn a_unix_lock_leaves_nothing_behind() {
    let env = Env::new();
    let socks = env.file("socks");
    fs::create_dir(&socks).unwrap();
    let path = socks.join("d.sock");
    let spec = format!("unix:{}", path.display());
    env.withlock().args([&spec, "--", "true"]).assert().code(0);
    assert_eq!(entries(&socks), Vec::<String>::new(), "granted");

    let holder = env.hold(env.withlock().arg(&spec), "h");
    env.withlock()
        .args(["-n", &spec, "--", "true"])
        .assert()
        .code(75);
    env.withlock()
        .args(["-w", "0.1", &spec, "--", "true"])
        .assert()
        .code(75);
    assert_eq!(entries(&socks), ["d.sock"], "busy and timed out");
    assert!(holder.release().success());

    without_forks(|| drop(UnixListener::bind(&path).unwrap()));
    env.withlock().args([&spec, "--", "true"]).assert().code(0);
    assert_eq!(entries(&socks), Vec::<String>::new(), "stale file replaced");

    fs::write(&path, "keep").unwrap();
    env.withlock().args([&spec, "--", "true"]).assert().code(78);
    env.withlock()
        .args(["-s", &spec, "--", "true"])
        .assert()
        .code(64);
    assert_eq!(entries(&socks), ["d.sock"], "refused");
}

/// Needs root. Bob may not remove the stale socket alice left in a sticky
/// directory: refused with 77, and no takeover file is left behind.
#[test]
fn a_refused_takeover_leaves_no_takeover_file() {
    ensure_user(ALICE);
    ensure_user(BOB);
    let env = Env::new();
    let socks = env.file("socks");
    fs::create_dir(&socks).unwrap();
    set_mode(&socks, 0o1777);
    let path = socks.join("d.sock");
    let bind = "import socket, sys\nsocket.socket(socket.AF_UNIX).bind(sys.argv[1])\n";
    let out = crate::support::output(
        command_as(ALICE, "python3")
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .args(["-c", bind])
            .arg(&path),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = env
        .withlock()
        .as_user(BOB)
        .arg(format!("unix:{}", path.display()))
        .args(["--", "true"])
        .assert()
        .code(77)
        .get_output()
        .clone();
    assert!(
        stderr(&out).contains("ask its owner or root"),
        "{}",
        stderr(&out)
    );
    assert_eq!(entries(&socks), ["d.sock"]);
}
