//! Mutual exclusion: never two exclusive holders, never an exclusive and a
//! shared one, between withlock clients and flock(1) clients alike; and the
//! wait happens in the kernel.

use std::process::Command;

use crate::support::{Env, assert_sleeps_without_polling, output, storm, wait_blocked, wait_child};

#[test]
fn a_storm_of_withlock_and_flock_clients_loses_no_update() {
    let env = Env::new();
    let (clients, rounds) = (8, 25);
    let lockers: Vec<String> = (0..clients)
        .map(|i| match i % 2 {
            0 => format!("{} storm --", env.bin().display()),
            _ => format!("flock {}", env.lock_file("storm").display()),
        })
        .collect();
    assert_eq!(storm(&env, &lockers, rounds), u64::from(clients * rounds));
}

#[test]
fn shared_holders_share_and_exclude_exclusive_ones() {
    let env = Env::new();
    let file = env.lock_file("s");
    let holder = env.hold(env.withlock().args(["-s", "s"]), "h");
    env.withlock()
        .args(["-s", "-n", "s", "--", "true"])
        .assert()
        .code(0);
    env.withlock()
        .args(["-n", "s", "--", "true"])
        .assert()
        .code(75);
    let flock = |mode: &str| {
        output(
            Command::new("flock")
                .args([mode, "-n"])
                .arg(&file)
                .arg("true"),
        )
    };
    assert_eq!(flock("-s").status.code(), Some(0));
    assert_eq!(flock("-x").status.code(), Some(1));
    assert!(holder.release().success());
    env.withlock()
        .args(["-n", "s", "--", "true"])
        .assert()
        .code(0);
}

#[test]
fn an_exclusive_holder_excludes_shared_ones() {
    let env = Env::new();
    let holder = env.hold(env.withlock().arg("x"), "h");
    env.withlock()
        .args(["-s", "-n", "x", "--", "true"])
        .assert()
        .code(75);
    assert!(holder.release().success());
}

#[test]
fn withlock_and_flock_exclude_each_other_both_ways() {
    let env = Env::new();
    let file = env.lock_file("both");
    let holder = env.hold(env.withlock().arg("both"), "w");
    let flock = output(Command::new("flock").arg("-n").arg(&file).arg("true"));
    assert_eq!(
        flock.status.code(),
        Some(1),
        "flock(1) got in beside withlock"
    );
    assert!(holder.release().success());

    let flock_holder = env.hold_flock(&file, "flock");
    env.withlock()
        .args(["-n", "both", "--", "true"])
        .assert()
        .code(75)
        .stderr(predicates::str::contains("flock"));
    assert!(flock_holder.release().success());
}

/// The waiter sleeps in flock(2) until the holder lets go: its main thread
/// makes no voluntary context switch while it waits, as a poller would.
#[test]
fn a_waiter_blocks_in_the_kernel_without_polling() {
    let env = Env::new();
    let file = env.lock_file("k");
    let holder = env.hold(env.withlock().arg("k"), "h");
    for wait in [None, Some("60")] {
        let marker = env.file(&format!("ran-{wait:?}"));
        let mut run = env.withlock().arg("-q");
        if let Some(seconds) = wait {
            run = run.args(["-w", seconds]);
        }
        let mut waiter = run.args(["k", "--", "touch"]).arg(&marker).spawn();
        let pid = waiter.id() as i32;
        wait_blocked(&file, pid);
        assert_sleeps_without_polling(pid, "the waiter");
        assert!(!marker.exists());
        waiter.kill().unwrap();
        waiter.wait().unwrap();
    }
    assert!(holder.release().success());
}

#[test]
fn the_next_waiter_runs_once_the_holder_ends() {
    let env = Env::new();
    let file = env.lock_file("n");
    let marker = env.file("ran");
    let holder = env.hold(env.withlock().arg("n"), "h");
    let mut waiter = env
        .withlock()
        .args(["n", "--", "touch"])
        .arg(&marker)
        .spawn();
    wait_blocked(&file, waiter.id() as i32);
    assert!(!marker.exists());
    assert!(holder.release().success());
    assert!(wait_child(&mut waiter).success());
    assert!(marker.exists());
}

#[test]
fn a_timed_wait_gives_up_no_sooner_than_asked() {
    let env = Env::new();
    let holder = env.hold(env.withlock().arg("w"), "h");
    let start = std::time::Instant::now();
    env.withlock()
        .args(["-w", "0.3", "w", "--", "true"])
        .assert()
        .code(75)
        // The figure is the time really waited: 0.3s, or more on a loaded machine.
        .stderr(predicates::str::is_match(r"gave up on w after (0\.[3-9]|[1-9]\d*\.\d)s").unwrap());
    assert!(start.elapsed() >= std::time::Duration::from_millis(300));
    assert!(holder.release().success());
}
