//! `--supersede`: a newer superseding request for a lock makes an older one
//! that still waits give up (status 79, nothing runs, who superseded it on
//! stderr); a holder is never interrupted, and waiters without
//! `--supersede` are not affected.

use std::process::Child;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::{
    ALICE, BOB, Env, blocked_on, ensure_user, holding, private_dir, send_notice_as, stderr_of,
    wait_blocked, wait_child, wait_for,
};

/// The documented status of a superseded request.
const SUPERSEDED: i32 = 79;

#[test]
fn a_newer_request_makes_a_waiting_one_give_up_and_run_nothing() {
    let env = Env::new();
    let file = env.lock_file("d");
    let holder = env.hold(env.withlock().arg("d"), "h");
    let (m1, m2) = (env.file("M1"), env.file("M2"));

    let mut first = env
        .withlock()
        .args(["--supersede", "d", "--", "touch"])
        .arg(&m1)
        .spawn();
    wait_blocked(&file, first.id() as i32);

    let mut second = env
        .withlock()
        .args(["--supersede", "d", "--", "touch"])
        .arg(&m2)
        .spawn();
    let second_pid = second.id();
    let status = wait_child(&mut first);
    let err = stderr_of(&mut first);
    assert_eq!(status.code(), Some(SUPERSEDED), "{err}");
    assert!(
        err.contains(&format!("withlock: superseded by pid {second_pid} (")),
        "{err}"
    );
    assert!(
        err.contains("--supersede d -- touch"),
        "names the command: {err}"
    );
    assert!(!m1.exists(), "the superseded command ran");

    wait_blocked(&file, second_pid as i32);
    assert!(holder.release().success());
    assert!(wait_child(&mut second).success());
    assert!(m2.exists());
    assert!(!m1.exists());
}

#[test]
fn a_holder_is_never_interrupted() {
    let env = Env::new();
    let file = env.lock_file("d");
    let marker = env.file("M2");
    let mut holder = env.hold(env.withlock().args(["--supersede", "d"]), "h");
    let mut newer = env
        .withlock()
        .args(["--supersede", "d", "--", "touch"])
        .arg(&marker)
        .spawn();
    wait_blocked(&file, newer.id() as i32);
    assert!(
        holder.child.try_wait().unwrap().is_none(),
        "the holder ended"
    );
    assert!(holding(&file).contains(&holder.pid()));
    assert!(holder.release().success());
    assert!(wait_child(&mut newer).success());
    assert!(marker.exists());
}

#[test]
fn waiters_without_supersede_are_not_affected() {
    let env = Env::new();
    let file = env.lock_file("d");
    let holder = env.hold(env.withlock().arg("d"), "h");
    let (m1, m2) = (env.file("M1"), env.file("M2"));
    let mut plain = env.withlock().args(["d", "--", "touch"]).arg(&m1).spawn();
    wait_blocked(&file, plain.id() as i32);
    let mut superseding = env
        .withlock()
        .args(["--supersede", "d", "--", "touch"])
        .arg(&m2)
        .spawn();
    wait_blocked(&file, superseding.id() as i32);
    assert!(
        plain.try_wait().unwrap().is_none(),
        "the plain waiter ended"
    );
    assert!(blocked_on(&file).contains(&(plain.id() as i32)));
    assert!(holder.release().success());
    assert!(wait_child(&mut plain).success());
    assert!(wait_child(&mut superseding).success());
    assert!(m1.exists() && m2.exists());
}

/// A request for several locks holds the first while it waits for the
/// second; superseded, it lets the first go too (all or none).
#[test]
fn a_superseded_request_for_several_locks_releases_the_ones_it_had() {
    let env = Env::new();
    let holder = env.hold(env.withlock().arg("b"), "h");
    let marker = env.file("M1");
    let mut first = env
        .withlock()
        .args(["-q", "--supersede", "a", "b", "--", "touch"])
        .arg(&marker)
        .spawn();
    let first_pid = first.id() as i32;
    wait_blocked(&env.lock_file("b"), first_pid);
    assert_eq!(holding(&env.lock_file("a")), [first_pid]);

    // A newer request for b alone supersedes it: quietly, with -q.
    let mut second = env
        .withlock()
        .args(["--supersede", "b", "--", "true"])
        .spawn();
    assert_eq!(wait_child(&mut first).code(), Some(SUPERSEDED));
    assert_eq!(stderr_of(&mut first), "", "-q prints nothing");
    assert!(!marker.exists());
    assert!(holding(&env.lock_file("a")).is_empty(), "a was let go");
    assert!(holder.release().success());
    assert!(wait_child(&mut second).success());
}

/// Each newcomer supersedes the one before it: of a line of superseding
/// waiters only the newest is left to run.
#[test]
fn only_the_newest_of_a_line_of_waiters_runs() {
    let env = Env::new();
    let file = env.lock_file("d");
    let holder = env.hold(env.withlock().arg("d"), "h");
    let markers: Vec<_> = (0..4).map(|i| env.file(&format!("M{i}"))).collect();
    let mut previous: Option<Child> = None;
    for marker in &markers {
        let waiter = env
            .withlock()
            .args(["--supersede", "d", "--", "touch"])
            .arg(marker)
            .spawn();
        if let Some(mut older) = previous.take() {
            assert_eq!(wait_child(&mut older).code(), Some(SUPERSEDED));
        }
        wait_blocked(&file, waiter.id() as i32);
        previous = Some(waiter);
    }
    assert!(holder.release().success());
    assert!(wait_child(&mut previous.unwrap()).success());
    let ran: Vec<bool> = markers.iter().map(|m| m.exists()).collect();
    assert_eq!(ran, [false, false, false, true]);
}

/// Needs root: alice's waiting request is superseded by bob's, and the
/// message names bob.
#[test]
fn another_users_request_supersedes() {
    ensure_user(ALICE);
    ensure_user(BOB);
    let env = Env::new();
    let file = env.lock_file("d");
    let holder = env.hold(env.withlock().arg("d"), "h");
    let (m1, m2) = (env.file("M1"), env.file("M2"));
    let mut alice = env
        .withlock()
        .as_user(ALICE)
        .args(["--supersede", "d", "--", "touch"])
        .arg(&m1)
        .spawn();
    wait_blocked(&file, alice.id() as i32);
    let mut bob = env
        .withlock()
        .as_user(BOB)
        .args(["--supersede", "d", "--", "touch"])
        .arg(&m2)
        .spawn();
    assert_eq!(wait_child(&mut alice).code(), Some(SUPERSEDED));
    let err = stderr_of(&mut alice);
    assert!(
        err.contains(&format!("superseded by pid {} ({BOB}, ", bob.id())),
        "{err}"
    );
    wait_blocked(&file, bob.id() as i32);
    assert!(holder.release().success());
    assert!(wait_child(&mut bob).success());
    assert!(m2.exists() && !m1.exists());
}

/// True once `pid` listens for newer superseding requests.
fn announced(pid: u32) -> bool {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap();
    let suffix = format!("/{pid}");
    table
        .lines()
        .filter_map(|line| line.split_whitespace().nth(7))
        .any(|name| name.starts_with("@withlock-supersede/") && name.ends_with(&suffix))
}

/// A socket lock's waiter sleeps in poll(); a newer request stops it too.
#[test]
fn a_socket_lock_waiter_is_superseded_too() {
    let env = Env::new();
    let lock = format!("abstract:withlock-test-supersede-{}", std::process::id());
    let holder = env.hold(env.withlock().arg(&lock), "h");
    let (m1, m2) = (env.file("M1"), env.file("M2"));
    let mut first = env
        .withlock()
        .args(["--supersede", &lock, "--", "touch"])
        .arg(&m1)
        .spawn();
    let first_pid = first.id();
    wait_for("the first request to listen", || announced(first_pid));
    let mut second = env
        .withlock()
        .args(["--supersede", &lock, "--", "touch"])
        .arg(&m2)
        .spawn();
    assert_eq!(wait_child(&mut first).code(), Some(SUPERSEDED));
    assert!(stderr_of(&mut first).contains(&format!("superseded by pid {} (", second.id())));
    let second_pid = second.id();
    wait_for("the second request to listen", || announced(second_pid));
    assert!(holder.release().success());
    assert!(wait_child(&mut second).success());
    assert!(m2.exists() && !m1.exists());
}

/// The abstract name `pid` listens on for newer superseding requests.
fn announced_name(pid: u32) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/unix").unwrap();
    let suffix = format!("/{pid}");
    table
        .lines()
        .filter_map(|line| line.split_whitespace().nth(7))
        .find(|name| name.starts_with("@withlock-supersede/") && name.ends_with(&suffix))
        .map(|name| name[1..].to_owned())
}

/// A lock directory only root may enter, in the test directory.
/// Needs root. Bob, who cannot enter root's lock directory, listens on an
/// abstract name made like that of a newer request for root's lock: root's
/// superseding requests neither give up at once (-n on a held lock is
/// busy, not superseded) nor while they wait.
#[test]
fn a_stranger_listening_on_a_forged_name_supersedes_nothing() {
    ensure_user(BOB);
    let env = Env::new();
    let private = private_dir(&env);
    let lock = withlock::AnyLock::File(withlock::FileLock::named("d", Some(&private)).unwrap());
    let prefix = withlock::supersede::prefix_for(&withlock::LockKey::of(&lock));
    // Newer than any request below, yet within the clock skew allowed.
    let soon = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(9);
    let forged = format!("abstract:{prefix}{}/1", soon.as_nanos());
    let impostor = env.hold(env.withlock().as_user(BOB).arg(&forged), "impostor");

    let in_private = |args: &[&str]| env.withlock().arg("--dir").arg(&private).args(args);
    let holder = env.hold(in_private(&["d"]), "h");
    in_private(&["--supersede", "-n", "d", "--", "true"])
        .assert()
        .code(75);
    let marker = env.file("M");
    let mut waiter = in_private(&["--supersede", "d", "--", "touch"])
        .arg(&marker)
        .spawn();
    wait_blocked(&private.join("d.lock"), waiter.id() as i32);
    assert!(holder.release().success());
    let status = wait_child(&mut waiter);
    assert!(status.success(), "{status}: {}", stderr_of(&mut waiter));
    assert!(marker.exists());
    assert!(impostor.release().success());
}

/// Needs root. Bob connects to root's waiting request and sends a notice
/// (with the lock's mode, as a newer request would): the request keeps
/// waiting, and a genuine newer request then supersedes it.
#[test]
fn a_stranger_connecting_supersedes_nothing() {
    ensure_user(BOB);
    let env = Env::new();
    let private = private_dir(&env);
    let file = private.join("d.lock");
    let in_private = |args: &[&str]| env.withlock().arg("--dir").arg(&private).args(args);
    let holder = env.hold(in_private(&["d"]), "h");
    let (m1, m2) = (env.file("M1"), env.file("M2"));
    let mut first = in_private(&["--supersede", "d", "--", "touch"])
        .arg(&m1)
        .spawn();
    let first_pid = first.id();
    wait_blocked(&file, first_pid as i32);
    let mut name = None;
    wait_for("the first request to listen", || {
        name = announced_name(first_pid);
        name.is_some()
    });

    send_notice_as(BOB, &name.unwrap(), b'x');
    assert!(
        first.try_wait().unwrap().is_none(),
        "a stranger's notice counted"
    );

    let mut second = in_private(&["--supersede", "d", "--", "touch"])
        .arg(&m2)
        .spawn();
    assert_eq!(wait_child(&mut first).code(), Some(SUPERSEDED));
    let err = stderr_of(&mut first);
    assert!(
        err.contains(&format!("superseded by pid {} (", second.id())),
        "{err}"
    );
    wait_blocked(&file, second.id() as i32);
    assert!(holder.release().success());
    assert!(wait_child(&mut second).success());
    assert!(m2.exists() && !m1.exists());
}
