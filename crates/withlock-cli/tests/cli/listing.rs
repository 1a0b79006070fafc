//! `withlock --list`: the table and the JSON, for locks that are free,
//! held, shared, waited on, and held by another user.

use serde_json::Value;

use crate::support::{ALICE, BOB, Env, ensure_user, require_root, wait_blocked};

fn list_json(env: &Env, names: &[&str]) -> Value {
    let out = env
        .withlock()
        .args(["--list", "--json"])
        .args(names)
        .assert()
        .code(0);
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

fn list_table(env: &Env) -> String {
    let out = env.withlock().arg("--list").assert().code(0);
    String::from_utf8(out.get_output().stdout.clone()).unwrap()
}

#[test]
fn a_free_lock() {
    let env = Env::new();
    env.withlock().args(["idle", "--", "true"]).assert().code(0);
    let doc = list_json(&env, &[]);
    assert_eq!(doc[0]["name"], "idle");
    assert_eq!(doc[0]["state"], "free");
    assert_eq!(doc[0]["mode"], Value::Null);
    assert_eq!(doc[0]["holders"], serde_json::json!([]));
    let table = list_table(&env);
    let row = table.lines().nth(1).unwrap();
    assert!(row.starts_with("idle  ") && row.contains("free"), "{table}");
}

#[test]
fn a_held_lock_with_a_waiter_in_queue_order() {
    let env = Env::new();
    let holder = env.hold(env.withlock().arg("busy"), "h");
    let mut first = env.withlock().args(["-q", "busy", "--", "true"]).spawn();
    wait_blocked(&env.lock_file("busy"), first.id() as i32);
    let mut second = env
        .withlock()
        .args(["-q", "-s", "busy", "--", "true"])
        .spawn();
    wait_blocked(&env.lock_file("busy"), second.id() as i32);

    let doc = list_json(&env, &["busy"]);
    let lock = &doc[0];
    assert_eq!(
        (lock["state"].as_str(), lock["mode"].as_str()),
        (Some("held"), Some("exclusive"))
    );
    let holder_json = &lock["holders"][0];
    assert_eq!(holder_json["pid"], holder.pid());
    assert_eq!(holder_json["user"], "root");
    assert_eq!(holder_json["command"][1], "busy");
    let since = holder_json["since"].as_str().unwrap();
    assert!(humantime::parse_rfc3339(since).is_ok(), "{since}");
    let waiters: Vec<i64> = lock["waiters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["pid"].as_i64().unwrap())
        .collect();
    assert_eq!(waiters, [first.id() as i64, second.id() as i64]);
    assert!(
        lock["waiters"][0]["since"].is_string(),
        "waiters say since when they wait"
    );

    let table = list_table(&env);
    let rows: Vec<&str> = table.lines().collect();
    assert!(
        rows[1].contains("held") && rows[1].contains(&holder.pid().to_string()),
        "{table}"
    );
    assert!(
        rows[2].contains("waiting") && rows[2].contains(&first.id().to_string()),
        "{table}"
    );
    assert!(
        rows[3].contains("waiting") && rows[3].contains("shared"),
        "{table}"
    );

    assert!(holder.release().success());
    assert!(crate::support::wait_child(&mut first).success());
    assert!(crate::support::wait_child(&mut second).success());
}

#[test]
fn a_shared_lock_lists_every_holder() {
    let env = Env::new();
    let one = env.hold(env.withlock().args(["-s", "read"]), "one");
    let two = env.hold(env.withlock().args(["-s", "read"]), "two");
    let doc = list_json(&env, &["read"]);
    assert_eq!(doc[0]["mode"], "shared");
    let mut pids: Vec<i64> = doc[0]["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["pid"].as_i64().unwrap())
        .collect();
    pids.sort();
    let mut expected = vec![one.pid() as i64, two.pid() as i64];
    expected.sort();
    assert_eq!(pids, expected);
    assert!(one.release().success());
    assert!(two.release().success());
}

/// Needs root: runs the holder as another user.
#[test]
fn a_lock_held_by_another_user() {
    require_root();
    ensure_user(ALICE);
    ensure_user(BOB);
    let env = Env::new();
    let holder = env.hold(env.withlock().arg("theirs").as_user(ALICE), "h");
    let doc = list_json(&env, &["theirs"]);
    assert_eq!(doc[0]["holders"][0]["user"], ALICE);
    assert_eq!(doc[0]["hidden"], false);
    let table = list_table(&env);
    assert!(table.contains(ALICE), "{table}");
    // And seen from a third user's side too.
    let out = env.withlock().args(["--list", "--json"]).as_user(BOB);
    let doc: Value = serde_json::from_slice(&out.assert().code(0).get_output().stdout).unwrap();
    assert_eq!(doc[0]["holders"][0]["user"], ALICE);
    assert!(holder.release().success());
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let env = Env::new();
    env.withlock().args(["c", "--", "true"]).assert().code(0);
    let plain = list_table(&env);
    assert!(!plain.contains('\x1b'), "no colour into a pipe: {plain:?}");
    let mut run = env.withlock().args(["--list"]);
    run.env("CLICOLOR_FORCE", "1");
    let forced = String::from_utf8(run.assert().code(0).get_output().stdout.clone()).unwrap();
    assert!(forced.contains('\x1b'), "colour when forced: {forced:?}");
    let mut run = env.withlock().args(["--list"]);
    run.env("CLICOLOR_FORCE", "1");
    run.env("NO_COLOR", "1");
    let no_color = String::from_utf8(run.assert().code(0).get_output().stdout.clone()).unwrap();
    assert!(!no_color.contains('\x1b'), "NO_COLOR wins: {no_color:?}");
}

#[test]
fn verbose_reports_the_wait_and_the_hold() {
    let env = Env::new();
    let out = env
        .withlock()
        .args(["-v", "v", "--", "true"])
        .assert()
        .code(0);
    let err = crate::support::stderr(out.get_output());
    assert!(
        err.contains("withlock: acquired v (exclusive) after waiting "),
        "{err}"
    );
    assert!(
        err.contains("withlock: released v after holding it "),
        "{err}"
    );
}

/// The "released" line says how the command ended and how long it ran.
#[test]
fn verbose_says_how_the_command_ended() {
    let env = Env::new();
    for (script, code, ended) in [
        ("exit 3", 3, "the command exited with status 3 after "),
        (
            "kill -TERM $$",
            143,
            "the command was killed by SIGTERM after ",
        ),
    ] {
        let out = env
            .withlock()
            .args(["-v", "v", "--", "sh", "-c", script])
            .assert()
            .code(code);
        let err = crate::support::stderr(out.get_output());
        let released = err
            .lines()
            .find(|line| line.starts_with("withlock: released v after holding it "))
            .unwrap_or_else(|| panic!("{err}"));
        let (_, ran) = released
            .split_once(ended)
            .unwrap_or_else(|| panic!("{released}"));
        assert!(ran.ends_with('s') && !ran.contains(' '), "{released}");
    }
}

/// Needs root: mounts a /proc with hidepid=2 in a private mount namespace,
/// where another user may not look into root's processes.
#[test]
fn a_user_who_cannot_see_the_holder_is_told_so() {
    require_root();
    ensure_user(BOB);
    let env = Env::new();
    let holder = env.hold(env.withlock().arg("secret"), "h");
    let script = format!(
        "mount -t proc -o hidepid=2 proc /proc && exec setpriv --reuid {BOB} --regid {BOB} \
         --init-groups -- {} --dir {} --list \"$@\"",
        env.bin().display(),
        env.lock_dir().display()
    );
    let list = |extra: &[&str]| {
        let mut command = std::process::Command::new("unshare");
        command
            .args([
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                &script,
                "sh",
            ])
            .args(extra);
        let out = crate::support::output(&mut command);
        assert!(out.status.success(), "{}", crate::support::stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    let doc: Value = serde_json::from_str(&list(&["--json"])).unwrap();
    let seen = &doc[0]["holders"][0];
    assert_eq!(
        seen["pid"],
        holder.pid(),
        "the pid still shows through /proc/locks"
    );
    assert_eq!(
        (seen["user"].clone(), seen["command"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(doc[0]["hidden"], true);
    let table = list(&[]);
    assert!(table.contains("hidden from this user"), "{table}");
    assert!(holder.release().success());
}

/// A name that was never used is free, but the listing says there is
/// nothing at its path, so a typo or a wrong `--dir` shows.
#[test]
fn a_name_never_used_is_said_to_be_so() {
    let env = Env::new();
    env.withlock().args(["used", "--", "true"]).assert().code(0);
    let doc = list_json(&env, &["used", "nothere"]);
    assert_eq!(
        (&doc[0]["state"], &doc[0]["exists"]),
        (&"free".into(), &true.into())
    );
    assert_eq!(
        (&doc[1]["state"], &doc[1]["exists"]),
        (&"free".into(), &false.into())
    );
    let out = env.withlock().args(["--list", "nothere"]).assert().code(0);
    let table = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let row = table.lines().nth(1).unwrap();
    let path = env.lock_file("nothere");
    assert!(row.starts_with("nothere  free"), "{table}");
    assert!(
        row.ends_with(&format!(
            "(nothing at {}: never used, or removed)",
            path.display()
        )),
        "{table}"
    );
}

/// `*.lock` entries withlock would not lock are listed as skipped, with
/// what they are, not left out.
#[test]
fn entries_that_are_not_lock_files_are_listed_as_skipped() {
    let env = Env::new();
    env.withlock().args(["real", "--", "true"]).assert().code(0);
    let dir = env.lock_dir();
    std::fs::create_dir(dir.join("dir.lock")).unwrap();
    std::os::unix::fs::symlink(env.lock_file("real"), dir.join("link.lock")).unwrap();
    nix::unistd::mkfifo(
        &dir.join("pipe.lock"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let doc = list_json(&env, &[]);
    let rows: Vec<(&str, &str, Option<&str>)> = doc
        .as_array()
        .unwrap()
        .iter()
        .map(|lock| {
            (
                lock["name"].as_str().unwrap(),
                lock["state"].as_str().unwrap(),
                lock["skipped"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("dir", "skipped", Some("a directory, not a lock file")),
            (
                "link",
                "skipped",
                Some("a symbolic link, which withlock does not follow, not a lock file")
            ),
            ("pipe", "skipped", Some("a FIFO, not a lock file")),
            ("real", "free", None),
        ]
    );
    let table = list_table(&env);
    let pipe = table.lines().find(|l| l.starts_with("pipe ")).unwrap();
    assert!(pipe.contains("skipped"), "{table}");
    assert!(
        pipe.ends_with(&format!(
            "({}: a FIFO, not a lock file)",
            dir.join("pipe.lock").display()
        )),
        "{table}"
    );
}

/// Listing a lock directory that is missing, or is a file, is refused as
/// a run with it is: 78, with the fix, not a bare system error.
#[test]
fn listing_a_missing_or_unusable_directory_is_78_with_the_fix() {
    let env = Env::new();
    let file = env.file("a-file");
    std::fs::write(&file, "").unwrap();
    for (dir, reason) in [
        (env.file("missing"), "does not exist: create it (mkdir -p"),
        (file, "is not a directory: choose a directory with --dir"),
    ] {
        let run = env.withlock().arg("--dir").arg(&dir);
        let listed = run.arg("--list").assert().code(78).get_output().clone();
        let listed = crate::support::stderr(&listed);
        assert!(listed.contains(reason), "{listed}");
        let ran = env
            .withlock()
            .arg("--dir")
            .arg(&dir)
            .args(["x", "--", "true"]);
        let ran = ran.assert().code(78).get_output().clone();
        assert_eq!(listed, crate::support::stderr(&ran));
    }
}
