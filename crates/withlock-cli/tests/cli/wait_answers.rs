//! One request, one answer, whatever the kind of lock: against a held
//! lock, `-n` and `-w 0` say it is busy, a `-w` that runs out says it gave
//! up, both with status 75, and a request without a limit waits and runs
//! once the lock is free. (PostgreSQL locks: the library's `tests/pg/wait.rs`.)
//!
//! A waiter is known to be waiting when it sleeps in the kernel on the lock
//! file, or in poll() on its connection to a socket lock's holder.

use crate::socket_locks::{Kind, spec, wait_polling};
use crate::support::{Env, stderr, wait_blocked, wait_child};

/// The four answers for the lock `spec`; `waiting` returns once the
/// process with the given pid waits for it.
fn answers_the_same(env: &Env, spec: &str, waiting: impl Fn(i32)) {
    let holder = env.hold(env.withlock().arg(spec), "h");
    let busy = format!("withlock: {spec} is busy: ");
    let gave_up = format!("withlock: gave up on {spec} after ");
    for (limit, says) in [
        (&["-n"][..], &busy),
        (&["-w", "0"], &busy),
        (&["-w", "0.1"], &gave_up),
    ] {
        let out = env
            .withlock()
            .args(limit)
            .args([spec, "--", "true"])
            .assert()
            .code(75)
            .get_output()
            .clone();
        let err = stderr(&out);
        assert!(err.starts_with(says.as_str()), "{limit:?}: {err}");
    }
    let marker = env.file("marker");
    let mut waiter = env
        .withlock()
        .args([spec, "--", "touch"])
        .arg(&marker)
        .spawn();
    waiting(waiter.id() as i32);
    assert!(!marker.exists(), "the waiter ran while the lock was held");
    assert!(holder.release().success());
    assert!(wait_child(&mut waiter).success());
    assert!(marker.exists());
}

#[test]
fn a_file_lock() {
    let env = Env::new();
    let file = env.lock_file("t");
    answers_the_same(&env, "t", |pid| wait_blocked(&file, pid));
}

#[test]
fn a_tcp_socket_lock() {
    let env = Env::new();
    answers_the_same(&env, &spec(&env, Kind::Tcp), wait_polling);
}

#[test]
fn a_unix_socket_lock() {
    let env = Env::new();
    answers_the_same(&env, &spec(&env, Kind::Unix), wait_polling);
}

#[test]
fn an_abstract_socket_lock() {
    let env = Env::new();
    answers_the_same(&env, &spec(&env, Kind::Abstract), wait_polling);
}
