//! Two and more processes exclude each other through the server.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use withlock::{Lock, Mode};
use withlock_pg::PgLock;

use crate::server::TestServer;

const BOUND: Duration = Duration::from_secs(30);
const PROBE: &str = env!("CARGO_BIN_EXE_withlock-pg-probe");

/// A probe holding (or waiting for) the lock until its stdin closes.
struct Holder {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Holder {
    fn start(server: &TestServer, name: &str, mode: &str) -> Holder {
        let mut child = Command::new(PROBE)
            .args([&server.url(), name, mode, "forever", "hold"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the probe");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Holder { child, stdout }
    }

    /// The next line the probe prints (blocks until it does).
    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read the probe");
        line.trim_end().to_owned()
    }

    /// Closes stdin: the probe releases and exits.
    fn finish(mut self) -> String {
        drop(self.child.stdin.take());
        let rest = self.line();
        assert!(self.child.wait().unwrap().success());
        rest
    }
}

#[test]
fn a_second_process_waits_in_the_server_until_the_first_releases() {
    let server = TestServer::start();
    let key = withlock_pg::advisory_key("deploy");
    let mut first = Holder::start(&server, "deploy", "exclusive");
    assert!(first.line().starts_with("acquired "));
    let mut second = Holder::start(&server, "deploy", "exclusive");
    let mut admin = server.client();
    server.wait_until("the second process waiting in pg_locks", BOUND, || {
        server.waiting_for(&mut admin, key) == 1
    });
    // Still waiting: it has printed nothing, and the lock has one holder.
    let lock = PgLock::new(&server.url(), "deploy").unwrap();
    let holders = lock.holders().unwrap();
    assert_eq!(holders.holders.len(), 1);
    assert_eq!(holders.holders[0].pid, first.child.id() as i32);
    assert_eq!(holders.waiters[0].pid, second.child.id() as i32);
    assert_eq!(first.finish(), "released");
    assert!(second.line().starts_with("acquired "));
    assert_eq!(second.finish(), "released");
}

#[test]
fn a_killed_holder_loses_the_lock_when_its_session_ends() {
    let server = TestServer::start();
    let mut holder = Holder::start(&server, "deploy", "exclusive");
    assert!(holder.line().starts_with("acquired "));
    let lock = PgLock::new(&server.url(), "deploy").unwrap();
    assert!(lock.try_acquire().is_err());
    holder.child.kill().unwrap();
    holder.child.wait().unwrap();
    // The server ends the session when the socket closes; the lock is then
    // free for a waiter within the bound.
    let guard = lock.acquire_timeout(BOUND).expect("the lock is freed");
    drop(guard);
}

#[test]
fn a_storm_of_processes_never_overlaps() {
    let server = TestServer::start();
    let log = server.dir().join("storm.log");
    let probes: Vec<Child> = (0..4)
        .map(|_| {
            Command::new(PROBE)
                .args([&server.url(), "storm", "exclusive", "forever", "storm"])
                .arg(&log)
                .arg("25")
                .spawn()
                .expect("start a probe")
        })
        .collect();
    for mut probe in probes {
        assert!(probe.wait().unwrap().success());
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4 * 25 * 2);
    for pair in lines.chunks(2) {
        let enter = pair[0].strip_prefix("enter ").expect("enter first");
        let leave = pair[1].strip_prefix("leave ").expect("then leave");
        assert_eq!(enter, leave, "two holders overlapped: {pair:?}");
    }
}

#[test]
fn a_shared_holder_in_another_process_lets_shared_in_and_keeps_exclusive_out() {
    let server = TestServer::start();
    let mut holder = Holder::start(&server, "deploy", "shared");
    assert!(holder.line().starts_with("acquired "));
    let lock = PgLock::new(&server.url(), "deploy").unwrap();
    lock.clone()
        .with_mode(Mode::Shared)
        .try_acquire()
        .expect("shared beside shared");
    assert!(lock.try_acquire().is_err());
    holder.child.stdin.as_mut().unwrap().flush().unwrap();
    assert_eq!(holder.finish(), "released");
}
