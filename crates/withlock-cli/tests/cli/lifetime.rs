//! The lock lasts exactly as long as the command runs: not less when
//! withlock is killed, not more when the command leaves a daemon behind.

use std::process::Command;

use nix::sys::signal::Signal;

use crate::support::{Env, holding, output, signal, wait_for};

#[test]
fn a_sigkilled_withlock_lets_nobody_in_while_its_command_runs() {
    let env = Env::new();
    let file = env.lock_file("k");
    let mut holder = env.hold(env.withlock().arg("k"), "h");
    let withlock_pid = holder.pid();
    signal(withlock_pid, Signal::SIGKILL);
    holder.child.wait().unwrap();
    let command = holder.command_pid();
    assert!(
        std::path::Path::new(&format!("/proc/{command}")).exists(),
        "the command still runs"
    );

    let out = env
        .withlock()
        .args(["-n", "k", "--", "true"])
        .assert()
        .code(75)
        .get_output()
        .clone();
    let err = crate::support::stderr(&out);
    assert!(
        err.contains(&format!(
            "pid {withlock_pid} (exited; a process it started still holds the lock)"
        )),
        "{err}"
    );
    let flock = output(Command::new("flock").arg("-n").arg(&file).arg("true"));
    assert_eq!(
        flock.status.code(),
        Some(1),
        "flock(1) got in beside the orphaned command"
    );

    holder.release();
    wait_for("the orphaned command to end and drop the lock", || {
        holding(&file).is_empty()
    });
    env.withlock()
        .args(["-n", "k", "--", "true"])
        .assert()
        .code(0);
}

#[test]
fn a_daemon_left_behind_does_not_keep_the_lock() {
    let env = Env::new();
    let pid_file = env.file("daemon.pid");
    let script = r#"sleep 1000 </dev/null >/dev/null 2>&1 & echo $! > "$0""#;
    env.withlock()
        .args(["d", "--", "sh", "-c", script])
        .arg(&pid_file)
        .assert()
        .code(0);
    let daemon: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let fd_dir = format!("/proc/{daemon}/fd");
    let inherited = std::fs::read_dir(&fd_dir)
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
        .any(|target| target == env.lock_file("d"));
    assert!(inherited, "the daemon should still have the lock file open");
    env.withlock()
        .args(["-n", "d", "--", "true"])
        .assert()
        .code(0);
    signal(daemon, Signal::SIGKILL);
}

#[test]
fn the_lock_is_free_again_when_the_command_ends() {
    let env = Env::new();
    let holder = env.hold(env.withlock().arg("e"), "h");
    assert!(!holding(&env.lock_file("e")).is_empty());
    assert!(holder.release().success());
    assert!(holding(&env.lock_file("e")).is_empty());
    env.withlock()
        .args(["-n", "e", "--", "true"])
        .assert()
        .code(0);
}
