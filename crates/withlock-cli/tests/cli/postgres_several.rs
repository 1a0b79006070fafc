//! `--max N` and several locks in one call over PostgreSQL (`--url`), the
//! server-side versions of `fairness.rs` and `several_locks.rs`: never more
//! than N commands at once, waiters in arrival order, `-n` and `-w` giving
//! up without leaving anything behind; several locks all held or none, each
//! in its own mode, in one global order. Every step waits for server state
//! or a file, never for time to pass.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use nix::sys::signal::Signal;
use withlock::pg::advisory_key;
use withlock::pg::semaphore::{IntPair, MAX_SLOTS, gate_key, slot_key};

use crate::postgres::PgEnv;
use crate::support::{Env, finish, lines, signal, spawn, storm, wait_child, wait_for};

/// Advisory locks on the two-int4 key `key`: (granted, waiting).
fn on_pair(pg: &PgEnv, key: IntPair) -> (i64, i64) {
    withlock_pg_testing::on_pair(&mut pg.server.client(), (key.0, key.1))
}

/// Requests in the line of the semaphore `name`: the gate's holder (the
/// head, waiting for a place) and those waiting for the gate.
fn in_line(pg: &PgEnv, name: &str) -> i64 {
    let (held, waiting) = on_pair(pg, gate_key(name));
    held + waiting
}

/// The head's helper sessions waiting for places 1..=max.
fn helpers_waiting(pg: &PgEnv, name: &str, max: u32) -> i64 {
    (1..=max).map(|i| on_pair(pg, slot_key(name, i)).1).sum()
}

/// Advisory requests waiting on the server, of any kind.
fn anything_waiting(pg: &PgEnv) -> i64 {
    pg.server
        .client()
        .query_one(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
            &[],
        )
        .unwrap()
        .get(0)
}

/// Starts `withlock --max MAX NAME`, its command appending `tag` to `log`,
/// and returns once it is request number `place` in the line (the first
/// once its helpers wait on every place).
fn queue(pg: &PgEnv, max: u32, name: &str, tag: &str, log: &Path, place: i64) -> Child {
    let max_arg = max.to_string();
    let run = pg
        .withlock()
        .args(["--max", &max_arg, name, "--", "sh", "-c"])
        .arg(r#"echo "$0" >> "$1""#)
        .arg(tag)
        .arg(log);
    let child = run.spawn();
    wait_for(&format!("{tag} in line"), || {
        in_line(pg, name) == place && helpers_waiting(pg, name, max) == i64::from(max)
    });
    child
}

/// Each command counts itself in and out under a flock, records the most
/// that ever ran at once, and stays until that most has reached `$2` (the
/// limit), so that with enough clients the limit is reached for certain
/// and a fourth one let in would be seen. A limit never reached fails the
/// command after 30 s.
pub(crate) const COUNT: &str = r#"
c="$1"
flock "$c/count.lock" sh -c 'n=$(($(cat "$0/running") + 1)); echo $n > "$0/running"
  if [ $n -gt $(cat "$0/max") ]; then echo $n > "$0/max"; fi' "$c"
tries=0
while [ "$(cat "$c/max")" -lt "$2" ]; do
  tries=$((tries + 1)); [ $tries -gt 3000 ] && exit 1; sleep 0.01
done
flock "$c/count.lock" sh -c 'echo $(($(cat "$0/running") - 1)) > "$0/running"' "$c"
"#;

/// Runs `clients` shell loops that each take `sem` at `url` with
/// `--max max`, `rounds` times, with [`COUNT`] as the command, and waits
/// for them all; returns the directory holding the counts (`running`, and
/// `max`, the most that ran at once).
pub(crate) fn max_storm(
    env: &Env,
    url: impl std::fmt::Display,
    clients: usize,
    rounds: usize,
    max: u32,
) -> PathBuf {
    let counts = env.file("counts");
    fs::create_dir(&counts).unwrap();
    fs::write(counts.join("running"), "0\n").unwrap();
    fs::write(counts.join("max"), "0\n").unwrap();
    let count = env.file("count.sh");
    fs::write(&count, COUNT).unwrap();
    let runners: Vec<_> = (0..clients)
        .map(|_| {
            let script = format!(
                "for i in $(seq {rounds}); do {} --url {url} --max {max} sem -- sh {} \"$1\" \
                 {max} || exit 1; done",
                env.bin().display(),
                count.display()
            );
            let mut command = Command::new("sh");
            command.args(["-c", &script, "sh"]).arg(&counts);
            spawn(&mut command)
        })
        .collect();
    finish(runners);
    counts
}

#[test]
fn a_max_storm_never_lets_more_than_n_run_at_once() {
    let pg = PgEnv::new();
    let counts = max_storm(&pg.env, pg.server.url(), 8, 3, 3);
    let read = |name: &str| -> u32 {
        fs::read_to_string(counts.join(name))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(read("running"), 0);
    assert_eq!(
        read("max"),
        3,
        "at most this many ran at once under --max 3"
    );
    wait_for("nothing left waiting after the storm", || {
        anything_waiting(&pg) == 0
    });
}

/// Two places, both held; six waiters arrive one at a time; one place is
/// freed and passed from each waiter to the next: they run in arrival
/// order while the other holder still runs.
#[test]
fn max_waiters_run_in_arrival_order() {
    let pg = PgEnv::new();
    let log = pg.env.file("log");
    let kept = pg.env.hold(pg.withlock().args(["--max", "2", "m"]), "kept");
    let freed = pg
        .env
        .hold(pg.withlock().args(["--max", "2", "m"]), "freed");
    let tags: Vec<String> = (0..6).map(|i| i.to_string()).collect();
    let waiters: Vec<Child> = tags
        .iter()
        .enumerate()
        .map(|(i, tag)| queue(&pg, 2, "m", tag, &log, i as i64 + 1))
        .collect();
    assert!(freed.release().success());
    finish(waiters);
    assert_eq!(lines(&log), tags);
    assert!(kept.release().success());
}

#[test]
fn max_with_no_wait_or_a_limit_gives_up_leaving_nothing_behind() {
    let pg = PgEnv::new();
    let ran = pg.env.file("ran");
    let holders: Vec<_> = (0..3)
        .map(|i| {
            let run = pg.withlock().args(["--max", "3", "m"]);
            pg.env.hold(run, &format!("h{i}"))
        })
        .collect();
    for options in [&["-n"][..], &["-w", "0.3"][..]] {
        let out = pg
            .withlock()
            .args(["--max", "3"])
            .args(options)
            .args(["m", "--", "touch"])
            .arg(&ran)
            .output();
        assert_eq!(out.status.code(), Some(75), "{options:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(&format!("pid {}", holders[0].pid())), "{err}");
        assert!(!ran.exists(), "ran with {options:?}");
        // Helper sessions end a moment after they are told to.
        wait_for(&format!("nothing left waiting after {options:?}"), || {
            anything_waiting(&pg) == 0
        });
        assert_eq!(on_pair(&pg, gate_key("m")), (0, 0));
    }
    // An exclusive request waits for the --max holders, as locally.
    pg.withlock()
        .args(["-n", "m", "--", "true"])
        .assert()
        .code(75);
    let mut holders = holders.into_iter();
    assert!(holders.next().unwrap().release().success());
    pg.withlock()
        .args(["--max", "3", "-n", "m", "--", "touch"])
        .arg(&ran)
        .assert()
        .code(0);
    assert!(ran.exists());
}

#[test]
fn a_killed_head_waiter_stalls_nobody() {
    let pg = PgEnv::new();
    let log = pg.env.file("log");
    let holder = pg.env.hold(pg.withlock().args(["--max", "1", "k"]), "h");
    let mut head = queue(&pg, 1, "k", "killed", &log, 1);
    let next = queue(&pg, 1, "k", "next", &log, 2);
    signal(head.id() as i32, Signal::SIGKILL);
    wait_child(&mut head);
    assert!(holder.release().success());
    finish(vec![next]);
    assert_eq!(lines(&log), ["next"]);
    wait_for("the killed waiter's sessions gone", || {
        anything_waiting(&pg) == 0
    });
}

#[test]
fn the_listing_shows_max_holders_as_such_and_the_line_as_waiters_in_arrival_order() {
    let pg = PgEnv::new();
    let log = pg.env.file("log");
    let holder = pg.env.hold(pg.withlock().args(["--max", "1", "m"]), "h");
    let head = queue(&pg, 1, "m", "head", &log, 1);
    let next = queue(&pg, 1, "m", "next", &log, 2);
    // A plain shared holder is a holder too, just not of a place.
    let reader = pg.env.hold(pg.withlock().args(["-s", "m"]), "r");

    let out = pg.withlock().args(["--list", "--json", "m"]).output();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = &doc[0];
    assert_eq!(m["mode"], "max", "{m}");
    let pids = |list: &serde_json::Value| -> Vec<(i64, String)> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["pid"].as_i64().unwrap(),
                    p["mode"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let holders = pids(&m["holders"]);
    assert_eq!(
        holders,
        [
            (i64::from(holder.pid()), "max".to_owned()),
            (i64::from(reader.pid()), "shared".to_owned())
        ],
        "{m}"
    );
    assert_eq!(
        pids(&m["waiters"]),
        [
            (i64::from(head.id()), "max".to_owned()),
            (i64::from(next.id()), "max".to_owned())
        ],
        "arrival order: {m}"
    );
    let sinces = m["holders"]
        .as_array()
        .unwrap()
        .iter()
        .chain(m["waiters"].as_array().unwrap());
    assert!(sinces.clone().all(|p| p["since"].is_string()), "{m}");

    let out = pg.withlock().args(["--list", "m"]).output();
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .take(4)
        .map(|l| l.split_whitespace().take(3).collect())
        .collect();
    assert_eq!(
        rows,
        [
            ["m", "held", "max"],
            ["m", "held", "shared"],
            ["m", "waiting", "max"],
            ["m", "waiting", "max"]
        ],
        "{table}"
    );

    // The busy message of a --max request says what the holder holds.
    let out = pg
        .withlock()
        .args(["--max", "1", "-n", "m", "--", "true"])
        .output();
    assert_eq!(out.status.code(), Some(75));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("held (--max) by "), "{err}");
    assert!(err.contains(&format!("pid {} ", holder.pid())), "{err}");

    assert!(reader.release().success());
    assert!(holder.release().success());
    finish(vec![head, next]);
    assert_eq!(lines(&log), ["head", "next"]);
}

#[test]
fn max_above_the_cap_is_refused_with_64() {
    let pg = PgEnv::new();
    let too_many = (MAX_SLOTS + 1).to_string();
    let out = pg
        .withlock()
        .args(["--max", &too_many, "m", "--", "true"])
        .output();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains(&MAX_SLOTS.to_string()), "{err}");
}

/// The two names in the global order (PostgreSQL locks by advisory key).
fn in_order(a: &'static str, b: &'static str) -> [&'static str; 2] {
    if advisory_key(a) <= advisory_key(b) {
        [a, b]
    } else {
        [b, a]
    }
}

#[test]
fn several_locks_are_all_held_while_the_command_runs() {
    let pg = PgEnv::new();
    let holder = pg.env.hold(pg.withlock().args(["a", "b"]), "h");
    for name in ["a", "b"] {
        pg.withlock()
            .args(["-n", "-s", name, "--", "true"])
            .assert()
            .code(75);
    }
    assert!(holder.release().success());
    pg.withlock()
        .args(["-n", "b", "a", "--", "true"])
        .assert()
        .code(0);
}

#[test]
fn a_busy_lock_means_none_is_taken_and_nothing_runs() {
    let pg = PgEnv::new();
    let [first, second] = in_order("a", "b");
    let marker = pg.env.file("ran");
    let holder = pg.env.hold(pg.withlock().arg(second), "h");
    for options in [&["-n"][..], &["-w", "0.2"][..]] {
        pg.withlock()
            .args(options)
            .args([first, second, "--", "touch"])
            .arg(&marker)
            .assert()
            .code(75);
        assert!(!marker.exists(), "the command ran with {options:?}");
        pg.withlock()
            .args(["-n", first, "--", "true"])
            .assert()
            .code(0);
        wait_for("nothing left waiting", || anything_waiting(&pg) == 0);
    }
    // A waiter holds the first while it waits for the second; stopped, it
    // lets the first go.
    let mut waiter = pg
        .withlock()
        .args([second, first, "--", "touch"])
        .arg(&marker)
        .spawn();
    pg.wait_waiting(second, 1);
    pg.withlock()
        .args(["-n", first, "--", "true"])
        .assert()
        .code(75);
    signal(waiter.id() as i32, Signal::SIGTERM);
    assert_eq!(wait_child(&mut waiter).code(), Some(143));
    assert!(!marker.exists());
    wait_for("the first lock free again", || {
        pg.withlock()
            .args(["-n", first, "--", "true"])
            .output()
            .status
            .success()
    });
    assert!(holder.release().success());
}

#[test]
fn each_lock_can_have_its_own_mode() {
    let pg = PgEnv::new();
    let holder = pg
        .env
        .hold(pg.withlock().args(["build", "artifacts=shared"]), "h");
    for shared in [&["artifacts=shared"][..], &["-s", "artifacts"][..]] {
        pg.withlock()
            .arg("-n")
            .args(shared)
            .args(["--", "true"])
            .assert()
            .code(0);
    }
    for excluded in ["build", "artifacts", "build=shared", "artifacts=exclusive"] {
        pg.withlock()
            .args(["-n", excluded, "--", "true"])
            .assert()
            .code(75);
    }
    assert!(holder.release().success());
}

/// Clients loop taking the same two locks named in opposite orders (and
/// modes of their own): they all finish, losing no update.
#[test]
fn opposite_orders_never_deadlock_under_a_storm() {
    let pg = PgEnv::new();
    let orders = ["a b", "b a", "b=exclusive a", "a=exclusive b", "b a"];
    let rounds = 12;
    let lockers: Vec<String> = orders
        .iter()
        .map(|locks| {
            format!(
                "{} --url {} {locks} --",
                pg.env.bin().display(),
                pg.server.url()
            )
        })
        .collect();
    let count = storm(&pg.env, &lockers, rounds);
    assert_eq!(count, u64::from(rounds) * orders.len() as u64);
}
