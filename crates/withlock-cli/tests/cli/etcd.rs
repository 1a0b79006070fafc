//! The etcd backend through the real binary (`--url etcd://...`), against
//! a private one-member server each test starts
//! (`withlock_etcd_testing::Etcd`): the same flags and exit statuses as
//! the PostgreSQL backend, holders named uncut, interop with `etcdctl
//! lock` both ways, and a lost lease stopping the command. Every step
//! waits for a real event: a key under the lock's prefix, a file, a
//! process exiting.

use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::Value;
use withlock_etcd_testing::Etcd;

use crate::postgres_loss::exit_within;
use crate::support::{Env, Run, spawn, stderr, stderr_of, storm, wait_child, wait_for};

/// A test's directory and binary, and its own one-member etcd.
pub(crate) struct EtcdEnv {
    pub env: Env,
    pub etcd: Etcd,
}

impl EtcdEnv {
    pub(crate) fn new() -> EtcdEnv {
        EtcdEnv {
            env: Env::new(),
            etcd: Etcd::start(),
        }
    }

    /// `withlock` with `WITHLOCK_URL` pointing at the test's server.
    pub(crate) fn withlock(&self) -> Run {
        let mut run = self.env.withlock();
        run.env("WITHLOCK_URL", self.etcd.url());
        run
    }

    /// The keys in line for the lock `name` (holders and waiters).
    pub(crate) fn keys(&self, name: &str) -> Vec<String> {
        let out = self
            .etcd
            .etcdctl()
            .args(["get", "--prefix", "--keys-only", &format!("{name}/")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Waits until `count` keys are in line for `name`.
    pub(crate) fn wait_keys(&self, name: &str, count: usize) {
        wait_for(&format!("{count} key(s) in line for {name}"), || {
            self.keys(name).len() == count
        });
    }

    /// `etcdctl lock NAME -- COMMAND...`, started.
    fn etcdctl_lock(&self, name: &str, command: &[&str]) -> Child {
        let mut etcdctl = self.etcd.etcdctl();
        etcdctl
            .args(["lock", name, "--"])
            .args(command)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        spawn(&mut etcdctl)
    }
}

#[test]
fn a_held_lock_makes_no_wait_fail_with_75_naming_the_whole_command() {
    let e = EtcdEnv::new();
    let holder = e.env.hold(e.withlock().arg("deploy"), "h");
    let out = e.withlock().args(["-n", "deploy", "--", "true"]).output();
    assert_eq!(out.status.code(), Some(75));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&format!("pid {}", holder.pid())), "{err}");
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(err.contains(&format!("on {}", host.trim())), "{err}");
    // The holder's command ends with its FIFO's path, well past 63 bytes.
    let fifo = e.env.file("h.go");
    assert!(err.contains(&*fifo.to_string_lossy()), "uncut: {err}");
    assert!(holder.release().success());
    e.withlock()
        .args(["-n", "deploy", "--", "true"])
        .assert()
        .code(0);
    assert!(e.keys("deploy").is_empty(), "a release leaves no key");
}

#[test]
fn a_waiter_runs_once_the_holder_ends_and_a_wait_limit_leaves_no_key() {
    let e = EtcdEnv::new();
    let holder = e.env.hold(e.withlock().arg("deploy"), "h");
    let ran = e.env.file("waiter-ran");
    let mut waiter = e
        .withlock()
        .args(["-q", "deploy", "--", "touch"])
        .arg(&ran)
        .spawn();
    e.wait_keys("deploy", 2);
    // Once its watch is open it sleeps until the cluster speaks (or the
    // watch is opened again, every 5 s): some 300 ms without a wake come
    // soon, which a poller never has.
    let pid = waiter.id() as i32;
    let mut quiet = false;
    for _ in 0..20 {
        let before = crate::support::voluntary_switches(pid);
        std::thread::sleep(Duration::from_millis(300));
        if crate::support::voluntary_switches(pid) == before {
            quiet = true;
            break;
        }
    }
    assert!(
        quiet,
        "the etcd waiter never slept 300 ms at a stretch: it polls"
    );
    let out = e
        .withlock()
        .args(["-w", "0.3", "deploy", "--", "touch"])
        .arg(&ran)
        .output();
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stderr(&out).contains("gave up"), "{}", stderr(&out));
    assert_eq!(
        e.keys("deploy").len(),
        2,
        "the timed-out waiter left its key"
    );
    assert!(!ran.exists(), "the waiter ran while the lock was held");
    assert!(holder.release().success());
    assert!(wait_child(&mut waiter).success());
    assert!(ran.exists());
}

#[test]
fn an_interrupted_waiter_takes_its_key_out_of_line() {
    let e = EtcdEnv::new();
    let _holder = e.env.hold(e.withlock().arg("deploy"), "h");
    let mut waiter = e.withlock().args(["-q", "deploy", "--", "true"]).spawn();
    e.wait_keys("deploy", 2);
    crate::support::signal(waiter.id() as i32, nix::sys::signal::Signal::SIGINT);
    assert_eq!(wait_child(&mut waiter).code(), Some(130));
    assert_eq!(
        e.keys("deploy").len(),
        1,
        "the interrupted waiter left its key"
    );
}

#[test]
fn withlock_and_etcdctl_lock_exclude_each_other_both_ways() {
    let e = EtcdEnv::new();
    // etcdctl holds: withlock -n is refused, a waiter runs after it.
    let go = e.env.fifo("etcdctl.go");
    let mut etcdctl = e.etcdctl_lock(
        "deploy",
        &["sh", "-c", "read _ < \"$0\"", &go.to_string_lossy()],
    );
    e.wait_keys("deploy", 1);
    let out = e.withlock().args(["-n", "deploy", "--", "true"]).output();
    assert_eq!(out.status.code(), Some(75));
    assert!(stderr(&out).contains("etcdctl lock?"), "{}", stderr(&out));
    let ran = e.env.file("after-etcdctl");
    let mut waiter = e
        .withlock()
        .args(["-q", "deploy", "--", "touch"])
        .arg(&ran)
        .spawn();
    e.wait_keys("deploy", 2);
    assert!(!ran.exists());
    std::fs::write(&go, "\n").unwrap();
    assert!(wait_child(&mut etcdctl).success());
    assert!(wait_child(&mut waiter).success());
    assert!(ran.exists());

    // withlock holds: etcdctl lock waits behind it.
    let holder = e.env.hold(e.withlock().arg("deploy"), "h");
    let etcdctl_ran = e.env.file("etcdctl-ran");
    let mut etcdctl = e.etcdctl_lock("deploy", &["touch", &etcdctl_ran.to_string_lossy()]);
    e.wait_keys("deploy", 2);
    assert!(
        !etcdctl_ran.exists(),
        "etcdctl ran while withlock held the lock"
    );
    assert!(holder.release().success());
    assert!(wait_child(&mut etcdctl).success());
    assert!(etcdctl_ran.exists());
}

#[test]
fn readers_share_a_waiting_writer_is_not_passed_and_max_counts() {
    let e = EtcdEnv::new();
    let reader = e.env.hold(e.withlock().args(["-s", "data"]), "r");
    e.withlock()
        .args(["-s", "-n", "data", "--", "true"])
        .assert()
        .code(0);
    e.withlock()
        .args(["-n", "data", "--", "true"])
        .assert()
        .code(75);
    let mut writer = e.withlock().args(["-q", "data", "--", "true"]).spawn();
    e.wait_keys("data", 2);
    // A later reader queues behind the waiting writer.
    e.withlock()
        .args(["-n", "data=shared", "--", "true"])
        .assert()
        .code(75);
    assert!(reader.release().success());
    assert!(wait_child(&mut writer).success());

    let one = e.env.hold(e.withlock().args(["--max", "2", "pool"]), "m1");
    let two = e.env.hold(e.withlock().args(["--max", "2", "pool"]), "m2");
    let out = e
        .withlock()
        .args(["--max", "2", "-n", "pool", "--", "true"])
        .output();
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(one.release().success());
    e.withlock()
        .args(["--max", "2", "-n", "pool", "--", "true"])
        .assert()
        .code(0);
    assert!(two.release().success());
}

#[test]
fn a_storm_of_clients_loses_no_update() {
    let e = EtcdEnv::new();
    let locker = format!("{} --url {} storm --", e.env.bin().display(), e.etcd.url());
    assert_eq!(storm(&e.env, &vec![locker; 6], 10), 60);
}

#[test]
fn the_fencing_token_grows_and_several_locks_are_taken_all_or_none() {
    let e = EtcdEnv::new();
    let token = |args: &[&str]| -> String {
        let out = e
            .withlock()
            .args(args)
            .args([
                "--",
                "sh",
                "-c",
                "echo \"$WITHLOCK_FENCE|$WITHLOCK_FENCES\"",
            ])
            .output();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let first: i64 = token(&["deploy"]).trim_end_matches('|').parse().unwrap();
    let second: i64 = token(&["deploy"]).trim_end_matches('|').parse().unwrap();
    assert!(second > first, "{first} then {second}");
    let both = token(&["deploy", "db=shared"]);
    assert!(both.starts_with('|'), "{both}");
    assert!(both.contains("deploy=") && both.contains("db="), "{both}");

    // All or none: with db held elsewhere, deploy is not kept either.
    let holder = e.env.hold(e.withlock().arg("db"), "h");
    let out = e
        .withlock()
        .args(["-n", "deploy", "db", "--", "true"])
        .output();
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(
        e.keys("deploy").is_empty(),
        "deploy kept while db was refused"
    );
    assert!(holder.release().success());
}

#[test]
fn list_and_json_name_holders_and_waiters_in_arrival_order() {
    let e = EtcdEnv::new();
    e.withlock().args(["idle", "--", "true"]).assert().code(0);
    let holder = e.env.hold(e.withlock().arg("deploy"), "h");
    let mut first = e.withlock().args(["-q", "deploy", "--", "true"]).spawn();
    e.wait_keys("deploy", 2);
    let mut second = e
        .withlock()
        .args(["-q", "-s", "deploy", "--", "true"])
        .spawn();
    e.wait_keys("deploy", 3);
    let out = e.withlock().args(["--list", "--json"]).output();
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = doc
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["deploy"], "a lock nobody holds has no keys");
    let deploy = &doc[0];
    assert_eq!(deploy["state"], "held");
    assert_eq!(deploy["server"], e.etcd.url().as_str());
    let held = &deploy["holders"][0];
    assert_eq!(held["pid"], holder.pid());
    let fifo = e.env.file("h.go");
    assert_eq!(
        held["command"].as_array().unwrap().last().unwrap(),
        &*fifo.to_string_lossy()
    );
    let pids: Vec<i64> = deploy["waiters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["pid"].as_i64().unwrap())
        .collect();
    assert_eq!(
        pids,
        [first.id() as i64, second.id() as i64],
        "arrival order"
    );
    let table = String::from_utf8_lossy(
        &e.withlock()
            .args(["--list", "deploy", "idle"])
            .output()
            .stdout,
    )
    .into_owned();
    assert!(
        table.contains("deploy") && table.contains("idle"),
        "{table}"
    );
    assert!(holder.release().success());
    assert!(wait_child(&mut first).success());
    assert!(wait_child(&mut second).success());
}

#[test]
fn a_revoked_lease_stops_the_command_and_exits_80() {
    let e = EtcdEnv::new();
    let started = e.env.file("started");
    let mut run = e
        .withlock()
        .args([
            "--grace",
            "1",
            "deploy",
            "--",
            "sh",
            "-c",
            "echo $$ > \"$0\"; exec sleep 60",
        ])
        .arg(&started)
        .command();
    let mut child = spawn(run.stderr(Stdio::piped()));
    let pid = crate::postgres_loss::read_pid(&started);
    let key = e.keys("deploy").pop().unwrap();
    let lease = key.rsplit('/').next().unwrap();
    let out = e
        .etcd
        .etcdctl()
        .args(["lease", "revoke", lease])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let status = exit_within(
        &mut child,
        Duration::from_secs(30),
        "withlock after the revoke",
    );
    assert_eq!(status.code(), Some(80));
    let err = stderr_of(&mut child);
    assert!(err.contains("lost the lock deploy"), "{err}");
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err(),
        "the command still runs"
    );
}

#[test]
fn bad_urls_exit_64_an_unreachable_cluster_69_and_nothing_runs() {
    let env = Env::new();
    let ran = env.file("ran");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for (url, code, says) in [
        ("etcd://127.0.0.1:0", 64, "not a port"),
        ("etcd://", 64, "endpoint is empty"),
        ("etcd://127.0.0.1:2379?bogus=1", 64, "unknown option"),
        (
            &*format!("etcd://127.0.0.1:{port}"),
            69,
            "cannot reach etcd",
        ),
    ] {
        let out = env
            .withlock()
            .args(["--url", url, "deploy", "--", "touch"])
            .arg(&ran)
            .output();
        assert_eq!(out.status.code(), Some(code), "{url}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(err.contains(says), "{url}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!ran.exists());
    }
    let out = env
        .withlock()
        .args([
            "--url",
            "etcd://ci:s3cr3t@127.0.0.1:2379",
            "deploy",
            "--",
            "true",
        ])
        .output();
    assert_eq!(out.status.code(), Some(64));
    assert!(!stderr(&out).contains("s3cr3t"), "{}", stderr(&out));
}

#[test]
fn a_cluster_without_quorum_is_said_so_with_69_and_nothing_runs() {
    let env = Env::new();
    let mut cluster = withlock_etcd_testing::Cluster::start(3);
    cluster.kill(1);
    cluster.kill(2);
    let ran = env.file("ran");
    let out = env
        .withlock()
        .args(["--url", &cluster.url(), "-n", "deploy", "--", "touch"])
        .arg(&ran)
        .output();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(69), "{err}");
    assert!(err.contains("has no quorum"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!ran.exists());
}

/// `WITHLOCK_SLOT` in the environment of a holder's command.
fn slot_of(holder: &crate::support::Holder) -> String {
    let environ = std::fs::read(format!("/proc/{}/environ", holder.command_pid())).unwrap();
    environ
        .split(|&b| b == 0)
        .find_map(|v| v.strip_prefix(b"WITHLOCK_SLOT="))
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .expect("WITHLOCK_SLOT is set")
}

#[test]
fn max_holders_get_distinct_places_and_a_freed_one_goes_to_the_next() {
    let e = EtcdEnv::new();
    let hold = |tag| {
        e.env
            .hold(e.withlock().args(["--slots", "db1,db2", "pool"]), tag)
    };
    let one = hold("s1");
    let two = hold("s2");
    let mut places = [slot_of(&one), slot_of(&two)];
    places.sort();
    assert_eq!(places, ["db1", "db2"]);
    let freed = slot_of(&one);
    assert!(one.release().success());
    let three = hold("s3");
    assert_eq!(slot_of(&three), freed);
    let out = e.withlock().args(["--list", "--json", "pool"]).output();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut slots: Vec<i64> = doc[0]["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["slot"].as_i64().unwrap())
        .collect();
    slots.sort();
    assert_eq!(slots, [0, 1], "{doc}");
    drop((two, three));
}
