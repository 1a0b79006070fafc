//! `--cancel-running` and `withlock hold` with `--url`: the same flags and
//! statuses as on this machine, through the server: a cancel is a NOTIFY
//! the holder checks in `pg_locks`, so it works across machines and roles.

use std::process::{Command, Stdio};

use crate::postgres::PgEnv;
use crate::support::{spawn, stderr, stderr_of, wait_child};

/// The documented statuses of a cancelled holder and a superseded request.
const CANCELLED: i32 = 82;
const SUPERSEDED: i32 = 79;

/// The test server's URL for another role.
fn url_as(pg: &PgEnv, role: &str) -> String {
    pg.server
        .url()
        .replace("postgres://postgres@", &format!("postgres://{role}@"))
}

#[test]
fn a_newer_request_cancels_a_running_holder_and_runs() {
    let pg = PgEnv::new();
    let mut holder = pg
        .env
        .hold(pg.withlock().args(["--cancel-running", "deploy"]), "h");
    let marker = pg.env.file("M");
    let mut newer = pg
        .withlock()
        .args(["--cancel-running", "deploy", "--", "touch"])
        .arg(&marker)
        .spawn();
    let status = wait_child(&mut holder.child);
    let err = stderr_of(&mut holder.child);
    assert_eq!(status.code(), Some(CANCELLED), "{err}");
    assert!(
        err.contains(&format!(
            "withlock: cancelled by a newer --cancel-running request for deploy: pid {}, user ",
            newer.id()
        )),
        "{err}"
    );
    // With --url a request declares its command, not withlock's line.
    assert!(err.contains("(touch "), "{err}");
    let status = wait_child(&mut newer);
    assert!(status.success(), "{status}: {}", stderr_of(&mut newer));
    assert!(marker.exists(), "the newest request ran");
}

#[test]
fn a_holder_without_the_flag_is_untouched_and_older_flagged_waiters_give_up() {
    let pg = PgEnv::new();
    let mut holder = pg.env.hold(pg.withlock().arg("deploy"), "h");
    let (m1, m2) = (pg.env.file("M1"), pg.env.file("M2"));
    let mut older = pg
        .withlock()
        .args(["--cancel-running", "deploy", "--", "touch"])
        .arg(&m1)
        .spawn();
    pg.wait_waiting("deploy", 1);
    let mut newer = pg
        .withlock()
        .args(["--cancel-running", "deploy", "--", "touch"])
        .arg(&m2)
        .spawn();
    pg.wait_waiting("deploy", 2);
    assert!(
        holder.child.try_wait().unwrap().is_none(),
        "a holder without --cancel-running was stopped"
    );
    assert!(holder.release().success(), "the holder ran to its end");
    let status = wait_child(&mut older);
    let err = stderr_of(&mut older);
    assert_eq!(status.code(), Some(SUPERSEDED), "{err}");
    assert!(
        err.contains(&format!("superseded by pid {} (", newer.id())),
        "{err}"
    );
    assert!(wait_child(&mut newer).success());
    assert!(m2.exists() && !m1.exists());
}

/// Another role, as from another machine, cancels a holder that opted
/// in; a role that may not connect cannot, and a session that notifies
/// without waiting for the lock is not believed.
#[test]
fn any_role_that_could_take_the_lock_cancels_and_no_other() {
    let pg = PgEnv::new();
    pg.server
        .client()
        .batch_execute(
            "CREATE ROLE bob LOGIN; CREATE ROLE mallory LOGIN; \
             REVOKE CONNECT ON DATABASE postgres FROM PUBLIC; \
             GRANT CONNECT ON DATABASE postgres TO bob",
        )
        .unwrap();
    let mut holder = pg
        .env
        .hold(pg.withlock().args(["--cancel-running", "deploy"]), "h");

    let ran = pg.env.file("ran");
    let out = pg
        .withlock()
        .args([
            "--url",
            &url_as(&pg, "mallory"),
            "--cancel-running",
            "-w",
            "5",
        ])
        .args(["deploy", "--", "touch"])
        .arg(&ran)
        .output();
    let err = stderr(&out);
    assert!(err.contains("CONNECT privilege"), "{err}");
    assert!(!ran.exists(), "a role without CONNECT ran");
    assert!(
        holder.child.try_wait().unwrap().is_none(),
        "a role without CONNECT cancelled the holder"
    );

    // Bob first notifies as a cancelling request would, from a session
    // that does not wait for the lock: the holder hears it first, does not
    // find its sender in pg_locks, and is then cancelled by Bob's genuine
    // request, which it names (the forged one would be named by its
    // server process).
    let mut bob = postgres::Client::connect(&url_as(&pg, "bob"), postgres::NoTls).unwrap();
    let key = withlock::pg::advisory_key("deploy");
    bob.execute(
        "SELECT pg_notify('withlock_cancel', $1)",
        &[&format!("{key}:99999999999999999")],
    )
    .unwrap();
    let mut newer = pg
        .withlock()
        .args([
            "--url",
            &url_as(&pg, "bob"),
            "--cancel-running",
            "deploy",
            "--",
            "true",
        ])
        .spawn();
    let status = wait_child(&mut holder.child);
    let err = stderr_of(&mut holder.child);
    assert_eq!(status.code(), Some(CANCELLED), "{err}");
    assert!(err.contains(&format!("pid {}, user ", newer.id())), "{err}");
    assert!(wait_child(&mut newer).success());
}

#[test]
fn a_hold_of_a_server_lock_lasts_until_release_or_its_pid_exits() {
    let pg = PgEnv::new();
    let mut follow = spawn(Command::new("sleep").arg("600").stdin(Stdio::null()));
    let pid = follow.id().to_string();
    let hold = |pg: &PgEnv| {
        let out = pg
            .withlock()
            .args(["hold", "deploy", "--until-exit", &pid])
            .output();
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    };
    hold(&pg);
    let busy = pg.withlock().args(["-n", "deploy", "--", "true"]).output();
    assert_eq!(busy.status.code(), Some(75), "{}", stderr(&busy));
    let listed = pg.withlock().args(["--list", "--json", "deploy"]).output();
    let doc: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(doc[0]["holders"][0]["follows"], follow.id(), "{doc}");
    pg.withlock().args(["release", "deploy"]).assert().code(0);
    pg.withlock()
        .args(["-n", "deploy", "--", "true"])
        .assert()
        .code(0);

    hold(&pg);
    follow.kill().unwrap();
    follow.wait().unwrap();
    pg.wait_waiting("deploy", 0);
    crate::support::wait_for("the hold to end with its process", || {
        pg.withlock()
            .args(["-n", "deploy", "--", "true"])
            .output()
            .status
            .success()
    });
}

/// A hold whose server session is ended (the lock is lost) ends, and
/// sends SIGTERM to the process it follows.
#[test]
fn a_hold_that_loses_its_server_lock_stops_the_process_it_follows() {
    let pg = PgEnv::new();
    let mut follow = spawn(Command::new("sleep").arg("600").stdin(Stdio::null()));
    let out = pg
        .withlock()
        .args(["hold", "deploy", "--until-exit", &follow.id().to_string()])
        .output();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let key = withlock::pg::advisory_key("deploy");
    let (high, low) = (((key >> 32) as i32), (key as i32));
    let ended = pg
        .server
        .client()
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_locks \
             WHERE locktype = 'advisory' AND granted AND classid::int = $1 AND objid::int = $2",
            &[&high, &low],
        )
        .unwrap();
    assert_eq!(ended.get::<_, i64>(0), 1);
    let status = wait_child(&mut follow);
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status}");
}
