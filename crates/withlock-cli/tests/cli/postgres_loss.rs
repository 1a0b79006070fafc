//! Losing a `--url` lock while the command runs (issue 5, items 4 and 6):
//! the holder's session terminated, the server restarted, the connection
//! severed or frozen by a proxy. Each time the command gets SIGTERM (and
//! SIGKILL after `--grace` if it ignores it) within the detection bound,
//! withlock says so and exits 80, and a second withlock waiting on the
//! server directly then gets the lock; its command records whether the
//! first command was still alive.
//!
//! In every case the second command must start only after the first one
//! is gone. In a partition the server keeps the lock until after the
//! client's bound and grace; a terminated session, a restart or a reset
//! frees it at once, and then the second holder finds the first one's
//! grant record unerased and pauses before its command (pg::handover).

use std::fs;
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use withlock::pg::handover::SETTLE_MARGIN;
use withlock::pg::heartbeat::{DETECTION_BOUND, server_bound};
use withlock_pg_testing::Proxy;

use crate::postgres::PgEnv;
use crate::support::{Run, spawn, stderr_of, wait_for};

/// Beyond a bound under test: scheduling on a loaded test machine.
const SLACK: Duration = Duration::from_secs(10);

/// What cuts the holder off.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Terminate,
    Restart,
    Sever,
    Freeze,
}

/// How the holder's command takes SIGTERM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum OnTerm {
    /// Writes TERM to a file and exits.
    Record,
    /// Ignores it, so only SIGKILL stops it.
    Ignore,
}

/// The first holder's command: writes its pid to `$1`, blocks opening the
/// FIFO `$2`; on SIGTERM writes TERM to `$3` (or ignores it).
pub(crate) fn holder_script(on_term: OnTerm) -> &'static str {
    match on_term {
        OnTerm::Record => {
            r#"trap 'echo TERM > "$3"; exit 143' TERM; echo "$$" > "$1"; { read _ < "$2"; } 2>/dev/null"#
        }
        OnTerm::Ignore => r#"trap '' TERM; echo "$$" > "$1"; { read _ < "$2"; } 2>/dev/null"#,
    }
}

/// The second holder's command: whether the first command (pid `$1`)
/// still existed when it started, into `$2`.
pub(crate) const CHECK_FIRST_GONE: &str =
    r#"if kill -0 "$1" 2>/dev/null; then echo overlap > "$2"; else echo after > "$2"; fi"#;

/// Waits for `child` to exit within `bound`; kills it and fails if not.
pub(crate) fn exit_within(child: &mut Child, bound: Duration, what: &str) -> ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > bound {
            let _ = child.kill();
            panic!("{what} did not exit within {bound:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

pub(crate) fn read_pid(path: &Path) -> i32 {
    let mut pid = None;
    wait_for("the first command to start", || {
        pid = fs::read_to_string(path)
            .ok()
            .filter(|text| text.ends_with('\n'))
            .and_then(|text| text.trim().parse().ok());
        pid.is_some()
    });
    pid.unwrap()
}

fn second_holder(pg: &PgEnv, first_pid: i32, result: &Path) -> Child {
    pg.withlock()
        .args(["deploy", "--", "sh", "-c", CHECK_FIRST_GONE, "sh"])
        .arg(first_pid.to_string())
        .arg(result)
        .spawn()
}

fn with_url(run: Run, url: &str) -> Run {
    let mut run = run;
    run.env("WITHLOCK_URL", url);
    run
}

/// Runs one fault against a holder with `--grace grace`; returns whether
/// the second holder's command saw the first one gone.
fn lose_the_lock(fault: Fault, on_term: OnTerm, grace: Duration) -> String {
    let pg = PgEnv::new();
    let proxy = Proxy::start(pg.server.port());
    let url = match fault {
        Fault::Sever | Fault::Freeze => proxy.url(),
        Fault::Terminate | Fault::Restart => pg.server.url(),
    };
    let ready = pg.env.file("first.ready");
    let go = pg.env.fifo("first.go");
    let term = pg.env.file("first.term");
    let result = pg.env.file("second.result");
    let mut first = spawn(
        with_url(pg.env.withlock(), &url)
            .args(["--grace", &grace.as_secs_f64().to_string()])
            .args(["deploy", "--", "sh", "-c", holder_script(on_term), "sh"])
            .args([&ready, &go, &term])
            .command()
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped()),
    );
    let first_pid = read_pid(&ready);
    let mut second = None;
    if fault != Fault::Restart {
        // A restart would end the waiting session too: start it after.
        second = Some(second_holder(&pg, first_pid, &result));
        pg.wait_waiting("deploy", 1);
    }
    let since = Instant::now();
    match fault {
        Fault::Terminate => {
            let mut admin = pg.server.client();
            let killed: i64 = admin
                .query_one(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                     WHERE pid <> pg_backend_pid() AND application_name LIKE $1",
                    &[&format!("withlock {} %", first.id())],
                )
                .unwrap()
                .get(0);
            assert_eq!(killed, 1, "the holder's session");
        }
        Fault::Restart => pg.server.restart(),
        Fault::Sever => proxy.sever(),
        Fault::Freeze => proxy.freeze(),
    }
    let status = exit_within(&mut first, DETECTION_BOUND + grace + SLACK, "withlock");
    eprintln!(
        "{fault:?}/{on_term:?}: withlock exited after {:?}",
        since.elapsed()
    );
    let err = stderr_of(&mut first);
    assert_eq!(status.code(), Some(80), "{err}");
    assert!(
        err.starts_with("withlock: lost the lock deploy (PostgreSQL 127.0.0.1:"),
        "{err:?}"
    );
    let stopping = format!(
        "; stopping the command (SIGTERM, SIGKILL after {}s)\n",
        grace.as_secs_f64()
    );
    assert!(err.ends_with(&stopping), "{err:?}");
    assert_eq!(err.lines().count(), 1, "{err}");
    match on_term {
        OnTerm::Record => assert_eq!(fs::read_to_string(&term).unwrap(), "TERM\n"),
        OnTerm::Ignore => assert!(!term.exists()),
    }
    // Reaped by withlock, which has exited: gone for good.
    assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(first_pid), None).is_err());
    let mut second = second.unwrap_or_else(|| second_holder(&pg, first_pid, &result));
    // The server's hold on a silent client, then the second holder's pause
    // for the first one's unerased grant record.
    let bound = server_bound(grace) + DETECTION_BOUND + grace + SETTLE_MARGIN + SLACK;
    assert!(exit_within(&mut second, bound, "the second withlock").success());
    let said = stderr_of(&mut second);
    if fault != Fault::Freeze {
        assert!(
            said.contains("ended without releasing it; waiting"),
            "the second holder pauses, and says why: {said}"
        );
    }
    eprintln!(
        "{fault:?}/{on_term:?}: the second command ran after {:?}",
        since.elapsed()
    );
    fs::read_to_string(&result).unwrap().trim().to_owned()
}

#[test]
fn a_terminated_session_stops_the_command_with_sigterm_and_exits_80() {
    let seen = lose_the_lock(Fault::Terminate, OnTerm::Record, Duration::from_secs(5));
    assert_eq!(seen, "after");
}

#[test]
fn a_command_that_ignores_sigterm_is_killed_after_the_grace() {
    let seen = lose_the_lock(Fault::Terminate, OnTerm::Ignore, Duration::from_secs(1));
    assert_eq!(seen, "after");
}

#[test]
fn a_server_restart_stops_the_command_and_exits_80() {
    let seen = lose_the_lock(Fault::Restart, OnTerm::Record, Duration::from_secs(5));
    assert_eq!(seen, "after");
}

#[test]
fn a_severed_connection_stops_the_command_and_exits_80() {
    let seen = lose_the_lock(Fault::Sever, OnTerm::Record, Duration::from_secs(5));
    assert_eq!(seen, "after");
}

#[test]
fn in_a_partition_the_command_is_stopped_before_the_server_hands_the_lock_on() {
    let seen = lose_the_lock(Fault::Freeze, OnTerm::Record, Duration::from_secs(1));
    assert_eq!(seen, "after");
}

#[test]
fn in_a_partition_a_command_ignoring_sigterm_is_killed_before_the_lock_is_handed_on() {
    let seen = lose_the_lock(Fault::Freeze, OnTerm::Ignore, Duration::from_secs(1));
    assert_eq!(seen, "after");
}

#[test]
fn a_killed_withlock_takes_its_command_down_and_the_next_holder_pauses() {
    let pg = PgEnv::new();
    let ready = pg.env.file("first.ready");
    let go = pg.env.fifo("first.go");
    let term = pg.env.file("first.term");
    let result = pg.env.file("second.result");
    let mut first = pg
        .withlock()
        .args(["--grace", "1", "deploy", "--", "sh", "-c"])
        .arg(holder_script(OnTerm::Record))
        .arg("sh")
        .args([&ready, &go, &term])
        .spawn();
    let first_pid = read_pid(&ready);
    let mut second = second_holder(&pg, first_pid, &result);
    pg.wait_waiting("deploy", 1);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = first.wait();
    // The lock died with withlock's session; its command must not run on.
    // The shell creates the file before it writes to it.
    wait_for("the command to get SIGTERM", || {
        fs::read_to_string(&term).is_ok_and(|text| text == "TERM\n")
    });
    let bound = server_bound(Duration::from_secs(1)) + SLACK;
    assert!(exit_within(&mut second, bound, "the second withlock").success());
    assert_eq!(fs::read_to_string(&result).unwrap().trim(), "after");
    let said = stderr_of(&mut second);
    assert!(
        said.contains("ended without releasing it; waiting"),
        "{said}"
    );
}
