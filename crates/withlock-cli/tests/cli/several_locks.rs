//! Several locks in one call: all held while the command runs, taken all or
//! none, each with its own mode if it says so, and in one global order, so
//! that calls naming the same locks in opposite orders never deadlock.

use std::path::Path;
use std::process::Command;

use nix::sys::signal::Signal;

use crate::support::{
    Env, blocked_on, holding, output, signal, storm, wait_blocked, wait_child, wait_for,
};

/// flock(1) -n on `path` with `mode` (-x or -s): 0 if it got in, 1 if not.
fn flock_n(path: &Path, mode: &str) -> Option<i32> {
    output(
        Command::new("flock")
            .args([mode, "-n"])
            .arg(path)
            .arg("true"),
    )
    .status
    .code()
}

#[test]
fn every_lock_is_held_while_the_command_runs() {
    let env = Env::new();
    let holder = env.hold(env.withlock().args(["a", "b"]), "h");
    for name in ["a", "b"] {
        assert_eq!(
            flock_n(&env.lock_file(name), "-s"),
            Some(1),
            "{name} is free"
        );
    }
    // The command holds them too (it inherited both descriptors).
    let command = holder.command_pid();
    for name in ["a", "b"] {
        let holders = holding(&env.lock_file(name));
        assert!(holders.contains(&holder.pid()) || holders.contains(&command));
    }
    assert!(holder.release().success());
    for name in ["a", "b"] {
        assert_eq!(flock_n(&env.lock_file(name), "-x"), Some(0), "{name} kept");
    }
}

#[test]
fn a_busy_lock_means_none_is_taken_and_nothing_runs() {
    let env = Env::new();
    let marker = env.file("ran");
    let holder = env.hold(env.withlock().arg("b"), "h");
    for options in [&["-n"][..], &["-w", "0.2"][..]] {
        env.withlock()
            .args(options)
            .args(["a", "b", "--", "touch"])
            .arg(&marker)
            .assert()
            .code(75)
            .stderr(predicates::str::contains("b"));
        assert!(!marker.exists(), "the command ran with {options:?}");
        assert_eq!(flock_n(&env.lock_file("a"), "-x"), Some(0), "a stayed held");
    }

    // A waiter holds a while it waits for b (the order is a, then b); when
    // it is stopped, a is free again.
    let mut waiter = env
        .withlock()
        .args(["b", "a", "--", "touch"])
        .arg(&marker)
        .spawn();
    let pid = waiter.id() as i32;
    wait_blocked(&env.lock_file("b"), pid);
    assert_eq!(holding(&env.lock_file("a")), [pid]);
    signal(pid, Signal::SIGTERM);
    assert_eq!(wait_child(&mut waiter).code(), Some(143));
    assert!(!marker.exists());
    assert_eq!(flock_n(&env.lock_file("a"), "-x"), Some(0));
    assert!(holder.release().success());
}

#[test]
fn each_lock_can_have_its_own_mode() {
    let env = Env::new();
    let holder = env.hold(env.withlock().args(["build", "artifacts=shared"]), "h");
    env.withlock()
        .args(["-n", "artifacts=shared", "--", "true"])
        .assert()
        .code(0);
    env.withlock()
        .args(["-n", "-s", "artifacts", "--", "true"])
        .assert()
        .code(0);
    for excluded in ["build", "artifacts", "build=shared", "artifacts=exclusive"] {
        env.withlock()
            .args(["-n", excluded, "--", "true"])
            .assert()
            .code(75);
    }
    assert_eq!(flock_n(&env.lock_file("artifacts"), "-s"), Some(0));
    assert_eq!(flock_n(&env.lock_file("build"), "-s"), Some(1));
    assert!(holder.release().success());

    // -s makes every lock shared, except one with a mode of its own.
    let holder = env.hold(env.withlock().args(["-s", "x", "y=exclusive"]), "s");
    env.withlock()
        .args(["-n", "-s", "x", "--", "true"])
        .assert()
        .code(0);
    env.withlock()
        .args(["-n", "-s", "y", "--", "true"])
        .assert()
        .code(75);
    assert!(holder.release().success());
}

#[test]
fn file_and_socket_locks_go_together() {
    let env = Env::new();
    let socket = format!("abstract:withlock-test-several-{}", std::process::id());
    let holder = env.hold(env.withlock().args([socket.as_str(), "f"]), "h");
    env.withlock()
        .args(["-n", &socket, "--", "true"])
        .assert()
        .code(75);
    env.withlock()
        .args(["-n", "f", "--", "true"])
        .assert()
        .code(75);
    assert!(holder.release().success());
    env.withlock()
        .args(["-n", "f", &socket, "--", "true"])
        .assert()
        .code(0);
}

#[test]
fn a_lock_named_twice_is_taken_once() {
    let env = Env::new();
    let path = env.lock_file("t");
    env.withlock()
        .args(["-n", "t", "t=shared"])
        .arg(&path)
        .args(["--", "true"])
        .assert()
        .code(0);
}

/// Clients loop taking the same two locks, named in opposite orders and
/// spelt differently (name, path, own mode): they all finish, and the
/// counter they increment under both locks loses no update.
#[test]
fn opposite_orders_never_deadlock_under_a_storm() {
    let env = Env::new();
    let a_path = env.lock_file("a").display().to_string();
    let orders = [
        "a b".to_owned(),
        "b a".to_owned(),
        "b=exclusive a".to_owned(),
        format!("{a_path} b"),
        "b a".to_owned(),
        "a=exclusive b".to_owned(),
    ];
    let rounds = 40;
    let lockers: Vec<String> = orders
        .iter()
        .map(|locks| format!("{} {locks} --", env.bin().display()))
        .collect();
    let count = storm(&env, &lockers, rounds);
    assert_eq!(count, u64::from(rounds) * orders.len() as u64);
}

/// Two waiters name the locks in opposite orders while a third party
/// holds both: each blocks on the first lock of the global order, so when
/// the holder lets go both run, one after the other.
#[test]
fn opposite_orders_queue_on_the_same_first_lock() {
    let env = Env::new();
    let holder = env.hold(env.withlock().args(["p", "q"]), "h");
    let markers = [env.file("pq"), env.file("qp")];
    let mut waiters: Vec<_> = [["p", "q"], ["q", "p"]]
        .iter()
        .zip(&markers)
        .map(|(locks, marker)| {
            env.withlock()
                .args(locks)
                .args(["--", "touch"])
                .arg(marker)
                .spawn()
        })
        .collect();
    for waiter in &waiters {
        wait_blocked(&env.lock_file("p"), waiter.id() as i32);
    }
    assert!(blocked_on(&env.lock_file("q")).is_empty());
    assert!(holder.release().success());
    for waiter in &mut waiters {
        assert!(wait_child(waiter).success());
    }
    wait_for("both commands to have run", || {
        markers.iter().all(|m| m.exists())
    });
}

#[test]
fn bad_lock_lists_are_usage_errors_and_nothing_runs() {
    let env = Env::new();
    let marker = env.file("ran");
    for args in [
        &["a=readonly", "--"][..],
        &["a", "b", "touch"][..],
        &["a", "tcp:4711=shared", "--"][..],
        &["-s", "a", "tcp:4711", "--"][..],
        &["a", "bad name", "--"][..],
    ] {
        let mut run = env.withlock().args(args);
        if args.last() == Some(&"--") {
            run = run.arg("touch");
        }
        run.arg(&marker).assert().code(64);
        assert!(!marker.exists(), "{args:?} ran the command");
    }
    let out = env.withlock().args(["a=readonly", "--", "true"]).output();
    assert!(
        crate::support::stderr(&out).contains("shared or exclusive"),
        "{out:?}"
    );
}
