//! withlock's shared state on the server through the real binary: roles
//! with schemas of their own share one hand-over and one token sequence; a
//! holder that ended without releasing makes `-n` and a short `-w` fail at
//! once (75), saying when the lock will be usable; a damaged state is
//! refused (78); a password in `--url` and a `--grace` above the maximum
//! are refused (64) before anything runs.

use std::fs;
use std::time::Duration;

use postgres::{Client, NoTls};
use withlock::human_duration;
use withlock::pg::handover::{MAX_GRACE, MAX_PAUSE, SETTLE_MARGIN};
use withlock::pg::heartbeat::DETECTION_BOUND;
use withlock_pg_testing::PASSWORD_ROLE;

use crate::postgres::PgEnv;
use crate::postgres_loss::{exit_within, read_pid};
use crate::support::{Run, stderr, stderr_of, wait_for};

/// Beyond a bound under test: scheduling on a loaded test machine.
const SLACK: Duration = Duration::from_secs(10);

/// The test server's database `db` as `role`.
fn url(pg: &PgEnv, role: &str, db: &str) -> String {
    format!("postgres://{role}@127.0.0.1:{}/{db}", pg.server.port())
}

fn with_url(run: Run, url: &str) -> Run {
    let mut run = run;
    run.env("WITHLOCK_URL", url);
    run
}

/// The first holder's command: its token into `$3`, its pid into `$1`,
/// then blocks on the FIFO `$2`, ignoring SIGTERM.
const IGNORING_SIGTERM: &str = r#"trap '' TERM; echo "$WITHLOCK_FENCE" > "$3"; echo "$$" > "$1"; { read _ < "$2"; } 2>/dev/null"#;

/// The second holder's command: whether the first command (pid `$1`)
/// still existed when it started, into `$2`, and its token into `$3`.
const CHECK_FIRST_GONE: &str = r#"if kill -0 "$1" 2>/dev/null; then echo overlap > "$2"; else echo after > "$2"; fi; echo "$WITHLOCK_FENCE" > "$3""#;

#[test]
fn roles_with_schemas_of_their_own_never_overlap_after_a_lost_session() {
    let pg = PgEnv::new();
    let mut admin = pg.server.client();
    admin
        .batch_execute("CREATE ROLE ci LOGIN; CREATE ROLE ops LOGIN")
        .unwrap();
    admin.batch_execute("CREATE DATABASE app OWNER ci").unwrap();
    let mut app = Client::connect(&url(&pg, "postgres", "app"), NoTls).unwrap();
    app.batch_execute("CREATE SCHEMA AUTHORIZATION ci; CREATE SCHEMA AUTHORIZATION ops")
        .unwrap();
    let (ready, go) = (pg.env.file("ci.ready"), pg.env.fifo("ci.go"));
    let (ci_fence, ops_fence) = (pg.env.file("ci.fence"), pg.env.file("ops.fence"));
    let result = pg.env.file("ops.result");
    let mut ci = with_url(pg.env.withlock(), &url(&pg, "ci", "app"))
        .args([
            "--grace",
            "1",
            "x",
            "--",
            "sh",
            "-c",
            IGNORING_SIGTERM,
            "sh",
        ])
        .args([&ready, &go, &ci_fence])
        .spawn();
    let ci_command = read_pid(&ready);
    let mut ops = with_url(pg.env.withlock(), &url(&pg, "ops", "app"))
        .args(["x", "--", "sh", "-c", CHECK_FIRST_GONE, "sh"])
        .arg(ci_command.to_string())
        .args([&result, &ops_fence])
        .spawn();
    wait_for("ops waiting in pg_locks", || {
        pg.server
            .waiting_for(&mut app, withlock::pg::advisory_key("x"))
            == 1
    });
    let terminated: i64 = app
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE usename = 'ci' AND application_name LIKE $1",
            &[&format!("withlock {} %", ci.id())],
        )
        .unwrap()
        .get(0);
    assert_eq!(terminated, 1, "ci's lock session");
    let grace = Duration::from_secs(1);
    let ci_status = exit_within(&mut ci, DETECTION_BOUND + grace + SLACK, "ci's withlock");
    assert_eq!(ci_status.code(), Some(80), "{}", stderr_of(&mut ci));
    let bound = DETECTION_BOUND + grace + SETTLE_MARGIN + SLACK;
    let ops_status = exit_within(&mut ops, bound, "ops's withlock");
    let said = stderr_of(&mut ops);
    assert!(ops_status.success(), "{said}");
    assert!(
        said.contains("ended without releasing it; waiting"),
        "{said}"
    );
    assert_eq!(
        fs::read_to_string(&result).unwrap().trim(),
        "after",
        "ops's command started while ci's still ran"
    );
    let token = |path| {
        fs::read_to_string(path)
            .unwrap()
            .trim()
            .parse::<i64>()
            .unwrap()
    };
    assert!(token(&ops_fence) > token(&ci_fence));
}

#[test]
fn after_a_killed_holder_no_wait_and_a_short_limit_fail_at_once_saying_when() {
    let pg = PgEnv::new();
    let holder = pg
        .env
        .hold(pg.withlock().args(["--grace", "3600", "deploy"]), "h");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(holder.pid()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let mut admin = pg.server.client();
    wait_for("the killed holder's session to end", || {
        let sessions: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE $1",
                &[&format!("withlock {} %", holder.pid())],
            )
            .unwrap()
            .get(0);
        sessions == 0
    });
    let ran = pg.env.file("ran");
    let usable = format!("usable in {}", human_duration(MAX_PAUSE));
    for wait in [&["-n"][..], &["-w", "2"][..]] {
        let out = pg
            .withlock()
            .args(wait)
            .args(["deploy", "--", "touch"])
            .arg(&ran)
            .output();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(75), "{wait:?}: {err}");
        assert!(err.contains("ended without releasing"), "{err}");
        assert!(err.contains(&usable), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(!ran.exists());
    }
    drop(holder);
}

#[test]
fn a_damaged_state_exits_78_saying_what_an_administrator_does() {
    let pg = PgEnv::new();
    pg.withlock()
        .args(["deploy", "--", "true"])
        .assert()
        .code(0);
    pg.server
        .client()
        .batch_execute("DROP TABLE withlock.holds")
        .unwrap();
    let ran = pg.env.file("ran");
    let out = pg
        .withlock()
        .args(["deploy", "--", "touch"])
        .arg(&ran)
        .output();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("withlock.holds missing"), "{err}");
    assert!(err.contains("DROP SCHEMA withlock CASCADE"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!ran.exists());
}

#[test]
fn a_password_in_url_is_refused_but_withlock_url_and_pgpassword_may_give_it() {
    let pg = PgEnv::new();
    let password = "s3cr3t-pw";
    pg.server.create_password_role(password);
    // The state, created by the server's owner.
    pg.withlock()
        .args(["deploy", "--", "true"])
        .assert()
        .code(0);
    let with_password = format!(
        "postgres://{PASSWORD_ROLE}:{password}@127.0.0.1:{}/postgres",
        pg.server.port()
    );
    let ran = pg.env.file("ran");
    let out = pg
        .withlock()
        .args(["--url", &with_password, "deploy", "--", "touch"])
        .arg(&ran)
        .output();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("PGPASSWORD"), "{err}");
    assert!(err.contains("WITHLOCK_URL"), "{err}");
    assert!(!err.contains(password), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!ran.exists());
    // The same URL in the environment, readable only by this user.
    with_url(pg.env.withlock(), &with_password)
        .args(["deploy", "--", "touch"])
        .arg(&ran)
        .assert()
        .code(0);
    assert!(ran.exists());
    // --url without it, and the password in PGPASSWORD.
    let mut run = pg
        .withlock()
        .args(["--url", &url(&pg, PASSWORD_ROLE, "postgres")]);
    run.env("PGPASSWORD", password);
    run.args(["deploy", "--", "true"]).assert().code(0);
}

#[test]
fn a_grace_above_the_maximum_is_refused_with_64() {
    let pg = PgEnv::new();
    let ran = pg.env.file("ran");
    let out = pg
        .withlock()
        .args(["--grace", "1e9", "deploy", "--", "touch"])
        .arg(&ran)
        .output();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(
        err.contains(&format!("at most {} seconds", MAX_GRACE.as_secs())),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!ran.exists());
}
