//! `withlock hold` and `--cancel-running` with an etcd lock (`--url
//! etcd://...`): the same as for local and PostgreSQL locks.

use std::process::{Command, Stdio};

use crate::etcd::EtcdEnv;
use crate::support::{spawn, stderr, stderr_of, wait_child, wait_for};

/// The documented statuses of a cancelled holder and a superseded request.
const CANCELLED: i32 = 82;
const SUPERSEDED: i32 = 79;

#[test]
fn a_hold_of_an_etcd_lock_lasts_until_release_or_its_pid_exits() {
    let etcd = EtcdEnv::new();
    let mut follow = spawn(Command::new("sleep").arg("600").stdin(Stdio::null()));
    let pid = follow.id().to_string();
    let hold = || {
        let out = etcd
            .withlock()
            .args(["hold", "deploy", "--until-exit", &pid])
            .output();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    };
    hold();
    etcd.wait_keys("deploy", 1);
    let busy = etcd
        .withlock()
        .args(["-n", "deploy", "--", "true"])
        .output();
    assert_eq!(busy.status.code(), Some(75), "{}", stderr(&busy));
    etcd.withlock().args(["release", "deploy"]).assert().code(0);
    etcd.wait_keys("deploy", 0);

    hold();
    etcd.wait_keys("deploy", 1);
    follow.kill().unwrap();
    follow.wait().unwrap();
    // The holder, woken by its pidfd, revokes its lease: the key goes.
    etcd.wait_keys("deploy", 0);
    wait_for("the lock to be free", || {
        etcd.withlock()
            .args(["-n", "deploy", "--", "true"])
            .output()
            .status
            .success()
    });
}

#[test]
fn a_newer_request_cancels_a_running_holder_of_an_etcd_lock_and_runs() {
    let etcd = EtcdEnv::new();
    let mut holder = etcd
        .env
        .hold(etcd.withlock().args(["--cancel-running", "deploy"]), "h");
    let marker = etcd.env.file("M");
    let mut newer = etcd
        .withlock()
        .args(["--cancel-running", "deploy", "--", "touch"])
        .arg(&marker)
        .spawn();
    let status = wait_child(&mut holder.child);
    let err = stderr_of(&mut holder.child);
    assert_eq!(status.code(), Some(CANCELLED), "{err}");
    assert!(
        err.contains(&format!(
            "withlock: cancelled by a newer --cancel-running request for deploy: pid {}, user ",
            newer.id()
        )),
        "{err}"
    );
    let status = wait_child(&mut newer);
    assert!(status.success(), "{status}: {}", stderr_of(&mut newer));
    assert!(marker.exists(), "the newest request ran");
}

#[test]
fn a_plain_etcd_holder_is_untouched_and_older_flagged_waiters_give_up() {
    let etcd = EtcdEnv::new();
    let mut holder = etcd.env.hold(etcd.withlock().arg("deploy"), "h");
    let (m1, m2) = (etcd.env.file("M1"), etcd.env.file("M2"));
    let mut older = etcd
        .withlock()
        .args(["--cancel-running", "deploy", "--", "touch"])
        .arg(&m1)
        .spawn();
    etcd.wait_keys("deploy", 2);
    let mut newer = etcd
        .withlock()
        .args(["--cancel-running", "deploy", "--", "touch"])
        .arg(&m2)
        .spawn();
    etcd.wait_keys("deploy", 3);
    // The cancelling requests' keys beside the line are no lock.
    let listed = etcd.withlock().args(["--list", "--json"]).output();
    let doc: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let names: Vec<&str> = doc
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|lock| lock["name"].as_str())
        .collect();
    assert_eq!(names, ["deploy"], "{doc}");
    assert!(
        holder.child.try_wait().unwrap().is_none(),
        "a holder without --cancel-running was stopped"
    );
    assert!(holder.release().success(), "the holder ran to its end");
    let status = wait_child(&mut older);
    let err = stderr_of(&mut older);
    assert_eq!(status.code(), Some(SUPERSEDED), "{err}");
    assert!(
        err.contains(&format!("superseded by pid {} (", newer.id())),
        "{err}"
    );
    assert!(wait_child(&mut newer).success());
    assert!(m2.exists() && !m1.exists());
}
