//! `withlock hold` with an etcd lock (`--url etcd://...`): the same hold
//! and release as for local and PostgreSQL locks. `--cancel-running` is
//! not built for etcd locks yet and is refused with 64.

use std::process::{Command, Stdio};

use crate::etcd::EtcdEnv;
use crate::support::{spawn, stderr, wait_for};

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
fn cancel_running_is_refused_for_an_etcd_lock_and_nothing_runs() {
    let etcd = EtcdEnv::new();
    let ran = etcd.env.file("ran");
    let out = etcd
        .withlock()
        .args(["--cancel-running", "deploy", "--", "touch"])
        .arg(&ran)
        .output();
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--cancel-running"),
        "{}",
        stderr(&out)
    );
    assert!(!ran.exists());
}
