//! The PostgreSQL backend through the real binary (`--url`), against a
//! private server each test starts (`withlock_pg_testing::TestServer`):
//! the same flags and exit statuses as a local lock, holders named with
//! their host, and nothing but names sent to the server.

use std::process::Command;

use withlock_pg_testing::{ServerSettings, TestServer};

use crate::support::{Env, Run, storm, wait_for};

/// A test's directory and binary, and its own server.
pub(crate) struct PgEnv {
    pub env: Env,
    pub server: TestServer,
}

impl PgEnv {
    pub(crate) fn new() -> PgEnv {
        PgEnv {
            env: Env::new(),
            server: TestServer::start(),
        }
    }

    /// `withlock` with `WITHLOCK_URL` pointing at the test's server.
    pub(crate) fn withlock(&self) -> Run {
        let mut run = self.env.withlock();
        run.env("WITHLOCK_URL", self.server.url());
        run
    }

    /// Sessions waiting for the lock `name` on the server.
    pub(crate) fn waiting(&self, name: &str) -> i64 {
        let mut client = self.server.client();
        self.server
            .waiting_for(&mut client, withlock::pg::advisory_key(name))
    }

    /// Waits until `count` sessions wait for `name`.
    pub(crate) fn wait_waiting(&self, name: &str, count: i64) {
        wait_for(&format!("{count} waiter(s) on {name} in pg_locks"), || {
            self.waiting(name) == count
        });
    }
}

#[test]
fn a_held_lock_makes_no_wait_fail_with_75_naming_the_holder() {
    let pg = PgEnv::new();
    let holder = pg.env.hold(pg.withlock().arg("deploy"), "h");
    let out = pg.withlock().args(["-n", "deploy", "--", "true"]).output();
    assert_eq!(out.status.code(), Some(75));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("deploy"), "{err}");
    assert!(err.contains(&format!("pid {}", holder.pid())), "{err}");
    assert!(err.contains("sh -c"), "names the command: {err}");
    assert!(holder.release().success());
    pg.withlock()
        .args(["-n", "deploy", "--", "true"])
        .assert()
        .code(0);
}

#[test]
fn a_waiter_runs_once_the_holder_ends() {
    let pg = PgEnv::new();
    let holder = pg.env.hold(pg.withlock().arg("deploy"), "h");
    let ran = pg.env.file("waiter-ran");
    let mut waiter = pg
        .withlock()
        .args(["-q", "deploy", "--", "touch"])
        .arg(&ran)
        .spawn();
    pg.wait_waiting("deploy", 1);
    assert!(!ran.exists(), "the waiter ran while the lock was held");
    assert!(holder.release().success());
    assert!(crate::support::wait_child(&mut waiter).success());
    assert!(ran.exists());
}

#[test]
fn a_wait_with_a_limit_gives_up_with_75_and_nothing_runs() {
    let pg = PgEnv::new();
    let _holder = pg.env.hold(pg.withlock().arg("deploy"), "h");
    let ran = pg.env.file("ran");
    pg.withlock()
        .args(["-w", "0.2", "deploy", "--", "touch"])
        .arg(&ran)
        .assert()
        .code(75);
    assert!(!ran.exists());
    assert_eq!(pg.waiting("deploy"), 0, "the wait left a waiter behind");
}

#[test]
fn shared_holders_share_and_keep_an_exclusive_one_out() {
    let pg = PgEnv::new();
    let _reader = pg.env.hold(pg.withlock().args(["-s", "data"]), "r");
    pg.withlock()
        .args(["-s", "-n", "data", "--", "true"])
        .assert()
        .code(0);
    pg.withlock()
        .args(["-n", "data", "--", "true"])
        .assert()
        .code(75);
    pg.withlock()
        .args(["-n", "data=exclusive", "--", "true"])
        .assert()
        .code(75);
}

#[test]
fn a_storm_of_clients_loses_no_update() {
    let pg = PgEnv::new();
    let locker = format!(
        "{} --url {} storm --",
        pg.env.bin().display(),
        pg.server.url()
    );
    let lockers = vec![locker; 6];
    assert_eq!(storm(&pg.env, &lockers, 15), 90);
}

#[test]
fn paths_and_socket_specs_are_refused_with_64_and_nothing_runs() {
    let pg = PgEnv::new();
    for spec in ["./x.lock", "/run/lock/x.lock", "tcp:4711", "abstract:x"] {
        let out = pg.withlock().args([spec, "--", "false"]).output();
        assert_eq!(out.status.code(), Some(64), "{spec}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("drop --url"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    let out = pg
        .withlock()
        .args(["--supersede", "deploy", "--", "false"])
        .output();
    assert_eq!(out.status.code(), Some(64));
}

#[test]
fn an_unreachable_server_exits_69_and_a_refused_login_77_without_the_password() {
    let env = Env::new();
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // In WITHLOCK_URL: a password in --url is refused before any of this.
    let url = format!("postgres://someone:s3cr3t-pw@127.0.0.1:{port}/db");
    let mut run = env.withlock().args(["deploy", "--", "true"]);
    run.env("WITHLOCK_URL", &url);
    let out = run.output();
    assert_eq!(out.status.code(), Some(69));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Connection refused"), "{err}");
    assert!(!err.contains("s3cr3t-pw"), "{err}");

    let server = TestServer::start();
    let url = format!(
        "postgres://nobody:s3cr3t-pw@127.0.0.1:{}/postgres",
        server.port()
    );
    let mut run = env.withlock().args(["deploy", "--", "true"]);
    run.env("WITHLOCK_URL", &url);
    let out = run.output();
    assert_eq!(out.status.code(), Some(77));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nobody"), "{err}");
    assert!(!err.contains("s3cr3t-pw"), "{err}");
}

#[test]
fn the_url_from_the_environment_is_not_shown_in_help() {
    let env = Env::new();
    let out = Command::new(env.bin())
        .arg("--help")
        .env("WITHLOCK_URL", "postgres://u:s3cr3t-pw@h/db")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("s3cr3t-pw"));
}

#[test]
fn after_an_orderly_release_the_next_holder_does_not_pause() {
    let pg = PgEnv::new();
    let holder = pg.env.hold(pg.withlock().arg("deploy"), "h");
    let mut waiter = pg.withlock().args(["deploy", "--", "true"]).spawn();
    pg.wait_waiting("deploy", 1);
    assert!(holder.release().success());
    let status = crate::support::wait_child(&mut waiter);
    let mut said = String::new();
    std::io::Read::read_to_string(&mut waiter.stderr.take().unwrap(), &mut said).unwrap();
    assert!(status.success(), "{said}");
    assert!(!said.contains("without releasing"), "{said}");
    let mut client = pg.server.client();
    let records: i64 = client
        .query_one("SELECT count(*) FROM withlock.holds", &[])
        .unwrap()
        .get(0);
    assert_eq!(records, 0, "every grant record is erased at release");
}

#[test]
fn dir_on_the_command_line_beats_the_url_from_the_environment_but_not_url_on_it() {
    let pg = PgEnv::new();
    let dir = pg.env.lock_dir();
    pg.withlock()
        .arg("--dir")
        .arg(&dir)
        .args(["local", "--", "true"])
        .assert()
        .code(0);
    assert!(pg.env.lock_file("local").exists(), "taken on this machine");
    let out = pg
        .withlock()
        .arg("--dir")
        .arg(&dir)
        .args(["--url", &pg.server.url(), "x", "--", "true"])
        .output();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("drop one"));
}

/// Runs `withlock --url URL deploy -- touch RAN` with `env` set; returns
/// its exit status and its stderr, and checks it ran nothing and said one
/// line.
fn refused(pg_env: &Env, url: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let ran = pg_env.file("ran");
    let mut run = pg_env
        .withlock()
        .args(["--url", url, "deploy", "--", "touch"])
        .arg(&ran);
    for (key, value) in env {
        run.env(key, value);
    }
    let out = run.output();
    let err = crate::support::stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!ran.exists(), "the command ran: {err}");
    (out.status.code(), err)
}

#[test]
fn sslmode_require_against_a_server_without_tls_exits_78_naming_the_setting_and_the_fix() {
    let pg = PgEnv::new();
    let url = format!("{}?sslmode=require", pg.server.url());
    let (code, err) = refused(&pg.env, &url, &[]);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("does not offer TLS"), "{err}");
    assert!(err.contains("sslmode=require needs it"), "{err}");
    assert!(err.contains("sslmode=disable"), "the fix: {err}");
    let (code, err) = refused(&pg.env, &pg.server.url(), &[("PGSSLMODE", "require")]);
    assert_eq!(code, Some(78), "{err}");
    assert!(err.contains("PGSSLMODE=require needs it"), "{err}");
}

#[test]
fn a_url_of_another_form_or_scheme_exits_64_showing_what_a_url_looks_like() {
    let env = Env::new();
    let (code, err) = refused(&env, "notaurl", &[]);
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("postgres://USER@HOST[:PORT]/DB"), "{err}");
    assert!(!err.contains("unexpected EOF"), "{err}");
    let (code, err) = refused(&env, "mysql://me:s3cr3t-pw@db/app", &[]);
    assert_eq!(code, Some(64), "{err}");
    assert!(
        err.contains("only postgres:// and postgresql:// are supported"),
        "{err}"
    );
    assert!(!err.contains("s3cr3t-pw"), "{err}");
}

#[test]
fn a_role_or_database_that_does_not_exist_is_named_with_how_to_create_it() {
    let pg = PgEnv::new();
    let port = pg.server.port();
    let url = format!("postgres://ghost@127.0.0.1:{port}/postgres");
    let (code, err) = refused(&pg.env, &url, &[]);
    assert_eq!(code, Some(77), "{err}");
    assert!(err.contains(r#"the role "ghost" does not exist"#), "{err}");
    assert!(err.contains("CREATE ROLE"), "{err}");
    assert!(!err.contains(".pgpass"), "{err}");
    let url = format!("postgres://postgres@127.0.0.1:{port}/nodb");
    let (code, err) = refused(&pg.env, &url, &[]);
    assert_eq!(code, Some(78), "{err}");
    assert!(
        err.contains(r#"the database "nodb" does not exist"#),
        "{err}"
    );
    assert!(err.contains("createdb nodb"), "{err}");
}

#[test]
fn a_client_beyond_max_connections_exits_69_at_once_and_the_queue_is_still_served() {
    // 5 connections in all (3 of them kept for superusers, which the test
    // role is): the test's own session, a holder and 3 waiters.
    let pg = PgEnv {
        env: Env::new(),
        server: TestServer::start_with(ServerSettings {
            max_connections: 5,
            ..ServerSettings::default()
        }),
    };
    let mut admin = pg.server.client();
    let key = withlock::pg::advisory_key("deploy");
    let holder = pg.env.hold(pg.withlock().arg("deploy"), "h");
    let mut waiters: Vec<_> = (0..3)
        .map(|i| {
            let ran = pg.env.file(&format!("waiter-{i}"));
            let waiter = pg
                .withlock()
                .args(["-q", "deploy", "--", "touch"])
                .arg(&ran)
                .spawn();
            (waiter, ran)
        })
        .collect();
    wait_for("3 waiters on deploy in pg_locks", || {
        pg.server.waiting_for(&mut admin, key) == 3
    });
    let ran = pg.env.file("excess-ran");
    let out = pg
        .withlock()
        .args(["deploy", "--", "touch"])
        .arg(&ran)
        .output();
    assert_eq!(out.status.code(), Some(69));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("max_connections"), "{err}");
    assert!(!ran.exists(), "the excess client ran its command");
    assert!(holder.release().success());
    for (waiter, ran) in &mut waiters {
        assert!(crate::support::wait_child(waiter).success());
        assert!(ran.exists());
    }
}
