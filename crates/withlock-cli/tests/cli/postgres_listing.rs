//! The PostgreSQL backend's fencing token, holder message and listing
//! through the real binary: `WITHLOCK_FENCE` grows with every run, a
//! holder is named with host, user, pid, command and since (also to
//! another role), and `--list` / `--json` show holders, waiters in arrival
//! order and free names, one server session for the whole listing.

use serde_json::Value;
use withlock::pg::Identity;

use crate::postgres::PgEnv;
use crate::support::{stderr, wait_child};

/// What the command printed.
fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The URL of the test server as `role`.
fn url_as(pg: &PgEnv, role: &str) -> String {
    pg.server
        .url()
        .replace("postgres://postgres@", &format!("postgres://{role}@"))
}

/// `withlock --list --json NAMES...` against the test server.
fn list_json(pg: &PgEnv, names: &[&str]) -> Value {
    let out = pg
        .withlock()
        .args(["--list", "--json"])
        .args(names)
        .assert()
        .code(0)
        .get_output()
        .clone();
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `withlock --list NAMES` as text; it must succeed.
fn list_table(pg: &PgEnv, names: &[&str]) -> String {
    let out = pg
        .withlock()
        .arg("--list")
        .args(names)
        .assert()
        .code(0)
        .get_output()
        .clone();
    stdout(&out)
}

#[test]
fn the_command_gets_a_fencing_token_that_grows_with_every_run() {
    let pg = PgEnv::new();
    let show = r#"echo "${WITHLOCK_FENCE-unset} ${WITHLOCK_FENCES-unset}""#;
    let run_with = |locks: &[&str], inherited: &[(&str, &str)]| {
        let mut run = pg.withlock().args(locks).args(["--", "sh", "-c", show]);
        for (key, value) in inherited {
            run.env(key, value);
        }
        stdout(&run.assert().code(0).get_output().clone())
    };
    let run = |locks: &[&str]| run_with(locks, &[]);
    // One lock: one number, nothing else.
    let token = |said: String| -> i64 {
        let (fence, fences) = said.trim_end().split_once(' ').unwrap();
        assert_eq!(fences, "unset", "{said}");
        fence.parse().unwrap()
    };
    // Several locks: one number cannot fence them all.
    let several = |said: String| -> (i64, i64) {
        said.trim_end()
            .strip_prefix("unset data=")
            .and_then(|rest| rest.split_once(" deploy="))
            .map(|(data, deploy)| (data.parse().unwrap(), deploy.parse().unwrap()))
            .unwrap_or_else(|| panic!("{said}"))
    };
    let first = token(run(&["deploy"]));
    let shared = token(run(&["-s", "deploy"]));
    let third = token(run(&["deploy"]));
    assert!(first < shared && shared < third, "{first} {shared} {third}");
    let (data, deploy) = several(run(&["deploy", "data"]));
    assert!(
        data > third && deploy > third,
        "{third} then {data} {deploy}"
    );
    // An outer withlock's values never mix with this one's.
    let outer = [("WITHLOCK_FENCE", "99"), ("WITHLOCK_FENCES", "a=98 b=99")];
    let fifth = token(run_with(&["deploy"], &outer));
    assert!(fifth > deploy, "{deploy} then {fifth}");
    let (data_again, deploy_again) = several(run_with(&["deploy", "data"], &outer));
    assert!(data_again > data && deploy_again > fifth);
}

#[test]
fn a_role_that_may_not_create_the_state_exits_77_and_nothing_runs() {
    let pg = PgEnv::new();
    pg.server
        .client()
        .batch_execute("CREATE ROLE bob LOGIN")
        .unwrap();
    let ran = pg.env.file("ran");
    let out = pg
        .withlock()
        .args(["--url", &url_as(&pg, "bob"), "deploy", "--", "touch"])
        .arg(&ran)
        .output();
    assert_eq!(out.status.code(), Some(77));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("lacks CREATE on the database"), "{err}");
    assert!(err.contains("CREATE SCHEMA withlock;"), "{err}");
    assert!(!ran.exists());
}

#[test]
fn another_role_sees_the_holder_with_host_user_pid_command_and_since() {
    let pg = PgEnv::new();
    pg.server
        .client()
        .batch_execute("CREATE ROLE alice LOGIN")
        .unwrap();
    let holder = pg.env.hold(pg.withlock().arg("deploy"), "h");
    let me = Identity::current();
    // alice cannot see the holder's state_change or address, only its
    // application_name: host, user, pid, command and grant time.
    let out = pg
        .withlock()
        .args(["--url", &url_as(&pg, "alice"), "-n", "deploy", "--", "true"])
        .output();
    assert_eq!(out.status.code(), Some(75));
    let err = stderr(&out);
    // The server's word first: alice may see the role but not the address.
    let named = format!(
        "held exclusive by role postgres from an address hidden from this role, declaring pid \
         {} on {} ({}), since ",
        holder.pid(),
        me.host,
        me.user
    );
    assert!(err.contains(&named), "{err}");
    assert!(err.contains(", for "), "{err}");
    assert!(err.contains(": sh -c "), "the command it runs: {err}");
    assert!(err.ends_with("…\n"), "the command is cut, visibly: {err}");
    assert!(!err.contains("cannot see"), "{err}");
    assert!(holder.release().success());
}

#[test]
fn list_and_json_show_holders_waiters_in_arrival_order_and_free_names() {
    let pg = PgEnv::new();
    pg.withlock().args(["idle", "--", "true"]).assert().code(0);
    let holder = pg.env.hold(pg.withlock().arg("deploy"), "h");
    let mut first = pg.withlock().args(["-q", "deploy", "--", "true"]).spawn();
    pg.wait_waiting("deploy", 1);
    let mut second = pg
        .withlock()
        .args(["-q", "-s", "deploy", "--", "true"])
        .spawn();
    pg.wait_waiting("deploy", 2);
    let me = Identity::current();

    let doc = list_json(&pg, &[]);
    let names: Vec<&str> = doc
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["deploy", "idle"]);
    let deploy = &doc[0];
    assert_eq!(deploy["state"], "held");
    assert_eq!(deploy["mode"], "exclusive");
    assert_eq!(deploy["path"], Value::Null);
    let server = format!("127.0.0.1:{}/postgres", pg.server.port());
    assert_eq!(deploy["server"], server.as_str());
    let held = &deploy["holders"][0];
    assert_eq!(held["pid"], holder.pid());
    assert_eq!(held["host"], me.host.as_str());
    assert_eq!(held["user"], me.user.as_str());
    assert_eq!(held["command"][0], "sh", "the command it runs");
    assert!(held["since"].as_str().unwrap().ends_with('Z'), "{held}");
    let waiters: Vec<&Value> = deploy["waiters"].as_array().unwrap().iter().collect();
    let pids: Vec<i64> = waiters.iter().map(|w| w["pid"].as_i64().unwrap()).collect();
    assert_eq!(
        pids,
        [first.id() as i64, second.id() as i64],
        "arrival order"
    );
    assert!(
        waiters.iter().all(|w| w["since"].is_string()),
        "{waiters:?}"
    );
    assert_eq!(deploy["hidden"], false);
    assert_eq!(doc[1]["state"], "free");
    assert_eq!(doc[1]["holders"], serde_json::json!([]));

    let table = stdout(
        &pg.withlock()
            .arg("--list")
            .assert()
            .code(0)
            .get_output()
            .clone(),
    );
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 6, "{table}");
    let user_at_host = format!("{}@{}", me.user, me.host);
    for (line, state, pid) in [
        (lines[1], "held", holder.pid()),
        (lines[2], "waiting", first.id() as i32),
        (lines[3], "waiting", second.id() as i32),
    ] {
        assert!(line.starts_with("deploy"), "{table}");
        assert!(line.contains(state), "{table}");
        assert!(line.contains(&format!(" {pid} ")), "{table}");
        assert!(line.contains(&user_at_host), "{table}");
    }
    assert!(lines[3].contains("shared"), "{table}");
    assert!(
        lines[4].starts_with("idle") && lines[4].contains("free"),
        "{table}"
    );
    assert!(
        lines[5].starts_with("PID, USER, COMMAND and a holder's SINCE are what"),
        "{table}"
    );

    // By name, in the order given, a name never used included.
    let doc = list_json(&pg, &["nothing", "deploy"]);
    assert_eq!(doc[0]["name"], "nothing");
    assert_eq!(doc[0]["state"], "free");
    assert_eq!(doc[1]["waiters"].as_array().unwrap().len(), 2);

    assert!(holder.release().success());
    assert!(wait_child(&mut first).success());
    assert!(wait_child(&mut second).success());
}

#[test]
fn a_role_forging_a_holder_is_shown_with_its_real_role_and_address() {
    let pg = PgEnv::new();
    pg.server
        .client()
        .batch_execute("CREATE ROLE mallory LOGIN")
        .unwrap();
    let forged = "withlock 1 root@prod-db 1718013784123: ./script deploy";
    let mut config: postgres::Config = url_as(&pg, "mallory").parse().unwrap();
    let mut mallory = config
        .application_name(forged)
        .connect(postgres::NoTls)
        .unwrap();
    mallory
        .execute(
            "SELECT pg_advisory_lock($1)",
            &[&withlock::pg::advisory_key("deploy")],
        )
        .unwrap();

    let out = pg.withlock().args(["-n", "deploy", "--", "true"]).output();
    assert_eq!(out.status.code(), Some(75));
    let err = stderr(&out);
    assert!(
        err.contains(
            "held exclusive by role mallory from 127.0.0.1, declaring pid 1 on prod-db (root), since "
        ),
        "{err}"
    );

    let doc = list_json(&pg, &["deploy"]);
    let held = &doc[0]["holders"][0];
    assert_eq!(held["role"], "mallory", "{held}");
    assert_eq!(held["client_addr"], "127.0.0.1", "{held}");
    assert_eq!((&held["pid"], &held["user"]), (&1.into(), &"root".into()));
    let table = list_table(&pg, &["deploy"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].contains("ROLE") && lines[0].contains("CLIENT"),
        "{table}"
    );
    assert!(
        lines[1].contains("root@prod-db") && lines[1].contains("mallory  127.0.0.1"),
        "{table}"
    );
    assert!(lines[2].contains("declares"), "{table}");
}

#[test]
fn a_long_command_is_listed_as_its_arguments_with_the_cut_marked() {
    let pg = PgEnv::new();
    // hold() runs `sh -c 'echo "$$" > "$1" || exit 1; read _ < "$2"' sh
    // READY GO`: longer than application_name has room for.
    let holder = pg.env.hold(pg.withlock().arg("deploy"), "h");
    let script = r#"echo "$$" > "$1" || exit 1; read _ < "$2""#;
    let doc = list_json(&pg, &["deploy"]);
    let held = &doc[0]["holders"][0];
    assert_eq!(held["command_truncated"], true, "{held}");
    let command: Vec<&str> = held["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(command[..2], ["sh", "-c"], "{held}");
    assert!(
        command.len() == 2 || (command.len() == 3 && script.starts_with(command[2])),
        "whole arguments, then the start of one: {held}"
    );
    let table = list_table(&pg, &["deploy"]);
    let row = table.lines().nth(1).unwrap();
    assert!(row.contains("sh -c "), "{table}");
    assert!(row.ends_with('…'), "{table}");
    assert!(holder.release().success());
}
