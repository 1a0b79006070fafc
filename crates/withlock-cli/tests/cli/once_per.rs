//! `--once-per` (issue 16, point 4): of several runs under one lock, one
//! runs in a window and the others skip (exit 0 with one line, or
//! `--skip-exit-code`), even when they all start at once; a failed run
//! records nothing; the record is believed only from its owner; the same
//! on a PostgreSQL server, where other roles cannot forge or erase it, and
//! on etcd.

use std::fs;
use std::process::Child;

use postgres::error::SqlState;
use postgres::{Client, NoTls};
use serde_json::Value;

use crate::etcd::EtcdEnv;
use crate::postgres::PgEnv;
use crate::support::{BOB, Env, Run, ensure_user, lines, stderr, wait_child, wait_for};

/// Starts 8 runs of `job` at once through `run`, each appending its pid to
/// `runs` as its command; the first to get the lock holds it until the
/// other seven wait, so they are all under way together. Exactly one runs;
/// the others skip with one line each and exit 0.
fn eight_starters_run_once(env: &Env, run: impl Fn() -> Run) {
    let (log, go) = (env.file("runs"), env.fifo("first.go"));
    // A second run would block on the FIFO, which nobody writes again.
    let script = r#"echo "$$" >> "$1"; read _ < "$2""#;
    let starters: Vec<Child> = (0..8)
        .map(|_| {
            run()
                .args(["--once-per", "3600", "job", "--", "sh", "-c", script, "sh"])
                .arg(&log)
                .arg(&go)
                .spawn()
        })
        .collect();
    wait_for("the first run and seven waiters", || {
        let out = run().args(["--list", "--json", "job"]).output();
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let waiters = doc[0]["waiters"].as_array().map_or(0, Vec::len);
        lines(&log).len() == 1 && waiters == 7
    });
    fs::write(&go, "\n").unwrap();
    let mut skipped = 0;
    for mut starter in starters {
        let status = wait_child(&mut starter);
        assert_eq!(status.code(), Some(0));
        let mut err = String::new();
        std::io::Read::read_to_string(starter.stderr.as_mut().unwrap(), &mut err).unwrap();
        // A waiter that waited over a second also said so, on a line of
        // its own before.
        let said: Vec<&str> = err
            .lines()
            .filter(|line| !line.starts_with("withlock: waiting "))
            .collect();
        match said.as_slice() {
            [line] if line.starts_with("withlock: skipped: job last succeeded") => skipped += 1,
            [] => {}
            _ => panic!("a skip says one line, a run nothing: {err}"),
        }
    }
    assert_eq!(lines(&log).len(), 1, "one run");
    assert_eq!(skipped, 7);
}

/// A failed run records nothing: the next one runs; a success is then
/// skipped after, with its line, silently with -q, with the status of
/// --skip-exit-code; a window of 0 never skips.
fn a_failed_run_records_nothing(env: &Env, name: &str, run: impl Fn() -> Run) {
    let marker = env.file("ran");
    let out = run()
        .args(["--once-per", "3600", name, "--", "false"])
        .output();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let touch = |options: &[&str]| {
        let _ = fs::remove_file(&marker);
        let out = run()
            .args(["--once-per", "3600"])
            .args(options)
            .args([name, "--", "touch"])
            .arg(&marker)
            .output();
        (out.status.code(), stderr(&out), marker.exists())
    };
    assert_eq!(
        touch(&[]),
        (Some(0), String::new(), true),
        "ran after a failure"
    );
    let (code, err, ran) = touch(&[]);
    assert_eq!((code, ran), (Some(0), false), "{err}");
    let said = format!("withlock: skipped: {name} last succeeded");
    assert!(err.starts_with(&said), "{err}");
    assert!(err.contains("less than --once-per 1h00m ago"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(touch(&["-q"]), (Some(0), String::new(), false));
    assert_eq!(
        touch(&["--skip-exit-code", "3", "-q"]),
        (Some(3), String::new(), false)
    );
    let out = run()
        .args(["--once-per", "0", name, "--", "touch"])
        .arg(&marker)
        .output();
    assert!(out.status.success() && marker.exists(), "{}", stderr(&out));
}

#[test]
fn eight_simultaneous_starters_run_once_on_this_machine() {
    let env = Env::new();
    eight_starters_run_once(&env, || env.withlock());
    // The record beside the lock file: its owner's, nobody else may write.
    let record = env.lock_dir().join("job.lock.last-success");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(fs::metadata(&record).unwrap().mode() & 0o7777, 0o644);
}

#[test]
fn a_failed_run_records_nothing_on_this_machine() {
    let env = Env::new();
    a_failed_run_records_nothing(&env, "job", || env.withlock());
    let out = env
        .withlock()
        .args(["--once-per", "3600", "other", "--", "false"])
        .output();
    assert_eq!(out.status.code(), Some(1));
    assert!(!env.lock_dir().join("other.lock.last-success").exists());
}

/// Needs root: another user's record (or one others may write) is not
/// believed: 77 naming its owner, and nothing runs.
#[test]
fn another_users_record_is_refused_and_nothing_runs() {
    ensure_user(BOB);
    let env = Env::new();
    let marker = env.file("ran");
    let record = env.lock_dir().join("job.lock.last-success");
    let planted = std::process::Command::new("setpriv")
        .args([
            "--reuid",
            BOB,
            "--regid",
            BOB,
            "--init-groups",
            "--",
            "sh",
            "-c",
        ])
        .arg(format!("echo 4102444800000000 > {}", record.display()))
        .status()
        .unwrap();
    assert!(planted.success());
    let out = env
        .withlock()
        .args(["--once-per", "3600", "job", "--", "touch"])
        .arg(&marker)
        .output();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(77), "{err}");
    assert!(err.contains(&format!("owned by {BOB}")), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!marker.exists(), "the command ran");
}

/// --once-per with what cannot keep one record under an exclusive lock:
/// 64, one line, nothing runs (a malformed window: `bad_input.rs`).
#[test]
fn once_per_with_a_lock_that_cannot_keep_its_record_is_refused_with_64() {
    let env = Env::new();
    let marker = env.file("ran");
    for (locks, cause) in [
        (vec!["tcp:47111"], "a socket lock cannot"),
        (vec!["abstract:wl-once"], "a socket lock cannot"),
        (vec!["a", "b"], "give one lock, not several"),
        (vec!["a=shared"], "needs an exclusive lock"),
    ] {
        let out = env
            .withlock()
            .args(["--once-per", "60"])
            .args(&locks)
            .args(["--", "touch"])
            .arg(&marker)
            .output();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(64), "{locks:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{locks:?}: {err}");
        assert!(err.contains(cause), "{locks:?}: {err}");
        assert!(!marker.exists(), "{locks:?}: the command ran");
    }
}

#[test]
fn on_a_server_eight_starters_run_once_and_other_roles_cannot_forge_the_record() {
    let pg = PgEnv::new();
    eight_starters_run_once(&pg.env, || pg.withlock());
    a_failed_run_records_nothing(&pg.env, "nightly", || pg.withlock());
    // Another role reads the record, but writes it neither directly nor
    // through the function without holding the lock.
    let mut admin = pg.server.client();
    admin.batch_execute("CREATE ROLE mallory LOGIN").unwrap();
    let url = format!("postgres://mallory@127.0.0.1:{}/postgres", pg.server.port());
    let mut mallory = Client::connect(&url, NoTls).unwrap();
    let key = withlock::pg::advisory_key("job");
    let count: i64 = mallory
        .query_one("SELECT count(*) FROM withlock.runs WHERE key = $1", &[&key])
        .unwrap()
        .get(0);
    assert_eq!(count, 1);
    for forge in [
        "DELETE FROM withlock.runs",
        "UPDATE withlock.runs SET succeeded_at = now() - interval '1 day'",
        "INSERT INTO withlock.runs VALUES (1, 'x', now())",
    ] {
        let err = mallory.batch_execute(forge).unwrap_err();
        assert_eq!(
            err.code(),
            Some(&SqlState::INSUFFICIENT_PRIVILEGE),
            "{forge}: {err:?}"
        );
    }
    let err = mallory
        .query("SELECT withlock.record_run($1)", &[&key])
        .unwrap_err();
    assert!(message(&err).contains("does not hold the lock"), "{err:?}");
    // Holding it shared is not enough either.
    mallory
        .query("SELECT pg_advisory_lock_shared($1)", &[&key])
        .unwrap();
    let err = mallory
        .query("SELECT withlock.record_run($1)", &[&key])
        .unwrap_err();
    assert!(message(&err).contains("does not hold the lock"), "{err:?}");
}

#[test]
fn on_etcd_eight_starters_run_once_and_a_failed_run_records_nothing() {
    let etcd = EtcdEnv::new();
    eight_starters_run_once(&etcd.env, || etcd.withlock());
    a_failed_run_records_nothing(&etcd.env, "nightly", || etcd.withlock());
    // The record is beside the line, not in it: the lock is free.
    assert_eq!(etcd.keys("job"), Vec::<String>::new());
}

/// The server's message of a failed query.
fn message(err: &postgres::Error) -> String {
    err.as_db_error()
        .map_or_else(|| err.to_string(), |e| e.message().to_owned())
}
