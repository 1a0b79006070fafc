//! `--max N` and `-s` on one name: at most N holders at once, whichever
//! way they mix. A shared request counts as one of the N; one that comes
//! behind `--max` holders waits until they are gone. Every step waits for
//! a real event (a process blocked in the kernel, a file written).

use crate::support::{Env, finish, lines, wait_blocked};

#[test]
fn a_shared_request_does_not_slip_past_a_max_holder() {
    let env = Env::new();
    let holder = env.hold(env.withlock().args(["--max", "1", "m"]), "h");
    let ran = env.file("ran");
    env.withlock()
        .args(["-s", "-n", "m", "--", "touch"])
        .arg(&ran)
        .assert()
        .code(75);
    assert!(!ran.exists(), "-s ran beside the only --max 1 holder");
    // Waiting, it gets in once the holder is gone.
    let log = env.file("log");
    let waiter = env
        .withlock()
        .args(["-s", "m", "--", "sh", "-c", r#"echo shared >> "$0""#])
        .arg(&log)
        .spawn();
    wait_blocked(&env.lock_file("m"), waiter.id() as i32);
    assert!(lines(&log).is_empty());
    assert!(holder.release().success());
    finish(vec![waiter]);
    assert_eq!(lines(&log), ["shared"]);
}

#[test]
fn a_max_request_counts_shared_holders_as_taking_places() {
    let env = Env::new();
    let shared = env.hold(env.withlock().args(["-s", "m"]), "s");
    env.withlock()
        .args(["--max", "1", "-n", "m", "--", "true"])
        .assert()
        .code(75);
    // One place left of two.
    env.withlock()
        .args(["--max", "2", "-n", "m", "--", "true"])
        .assert()
        .code(0);
    assert!(shared.release().success());
}

#[test]
fn the_listing_shows_max_holders_as_max() {
    let env = Env::new();
    let holder = env.hold(env.withlock().args(["--max", "2", "m"]), "m");
    let shared = env.hold(env.withlock().args(["-s", "s"]), "s");
    let out = env
        .withlock()
        .args(["--list", "--json", "m", "s"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let locks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(locks[0]["mode"], "max", "{locks}");
    assert_eq!(locks[1]["mode"], "shared", "{locks}");
    let out = env
        .withlock()
        .args(["--list", "m"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let table = String::from_utf8_lossy(&out.stdout);
    let row = table.lines().nth(1).unwrap();
    assert_eq!(row.split_whitespace().nth(2), Some("max"), "{table}");
    // The busy message says it too.
    let out = env
        .withlock()
        .args(["-n", "m", "--", "true"])
        .assert()
        .code(75)
        .get_output()
        .clone();
    let err = crate::support::stderr(&out);
    assert!(err.contains("held (--max) by pid"), "{err}");
    assert!(holder.release().success());
    assert!(shared.release().success());
}

#[test]
fn the_listing_shows_max_waiters_as_max_too() {
    let env = Env::new();
    let holder = env.hold(env.withlock().arg("m"), "h");
    let waiter = env
        .withlock()
        .args(["--max", "2", "m", "--", "true"])
        .spawn();
    wait_blocked(&env.lock_file("m"), waiter.id() as i32);
    let out = env
        .withlock()
        .args(["--list", "m"])
        .assert()
        .code(0)
        .get_output()
        .clone();
    let table = String::from_utf8_lossy(&out.stdout);
    let modes: Vec<(&str, &str)> = table
        .lines()
        .skip(1)
        .map(|row| {
            let cells: Vec<&str> = row.split_whitespace().collect();
            (cells[1], cells[2])
        })
        .collect();
    assert_eq!(
        modes,
        [("held", "exclusive"), ("waiting", "max")],
        "{table}"
    );
    assert!(holder.release().success());
    finish(vec![waiter]);
}
