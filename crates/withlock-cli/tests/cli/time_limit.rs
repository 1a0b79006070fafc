//! `--time-limit` (issue 16, point 2): a command that runs into its limit
//! gets SIGTERM to its process group, SIGKILL after `--grace` if it ignores
//! that, and withlock exits 81; a command that ends in time keeps its own
//! status; every user's listing shows a holder's deadline. The same for a
//! lock on a PostgreSQL server and on etcd.

use std::fs;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::etcd::EtcdEnv;
use crate::postgres::PgEnv;
use crate::support::{BOB, Env, Run, ensure_user, stderr};

const TIME_LIMIT: i32 = 81;

/// A command that records SIGTERM in `$2` and ignores it, after writing its
/// pid to `$1`, then runs until killed (a `sleep` that SIGTERM ends is
/// followed by the next; the shell's words on it go to /dev/null).
const IGNORES_TERM: &str = r#"exec 2>/dev/null; trap 'echo TERM >> "$2"' TERM; echo "$$" > "$1"; while :; do sleep 1; done"#;

/// Runs `run` with a command that ignores SIGTERM under `--time-limit 1
/// --grace 1`, and checks that it got SIGTERM, was killed, and that
/// withlock said so and exited 81.
fn a_command_ignoring_sigterm_is_killed(env: &Env, run: Run) {
    let (pid_file, log) = (env.file("pid"), env.file("term.log"));
    let out = run
        .args(["--time-limit", "1", "--grace", "1", "job", "--"])
        .args(["sh", "-c", IGNORES_TERM, "sh"])
        .arg(&pid_file)
        .arg(&log)
        .output();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(TIME_LIMIT), "{err}");
    assert!(err.contains("time limit of 1.0s"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(fs::read_to_string(&log).unwrap(), "TERM\n", "SIGTERM first");
    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Reaped by withlock: the pid names no process of the command's now.
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(!stat.contains("(sh)"), "the command still runs: {stat}");
}

#[test]
fn a_command_ignoring_sigterm_is_killed_after_the_grace_with_81() {
    let env = Env::new();
    a_command_ignoring_sigterm_is_killed(&env, env.withlock());
    // The lock was released: free at once for the next.
    env.withlock()
        .args(["-n", "job", "--", "true"])
        .assert()
        .code(0);
}

#[test]
fn a_command_that_ends_in_time_keeps_its_status() {
    let env = Env::new();
    let out = env
        .withlock()
        .args(["--time-limit", "600", "job", "--", "sh", "-c", "exit 3"])
        .output();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
}

/// The deadline in a listing's JSON for the first holder of the first lock.
fn listed_deadline(doc: &Value) -> SystemTime {
    let text = doc[0]["holders"][0]["deadline"]
        .as_str()
        .unwrap_or_else(|| panic!("no deadline: {doc}"));
    humantime::parse_rfc3339(text).unwrap()
}

/// The listing's deadline is the command's start plus the limit: between
/// the limit after the test asked and the limit after the command ran.
fn assert_deadline_between(deadline: SystemTime, asked: SystemTime, ran: SystemTime) {
    let limit = Duration::from_secs(600);
    // To the second, whatever each clock rounds.
    let slack = Duration::from_secs(1);
    assert!(
        deadline + slack >= asked + limit,
        "{deadline:?} before {asked:?}"
    );
    assert!(
        deadline <= ran + limit + slack,
        "{deadline:?} after {ran:?}"
    );
}

/// Needs root: lists as another user.
#[test]
fn every_users_listing_shows_a_holders_deadline() {
    ensure_user(BOB);
    let env = Env::new();
    let asked = SystemTime::now();
    let holder = env.hold(env.withlock().args(["--time-limit", "600", "job"]), "h");
    let ran = SystemTime::now();
    let out = env
        .withlock()
        .args(["--list", "--json"])
        .as_user(BOB)
        .output();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_deadline_between(listed_deadline(&doc), asked, ran);
    let table = env.withlock().arg("--list").output();
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(
        table.lines().next().unwrap().contains("DEADLINE"),
        "{table}"
    );
    assert!(table.contains("(in 9m"), "{table}");
    // Without a limit there is no deadline, and no column.
    assert!(holder.release().success());
    let holder = env.hold(env.withlock().arg("job"), "h2");
    let out = env.withlock().args(["--list", "--json"]).output();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc[0]["holders"][0]["deadline"], Value::Null, "{doc}");
    let table = String::from_utf8(env.withlock().arg("--list").output().stdout).unwrap();
    assert!(!table.contains("DEADLINE"), "{table}");
    assert!(holder.release().success());
}

#[test]
fn a_server_lock_runs_into_its_limit_the_same_way_and_lists_its_deadline() {
    let pg = PgEnv::new();
    a_command_ignoring_sigterm_is_killed(&pg.env, pg.withlock());
    let asked = SystemTime::now();
    let holder = pg
        .env
        .hold(pg.withlock().args(["--time-limit", "600", "job"]), "h");
    let ran = SystemTime::now();
    let out = pg.withlock().args(["--list", "--json"]).output();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_deadline_between(listed_deadline(&doc), asked, ran);
    assert!(holder.release().success());
    let status = pg
        .withlock()
        .args(["-n", "job", "--", "true"])
        .output()
        .status;
    assert!(status.success());
}

#[test]
fn an_etcd_lock_runs_into_its_limit_the_same_way_and_lists_its_deadline() {
    let etcd = EtcdEnv::new();
    a_command_ignoring_sigterm_is_killed(&etcd.env, etcd.withlock());
    let asked = SystemTime::now();
    let holder = etcd
        .env
        .hold(etcd.withlock().args(["--time-limit", "600", "job"]), "h");
    let ran = SystemTime::now();
    let out = etcd.withlock().args(["--list", "--json"]).output();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_deadline_between(listed_deadline(&doc), asked, ran);
    assert!(holder.release().success());
}

/// A hold runs no command: the options for one are refused with 64, one
/// line, and nothing is held.
#[test]
fn a_hold_refuses_the_options_of_a_command_with_64() {
    let env = Env::new();
    for option in [
        &["--time-limit", "5"][..],
        &["--once-per", "60"],
        &["--slots", "a,b"],
    ] {
        let out = env
            .withlock()
            .arg("hold")
            .args(option)
            .args(["job", "--until-exit", &std::process::id().to_string()])
            .output();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(64), "{option:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{option:?}: {err}");
        assert!(
            err.contains(&format!("{} is for a command", option[0])),
            "{err}"
        );
        assert!(
            !env.lock_file("job").exists(),
            "{option:?}: a lock was taken"
        );
    }
}
