//! `withlock hold NAME... --until-exit PID` and `withlock release NAME`:
//! locks kept by a background holder across several commands, until the
//! followed process exits or the same user (or root) releases them.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::support::{ALICE, BOB, Env, ensure_user, holding, spawn, stderr, wait_child, wait_for};

/// A process for a hold to follow: it runs until a line is written to
/// its FIFO `go`.
struct Followed {
    child: Child,
    go: std::path::PathBuf,
}

impl Followed {
    fn start(env: &Env, tag: &str) -> Followed {
        let go = env.fifo(&format!("{tag}.go"));
        let child = spawn(
            Command::new("sh")
                .args(["-c", r#"read _ < "$1""#, "sh"])
                .arg(&go)
                .stdin(Stdio::null()),
        );
        Followed { child, go }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// Lets it exit, and reaps it.
    fn end(mut self) {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&self.go)
            .unwrap()
            .write_all(b"\n")
            .unwrap();
        assert!(wait_child(&mut self.child).success());
    }
}

impl Drop for Followed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `withlock -n NAME -- true` gets the lock now.
fn free(env: &Env, name: &str) -> bool {
    let out = env.withlock().args(["-n", name, "--", "true"]).output();
    match out.status.code() {
        Some(0) => true,
        Some(75) => false,
        other => panic!("{other:?}: {}", stderr(&out)),
    }
}

fn hold(env: &Env, name: &str, followed: &Followed) {
    // output() reads stdout and stderr to their end: it would hang if the
    // holder kept them open, as `$(withlock hold ...)` would.
    let out = env
        .withlock()
        .args(["hold", name, "--until-exit", &followed.pid()])
        .output();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
}

fn held_by_someone(path: &Path) -> bool {
    !holding(path).is_empty()
}

#[test]
fn a_hold_keeps_the_lock_until_its_pid_exits_and_is_listed_with_it() {
    let env = Env::new();
    let file = env.lock_file("d");
    let followed = Followed::start(&env, "f");
    hold(&env, "d", &followed);
    assert!(held_by_someone(&file));
    assert!(!free(&env, "d"), "the hold keeps the lock between commands");

    let out = env.withlock().args(["--list", "--json", "d"]).output();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let holder = &doc[0]["holders"][0];
    assert_eq!(holder["follows"], followed.child.id(), "{doc}");
    let table = env.withlock().args(["--list", "d"]).output();
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(
        table.contains(&format!("hold d --until-exit {}", followed.pid())),
        "{table}"
    );

    followed.end();
    // The followed process has exited and been reaped: the holder, woken
    // by its pidfd, lets go.
    wait_for("the hold to end with its process", || {
        !held_by_someone(&file)
    });
    assert!(free(&env, "d"));
}

#[test]
fn release_ends_a_hold_before_it_returns() {
    let env = Env::new();
    let followed = Followed::start(&env, "f");
    hold(&env, "d", &followed);
    assert!(!free(&env, "d"));
    env.withlock().args(["release", "d"]).assert().code(0);
    assert!(free(&env, "d"), "the lock is free once release returns");
    let out = env.withlock().args(["release", "d"]).output();
    assert_eq!(out.status.code(), Some(64), "nothing left to release");
    assert!(
        stderr(&out).contains("no withlock hold of d"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_hold_of_several_locks_takes_the_options_of_a_run() {
    let env = Env::new();
    let followed = Followed::start(&env, "f");
    let out = env
        .withlock()
        .args([
            "-w",
            "5",
            "hold",
            "a",
            "b=shared",
            "--until-exit",
            &followed.pid(),
        ])
        .output();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!free(&env, "a"));
    env.withlock()
        .args(["-n", "-s", "b", "--", "true"])
        .assert()
        .code(0);
    // A hold that cannot have its locks says so as a run would.
    let other = Followed::start(&env, "g");
    let out = env
        .withlock()
        .args(["-n", "hold", "a", "--until-exit", &other.pid()])
        .output();
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    assert!(stderr(&out).contains("a is busy"), "{}", stderr(&out));
    env.withlock().args(["release", "b"]).assert().code(0);
    assert!(free(&env, "a"), "a release ends the whole hold");
}

/// Needs root. Alice's hold can be released by Alice or root, not Bob.
#[test]
fn another_users_release_is_refused_and_roots_works() {
    ensure_user(ALICE);
    ensure_user(BOB);
    let env = Env::new();
    let followed = Followed::start(&env, "f");
    let out = env
        .withlock()
        .as_user(ALICE)
        .args(["hold", "d", "--until-exit", &followed.pid()])
        .output();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = env.withlock().as_user(BOB).args(["release", "d"]).output();
    assert_eq!(out.status.code(), Some(77), "{}", stderr(&out));
    assert!(stderr(&out).contains(ALICE), "{}", stderr(&out));
    assert!(!free(&env, "d"), "Bob's release let go of Alice's hold");
    env.withlock().args(["release", "d"]).assert().code(0);
    assert!(free(&env, "d"));
}

#[test]
fn bad_holds_and_releases_are_refused_and_take_nothing() {
    let env = Env::new();
    let mut gone = spawn(Command::new("true").stdin(Stdio::null()));
    let gone_pid = gone.id().to_string();
    assert!(wait_child(&mut gone).success());
    let followed = Followed::start(&env, "f");
    let cases: [&[&str]; 8] = [
        &["hold", "d", "--until-exit", &gone_pid],
        &[
            "--time-limit",
            "5",
            "hold",
            "d",
            "--until-exit",
            &followed.pid(),
        ],
        &[
            "--once-per",
            "3600",
            "hold",
            "d",
            "--until-exit",
            &followed.pid(),
        ],
        &["hold", "d", "--until-exit", "0"],
        &["hold", "d", "--until-exit", "x"],
        &["hold", "d"],
        &["--until-exit", &followed.pid(), "d", "--", "true"],
        &["release", "d", "--until-exit", &followed.pid()],
    ];
    for args in cases {
        let out = env.withlock().args(args).output();
        assert_eq!(out.status.code(), Some(64), "{args:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out).lines().count(),
            1,
            "{args:?}: {}",
            stderr(&out)
        );
    }
    assert!(
        !env.lock_file("d").exists(),
        "nothing was locked or written"
    );
}

#[test]
fn a_holder_that_dies_releases_everything() {
    let env = Env::new();
    let file = env.lock_file("d");
    let followed = Followed::start(&env, "f");
    hold(&env, "d", &followed);
    let holders = holding(&file);
    assert_eq!(holders.len(), 1, "{holders:?}");
    crate::support::signal(holders[0], nix::sys::signal::Signal::SIGKILL);
    wait_for("the kernel to drop the dead holder's lock", || {
        !held_by_someone(&file)
    });
    assert!(free(&env, "d"));
    let out = env.withlock().args(["release", "d"]).output();
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
}

/// Needs root. Bob listens on a name made like a hold's for root's lock
/// and says yes to everything: a release does not believe him (his pid
/// holds nothing on the lock file), so it neither reports his "hold"
/// released nor misses root's real one.
#[test]
fn a_stranger_listening_on_a_forged_hold_name_is_not_believed() {
    ensure_user(BOB);
    let env = Env::new();
    let lock =
        withlock::AnyLock::File(withlock::FileLock::named("d", Some(&env.lock_dir())).unwrap());
    let prefix = withlock::hold::prefix_for(&withlock::LockKey::of(&lock));
    let ready = env.file("impostor.ready");
    let impostor = "import socket, sys\n\
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n\
        s.bind('\\0' + sys.argv[1])\n\
        s.listen(8)\n\
        open(sys.argv[2], 'w').close()\n\
        while True:\n\
        \x20   c, _ = s.accept()\n\
        \x20   c.recv(1)\n\
        \x20   c.sendall(b'k')\n\
        \x20   c.close()\n";
    let mut bob = spawn(
        crate::support::command_as(BOB, "python3")
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .args(["-c", impostor])
            .arg(format!("{prefix}1/1"))
            .arg(&ready)
            .stdin(Stdio::null()),
    );
    wait_for("the impostor to listen", || ready.exists());
    let out = env.withlock().args(["release", "d"]).output();
    assert_eq!(
        out.status.code(),
        Some(64),
        "believed the impostor: {}",
        stderr(&out)
    );

    let followed = Followed::start(&env, "f");
    hold(&env, "d", &followed);
    env.withlock().args(["release", "d"]).assert().code(0);
    assert!(free(&env, "d"), "the real hold was released");
    let _ = bob.kill();
    let _ = bob.wait();
}
