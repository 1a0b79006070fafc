//! The etcd backend against a three-member cluster on loopback
//! (`withlock_etcd_testing::Cluster`), with members killed and holders cut
//! off while commands run (issue 14, point 5):
//!
//! - the leader killed: the holder moves to another member and runs on,
//!   and nobody else gets the lock meanwhile;
//! - the quorum lost: the command gets SIGTERM (SIGKILL after `--grace`)
//!   within the detection bound, and withlock exits 80;
//! - the holder cut off by a proxy (frozen, then severed): the same, and
//!   a waiter on the healthy side starts its command only once the first
//!   command is gone, which its command records with `kill -0`;
//! - storms (exclusive, `--max`, several locks, mixed with `etcdctl lock`),
//!   arrival order, and a fencing token that grows across a leader change.
//!
//! Every step waits for a real event (a file, a key in etcd, a process
//! exiting) within a generous bound; the times measured are printed, never
//! asserted beyond their bounds.

use std::fs;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::kill;
use nix::unistd::Pid;
use withlock::etcd::lease::{detection_bound, ttl};
use withlock_etcd_testing::{Cluster, Proxy};

use crate::postgres_loss::{CHECK_FIRST_GONE, OnTerm, exit_within, holder_script, read_pid};
use crate::support::{Env, Run, finish, lines, spawn, stderr_of, storm, wait_child, wait_for};

/// Beyond a bound under test: scheduling on a loaded test machine.
const SLACK: Duration = Duration::from_secs(15);

/// A test's directory and binary, and its own three-member cluster.
struct ClusterEnv {
    env: Env,
    cluster: Cluster,
}

impl ClusterEnv {
    fn new() -> ClusterEnv {
        ClusterEnv {
            env: Env::new(),
            cluster: Cluster::start(3),
        }
    }

    /// `withlock` with `WITHLOCK_URL` listing every member.
    fn withlock(&self) -> Run {
        self.withlock_at(&self.cluster.url())
    }

    /// `withlock` with `WITHLOCK_URL` set to `url`.
    fn withlock_at(&self, url: &str) -> Run {
        let mut run = self.env.withlock();
        run.env("WITHLOCK_URL", url);
        run
    }

    /// The keys of holders and waiters of the lock `name`: etcd's lock
    /// layout puts them under `NAME/`.
    fn keys(&self, name: &str) -> Vec<String> {
        let output = self
            .cluster
            .etcdctl()
            .args(["get", "--prefix", "--keys-only"])
            .arg(format!("{name}/"))
            .output()
            .expect("run etcdctl");
        if !output.status.success() {
            // A member down or an election under way: not an answer.
            return Vec::new();
        }
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Waits until `count` requests (holders and waiters) are in the line
    /// of `name`.
    fn wait_in_line(&self, name: &str, count: usize) {
        wait_for(&format!("{count} key(s) under {name}/"), || {
            self.keys(name).len() == count
        });
    }

    /// A URL listing every member, the leader first, so that a holder
    /// starts out talking to the member the test kills.
    fn url_leader_first(&mut self) -> (usize, String) {
        let leader = self.cluster.leader();
        let mut endpoints = vec![self.cluster.member(leader).endpoint()];
        endpoints.extend(
            (0..self.cluster.len())
                .filter(|&i| i != leader)
                .map(|i| self.cluster.member(i).endpoint()),
        );
        (leader, format!("etcd://{}", endpoints.join(",")))
    }
}

/// A first holder of `deploy` at `url` with `--grace grace`, its command
/// as [`holder_script`] says, its stderr piped; with its files.
struct First {
    child: Child,
    pid: i32,
    go: std::path::PathBuf,
    term: std::path::PathBuf,
}

fn first_holder(ce: &ClusterEnv, url: &str, grace: Duration, on_term: OnTerm) -> First {
    let ready = ce.env.file("first.ready");
    let go = ce.env.fifo("first.go");
    let term = ce.env.file("first.term");
    let child = spawn(
        ce.withlock_at(url)
            .args(["--grace", &grace.as_secs_f64().to_string()])
            .args(["deploy", "--", "sh", "-c", holder_script(on_term), "sh"])
            .args([&ready, &go, &term])
            .command()
            .stdin(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let pid = read_pid(&ready);
    First {
        child,
        pid,
        go,
        term,
    }
}

/// A second holder of `deploy` at `url` whose command records whether the
/// first command (`first_pid`) was gone, into `result`.
fn second_holder(ce: &ClusterEnv, url: &str, first_pid: i32, result: &std::path::Path) -> Child {
    ce.withlock_at(url)
        .args(["deploy", "--", "sh", "-c", CHECK_FIRST_GONE, "sh"])
        .arg(first_pid.to_string())
        .arg(result)
        .spawn()
}

/// Checks how withlock reported the loss: exit 80, one line naming the
/// lock and saying the command is being stopped.
fn assert_lost(status: std::process::ExitStatus, err: &str) {
    assert_eq!(status.code(), Some(80), "{err}");
    assert!(err.starts_with("withlock: lost the lock deploy"), "{err:?}");
    assert!(err.contains("stopping the command"), "{err:?}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// Whether process `pid` exists (a zombie not yet reaped counts).
fn alive(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None).is_ok()
}

/// Waits until the command `pid` is gone (reaped by withlock), within
/// `bound` of `since`; returns how long after `since` that was.
fn gone_within(pid: i32, since: Instant, bound: Duration) -> Duration {
    while alive(pid) {
        assert!(
            since.elapsed() < bound,
            "the command still ran {bound:?} after the fault"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    since.elapsed()
}

#[test]
fn killing_the_leader_neither_stops_the_holder_nor_lets_a_second_one_in() {
    let mut ce = ClusterEnv::new();
    let (leader, url) = ce.url_leader_first();
    let first = first_holder(&ce, &url, Duration::from_secs(1), OnTerm::Record);
    let result = ce.env.file("second.result");
    // The waiter too starts out on the leader, so its watch must move.
    let mut second = second_holder(&ce, &url, first.pid, &result);
    ce.wait_in_line("deploy", 2);
    let killed = Instant::now();
    ce.cluster.kill(leader);
    let next = ce.cluster.leader();
    eprintln!("a new leader after {:?}", killed.elapsed());
    assert_ne!(next, leader);
    // A loss would show within the detection bound (and the holder's
    // lease would be gone after its TTL): watch the holder past both.
    let watch = ttl(Duration::from_secs(1), 3) + Duration::from_secs(2);
    let mut first = first;
    while killed.elapsed() < watch {
        assert!(
            first.child.try_wait().unwrap().is_none(),
            "withlock ended after the leader was killed: {}",
            stderr_of(&mut first.child)
        );
        assert!(!first.term.exists(), "the command got SIGTERM");
        assert!(!result.exists(), "a second holder got in");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        ce.keys("deploy").len(),
        2,
        "holder and waiter still in line"
    );
    fs::write(&first.go, "\n").unwrap();
    let status = wait_child(&mut first.child);
    let err = stderr_of(&mut first.child);
    assert!(status.success(), "{err}");
    assert!(wait_child(&mut second).success());
    assert_eq!(fs::read_to_string(&result).unwrap(), "after\n");
}

/// Kills two of the three members under a holder with `--grace grace`.
fn lose_the_quorum(on_term: OnTerm, grace: Duration) {
    let mut ce = ClusterEnv::new();
    let (leader, url) = ce.url_leader_first();
    let mut first = first_holder(&ce, &url, grace, on_term);
    ce.wait_in_line("deploy", 1);
    let follower = (0..3).find(|&i| i != leader).unwrap();
    ce.cluster.kill(follower);
    ce.cluster.kill(leader);
    let lost = Instant::now();
    let bound = detection_bound(3) + grace + SLACK;
    let stopped = gone_within(first.pid, lost, bound);
    let status = exit_within(&mut first.child, bound, "withlock");
    eprintln!(
        "quorum lost/{on_term:?}: the command was gone after {stopped:?}, withlock exited after \
         {:?} (bound: detection {:?} + grace {grace:?})",
        lost.elapsed(),
        detection_bound(3)
    );
    assert_lost(status, &stderr_of(&mut first.child));
    match on_term {
        OnTerm::Record => assert_eq!(fs::read_to_string(&first.term).unwrap(), "TERM\n"),
        OnTerm::Ignore => assert!(!first.term.exists()),
    }
}

#[test]
fn losing_the_quorum_stops_the_command_with_sigterm_and_exits_80() {
    lose_the_quorum(OnTerm::Record, Duration::from_secs(5));
}

#[test]
fn losing_the_quorum_kills_a_command_that_ignores_sigterm_after_the_grace() {
    lose_the_quorum(OnTerm::Ignore, Duration::from_secs(1));
}

/// What cuts the holder off from every member.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cut {
    /// A partition: nothing passes, nothing closes.
    Freeze,
    /// A partition, then every connection closed and reconnects refused.
    FreezeThenSever,
}

/// The holder reaches each member through a proxy of its own; the waiter
/// reaches them directly. Returns what the waiter's command saw.
fn cut_the_holder_off(cut: Cut, on_term: OnTerm, grace: Duration) -> String {
    let ce = ClusterEnv::new();
    let proxies: Vec<Proxy> = ce
        .cluster
        .endpoints()
        .iter()
        .map(|endpoint| Proxy::start(endpoint.as_str()))
        .collect();
    let through: Vec<String> = proxies.iter().map(Proxy::endpoint).collect();
    let url = format!("etcd://{}", through.join(","));
    let mut first = first_holder(&ce, &url, grace, on_term);
    let result = ce.env.file("second.result");
    let mut second = second_holder(&ce, &ce.cluster.url(), first.pid, &result);
    ce.wait_in_line("deploy", 2);
    let since = Instant::now();
    for proxy in &proxies {
        proxy.freeze();
    }
    if cut == Cut::FreezeThenSever {
        // The holder has missed keepalives by the time its keys are read
        // back twice; then its connections end too.
        ce.wait_in_line("deploy", 2);
        for proxy in &proxies {
            proxy.sever();
        }
    }
    let bound = detection_bound(3) + grace + SLACK;
    let stopped = gone_within(first.pid, since, bound);
    let status = exit_within(&mut first.child, bound, "withlock");
    eprintln!(
        "{cut:?}/{on_term:?}: the command was gone after {stopped:?}, withlock exited after \
         {:?} (bound: detection {:?} + grace {grace:?})",
        since.elapsed(),
        detection_bound(3)
    );
    assert_lost(status, &stderr_of(&mut first.child));
    match on_term {
        OnTerm::Record => assert_eq!(fs::read_to_string(&first.term).unwrap(), "TERM\n"),
        OnTerm::Ignore => assert!(!first.term.exists()),
    }
    // The cluster frees the lock when the holder's lease expires: at most
    // its TTL after the last keepalive it received.
    let bound = ttl(grace, 3) + SLACK;
    assert!(exit_within(&mut second, bound, "the second withlock").success());
    eprintln!(
        "{cut:?}/{on_term:?}: the second command ran after {:?} (lease TTL {:?})",
        since.elapsed(),
        ttl(grace, 3)
    );
    fs::read_to_string(&result).unwrap().trim().to_owned()
}

#[test]
fn a_holder_cut_off_by_a_partition_is_stopped_before_the_waiter_starts() {
    let seen = cut_the_holder_off(Cut::Freeze, OnTerm::Record, Duration::from_secs(1));
    assert_eq!(seen, "after");
}

#[test]
fn a_holder_cut_off_that_ignores_sigterm_is_killed_before_the_waiter_starts() {
    let seen = cut_the_holder_off(Cut::Freeze, OnTerm::Ignore, Duration::from_secs(1));
    assert_eq!(seen, "after");
}

#[test]
fn a_holder_frozen_then_severed_is_stopped_before_the_waiter_starts() {
    let seen = cut_the_holder_off(Cut::FreezeThenSever, OnTerm::Record, Duration::from_secs(2));
    assert_eq!(seen, "after");
}

#[test]
fn an_exclusion_storm_on_the_cluster_loses_no_update() {
    let ce = ClusterEnv::new();
    let locker = format!(
        "{} --url {} storm --",
        ce.env.bin().display(),
        ce.cluster.url()
    );
    assert_eq!(storm(&ce.env, &vec![locker; 6], 10), 60);
    assert!(ce.keys("storm").is_empty(), "a key left behind");
}

#[test]
fn a_max_storm_on_the_cluster_never_lets_more_than_n_run_at_once() {
    let ce = ClusterEnv::new();
    let counts = crate::postgres_several::max_storm(&ce.env, ce.cluster.url(), 6, 3, 2);
    let read = |name: &str| fs::read_to_string(counts.join(name)).unwrap();
    assert_eq!(read("running"), "0\n");
    assert_eq!(
        read("max"),
        "2\n",
        "at most this many ran at once under --max 2"
    );
    assert!(ce.keys("sem").is_empty(), "a key left behind");
}

#[test]
fn waiters_on_the_cluster_run_in_arrival_order() {
    let ce = ClusterEnv::new();
    let log = ce.env.file("log");
    let holder = ce.env.hold(ce.withlock().arg("line"), "h");
    let tags: Vec<String> = (0..5).map(|i| format!("w{i}")).collect();
    let waiters: Vec<Child> = tags
        .iter()
        .enumerate()
        .map(|(i, tag)| {
            let child = ce
                .withlock()
                .args(["line", "--", "sh", "-c", r#"echo "$0" >> "$1""#, tag])
                .arg(&log)
                .spawn();
            ce.wait_in_line("line", i + 2);
            child
        })
        .collect();
    assert!(holder.release().success());
    finish(waiters);
    assert_eq!(lines(&log), tags);
}

#[test]
fn several_locks_taken_in_either_order_by_a_storm_neither_deadlock_nor_overlap() {
    let ce = ClusterEnv::new();
    let bin = ce.env.bin();
    let url = ce.cluster.url();
    let lockers: Vec<String> = (0..6)
        .map(|i| {
            let names = if i % 2 == 0 {
                "storm other"
            } else {
                "other storm"
            };
            format!("{} --url {url} {names} --", bin.display())
        })
        .collect();
    assert_eq!(storm(&ce.env, &lockers, 8), 48);
    assert!(ce.keys("storm").is_empty() && ce.keys("other").is_empty());
}

#[test]
fn several_locks_are_all_held_or_none() {
    let ce = ClusterEnv::new();
    let holder = ce.env.hold(ce.withlock().arg("b"), "h");
    let ran = ce.env.file("ran");
    let out = ce
        .withlock()
        .args(["-n", "a", "b", "--", "touch"])
        .arg(&ran)
        .output();
    assert_eq!(out.status.code(), Some(75));
    assert!(!ran.exists());
    assert!(ce.keys("a").is_empty(), "a was left held");
    assert!(holder.release().success());
    ce.withlock()
        .args(["-n", "a", "b", "--", "touch"])
        .arg(&ran)
        .assert()
        .code(0);
    assert!(ran.exists());
}

#[test]
fn a_storm_mixing_withlock_and_etcdctl_lock_loses_no_update() {
    let ce = ClusterEnv::new();
    let withlock = format!(
        "{} --url {} storm --",
        ce.env.bin().display(),
        ce.cluster.url()
    );
    let etcdctl = format!(
        "ETCDCTL_API=3 /usr/bin/etcdctl --endpoints={} lock storm --",
        ce.cluster.endpoints().join(",")
    );
    let lockers: Vec<String> = (0..8)
        .map(|i| if i % 2 == 0 { &withlock } else { &etcdctl }.clone())
        .collect();
    assert_eq!(storm(&ce.env, &lockers, 8), 64);
    assert!(ce.keys("storm").is_empty(), "a key left behind");
}

#[test]
fn an_etcdctl_lock_waiter_starts_only_after_a_withlock_holder_is_gone_and_back() {
    let ce = ClusterEnv::new();
    // withlock holds, etcdctl waits.
    let holder = ce.env.hold(ce.withlock().arg("both"), "h");
    let result = ce.env.file("etcdctl.result");
    let mut etcdctl = ce.cluster.etcdctl();
    etcdctl
        .args(["lock", "both", "--", "sh", "-c", CHECK_FIRST_GONE, "sh"])
        .arg(holder.command_pid().to_string())
        .arg(&result)
        .stdout(Stdio::null());
    let mut etcdctl = spawn(&mut etcdctl);
    ce.wait_in_line("both", 2);
    assert!(!result.exists(), "etcdctl lock ran beside the holder");
    let first_pid = holder.command_pid();
    assert!(holder.release().success());
    assert!(wait_child(&mut etcdctl).success());
    assert!(!alive(first_pid));
    assert_eq!(fs::read_to_string(&result).unwrap(), "after\n");
    // etcdctl holds, withlock waits.
    let ready = ce.env.file("etcdctl.ready");
    let go = ce.env.fifo("etcdctl.go");
    let mut etcdctl = ce.cluster.etcdctl();
    etcdctl
        .args(["lock", "both", "--", "sh", "-c"])
        .arg(r#"echo "$$" > "$1"; read _ < "$2""#)
        .args(["sh".as_ref(), ready.as_os_str(), go.as_os_str()])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let mut etcdctl = spawn(&mut etcdctl);
    let etcdctl_pid = read_pid(&ready);
    ce.withlock()
        .args(["-n", "both", "--", "true"])
        .assert()
        .code(75);
    let result = ce.env.file("withlock.result");
    let mut waiter = ce
        .withlock()
        .args(["both", "--", "sh", "-c", CHECK_FIRST_GONE, "sh"])
        .arg(etcdctl_pid.to_string())
        .arg(&result)
        .spawn();
    ce.wait_in_line("both", 2);
    fs::write(&go, "\n").unwrap();
    assert!(wait_child(&mut etcdctl).success());
    assert!(wait_child(&mut waiter).success());
    assert_eq!(fs::read_to_string(&result).unwrap(), "after\n");
}

/// The fence `run` gives its holder of `deploy`, which must exit 0, passed
/// back through the file `tag`.
fn fence_of(env: &Env, run: Run, tag: &str) -> i64 {
    let file = env.file(tag);
    run.args([
        "deploy",
        "--",
        "sh",
        "-c",
        r#"echo "$WITHLOCK_FENCE" > "$1""#,
        "sh",
    ])
    .arg(&file)
    .assert()
    .code(0);
    fs::read_to_string(&file).unwrap().trim().parse().unwrap()
}

#[test]
fn the_fencing_token_grows_across_a_leader_change() {
    let mut ce = ClusterEnv::new();
    let fence = |ce: &ClusterEnv, tag: &str| fence_of(&ce.env, ce.withlock(), tag);
    let before = fence(&ce, "before");
    let leader = ce.cluster.leader();
    ce.cluster.kill(leader);
    let next = ce.cluster.leader();
    assert_ne!(next, leader);
    let after = fence(&ce, "after");
    assert!(
        after > before,
        "fence {after} after the leader change, {before} before"
    );
    // And once the old leader is back, on a member that missed the grant.
    ce.cluster.restart(leader);
    let url = format!("etcd://{}", ce.cluster.member(leader).endpoint());
    let rejoined = fence_of(&ce.env, ce.withlock_at(&url), "rejoined");
    assert!(
        rejoined > after,
        "fence {rejoined} on the rejoined member, {after} before"
    );
}
