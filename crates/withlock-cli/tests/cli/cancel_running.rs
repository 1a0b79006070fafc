//! `--cancel-running`: a newer cancelling request stops a holder that was
//! itself started with `--cancel-running` (its command gets SIGTERM; it
//! exits 82 naming the newer request), then runs; older cancelling
//! requests still waiting give up (79); a holder without the flag is
//! never touched, and only who could take the lock can cancel.

use crate::support::{
    ALICE, BOB, Env, ensure_user, private_dir, send_notice_as, stderr_of, wait_blocked, wait_child,
    wait_for,
};

/// The documented status of a cancelled holder.
const CANCELLED: i32 = 82;
/// The documented status of a superseded request.
const SUPERSEDED: i32 = 79;

#[test]
fn a_newer_request_cancels_a_running_holder_and_runs() {
    let env = Env::new();
    let mut holder = env.hold(env.withlock().args(["--cancel-running", "d"]), "h");
    let marker = env.file("M");
    let mut newer = env
        .withlock()
        .args(["--cancel-running", "d", "--", "touch"])
        .arg(&marker)
        .spawn();
    let newer_pid = newer.id();
    let status = wait_child(&mut holder.child);
    let err = stderr_of(&mut holder.child);
    assert_eq!(status.code(), Some(CANCELLED), "{err}");
    assert!(
        err.contains(&format!(
            "withlock: cancelled by a newer --cancel-running request for d: pid {newer_pid}, \
             user root, host "
        )),
        "{err}"
    );
    assert!(err.contains("--cancel-running d -- touch"), "{err}");
    let status = wait_child(&mut newer);
    assert!(status.success(), "{status}: {}", stderr_of(&mut newer));
    assert!(marker.exists(), "the newest request ran");
}

#[test]
fn a_holder_without_the_flag_is_untouched_and_older_flagged_waiters_give_up() {
    let env = Env::new();
    let file = env.lock_file("d");
    let mut holder = env.hold(env.withlock().arg("d"), "h");
    let (m1, m2) = (env.file("M1"), env.file("M2"));
    let mut older = env
        .withlock()
        .args(["--cancel-running", "d", "--", "touch"])
        .arg(&m1)
        .spawn();
    wait_blocked(&file, older.id() as i32);
    let mut newer = env
        .withlock()
        .args(["--cancel-running", "d", "--", "touch"])
        .arg(&m2)
        .spawn();
    let newer_pid = newer.id();
    let status = wait_child(&mut older);
    let err = stderr_of(&mut older);
    assert_eq!(status.code(), Some(SUPERSEDED), "{err}");
    assert!(
        err.contains(&format!("superseded by pid {newer_pid} (")),
        "{err}"
    );
    wait_blocked(&file, newer_pid as i32);
    assert!(
        holder.child.try_wait().unwrap().is_none(),
        "a holder without --cancel-running was stopped"
    );
    assert!(holder.release().success(), "the holder ran to its end");
    assert!(wait_child(&mut newer).success());
    assert!(m2.exists() && !m1.exists());
}

/// Needs root. Alice's holder opted in; Bob, who can open the lock file
/// in the shared lock directory and so could take the lock, cancels it:
/// her own withlock stops her command and names him.
#[test]
fn another_user_who_could_take_the_lock_cancels_an_opted_in_holder() {
    ensure_user(ALICE);
    ensure_user(BOB);
    let env = Env::new();
    let mut holder = env.hold(
        env.withlock()
            .as_user(ALICE)
            .args(["--cancel-running", "d"]),
        "h",
    );
    let marker = env.file("M");
    let mut newer = env
        .withlock()
        .as_user(BOB)
        .args(["--cancel-running", "d", "--", "touch"])
        .arg(&marker)
        .spawn();
    let status = wait_child(&mut holder.child);
    let err = stderr_of(&mut holder.child);
    assert_eq!(status.code(), Some(CANCELLED), "{err}");
    assert!(err.contains(&format!("user {BOB}, host ")), "{err}");
    let status = wait_child(&mut newer);
    assert!(status.success(), "{status}: {}", stderr_of(&mut newer));
    assert!(marker.exists());
}

/// A lock directory only root can enter.
/// The abstract name root's holder listens on for cancels, once it does.
fn cancel_socket(holder_pid: u32) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap();
    let suffix = format!("/{holder_pid}");
    table
        .lines()
        .filter_map(|line| line.split_whitespace().nth(7))
        .filter_map(|path| path.strip_prefix('@'))
        .find(|name| name.starts_with(withlock::cancel::NAME_PREFIX) && name.ends_with(&suffix))
        .map(str::to_owned)
}

/// Needs root. Bob cannot open root's lock file: he connects to the
/// holder's cancel socket himself and asks; the holder checks him in
/// /proc/locks, finds no record lock of his on the file, and runs on. A
/// genuine request then cancels it.
#[test]
fn a_user_who_could_not_take_the_lock_cancels_nothing() {
    ensure_user(BOB);
    let env = Env::new();
    let private = private_dir(&env);
    let in_private = |args: &[&str]| env.withlock().arg("--dir").arg(&private).args(args);
    let mut holder = env.hold(in_private(&["--cancel-running", "d"]), "h");
    let holder_pid = holder.child.id();
    let mut name = None;
    wait_for("the holder to listen for cancels", || {
        name = cancel_socket(holder_pid);
        name.is_some()
    });
    // Sends the notice, then waits until the holder has judged it and
    // closed the connection.
    send_notice_as(BOB, &name.unwrap(), b'c');
    assert!(
        holder.child.try_wait().unwrap().is_none(),
        "a stranger's notice cancelled the holder"
    );
    let mut newer = in_private(&["--cancel-running", "d", "--", "true"]).spawn();
    assert_eq!(wait_child(&mut holder.child).code(), Some(CANCELLED));
    assert!(wait_child(&mut newer).success());
}

#[test]
fn cancel_running_refuses_locks_it_cannot_cancel() {
    let env = Env::new();
    let marker = env.file("M");
    for args in [
        &["--cancel-running", "-s", "d"][..],
        &["--cancel-running", "--max", "2", "d"],
        &["--cancel-running", "d=shared"],
        &["--cancel-running", "abstract:withlock-test-cancel"],
    ] {
        let out = env
            .withlock()
            .args(args)
            .args(["--", "touch"])
            .arg(&marker)
            .output();
        assert_eq!(out.status.code(), Some(64), "{args:?}");
        let err = crate::support::stderr(&out);
        let first = err.lines().next().unwrap_or_default();
        assert!(first.contains("--cancel-running"), "{args:?}: {err}");
    }
    assert!(!marker.exists(), "nothing ran");
}
