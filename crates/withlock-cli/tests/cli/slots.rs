//! Slots (issue 16, point 1): a `--max N` holder's command gets its place,
//! 0 to N-1, unique among the current holders (`WITHLOCK_SLOT`,
//! `WITHLOCK_SLOT_INDEX`), `--slots a,b,c` names the places, a freed place
//! goes to the next request in arrival order, and `--list` shows each
//! holder's. On this machine, on a PostgreSQL server and on etcd.

use std::fs;
use std::process::Child;

use serde_json::Value;

use crate::etcd::EtcdEnv;
use crate::postgres::PgEnv;
use crate::support::{Env, Holder, Run, lines, spawn, stderr, wait_child};

/// A holder's command: claims its slot's file in `$1` (refusing one that
/// another current holder has: `set -C`), records its slot and how many
/// holders it found at once, then gives the file back before it ends.
/// Until two holders have met (a `met` file, at most a minute), a holder
/// waits for another's slot file, so that holders surely run together
/// however fast the commands are next to the lock's round trips.
const CLAIM: &str = r#"d="$1"; s="$WITHLOCK_SLOT"
case "$s" in 0|1|2) ;; *) echo "slot '$s' out of range" >> "$d/errors"; exit 1 ;; esac
[ "$WITHLOCK_SLOT_INDEX" = "$s" ] || { echo "index $WITHLOCK_SLOT_INDEX for $s" >> "$d/errors"; exit 1; }
if ! ( set -C; echo $$ > "$d/slot-$s" ) 2>/dev/null; then echo "two holders in slot $s" >> "$d/errors"; exit 1; fi
set -- "$d"/slot-*; echo "$#" >> "$d/together"
n=0; while [ ! -e "$d/met" ] && [ $n -lt 6000 ]; do
  set -- "$d"/slot-*; if [ $# -gt 1 ]; then : > "$d/met"; fi; n=$((n+1)); sleep 0.01
done
echo "$s" >> "$d/used"
rm "$d/slot-$s""#;

/// `clients` clients, each running `rounds` times `<locker> sh -c CLAIM`
/// at once; then no two holders at one time had the same slot, every slot
/// was used, and some holders did run together.
fn storm_of_max_3(env: &Env, locker: &str, clients: usize, rounds: u32) {
    let dir = env.file("claims");
    fs::create_dir(&dir).unwrap();
    let runners: Vec<Child> = (0..clients)
        .map(|_| {
            let locked = format!("{locker} sh -c '{CLAIM}' sh \"$1\"");
            let script = format!("for i in $(seq {rounds}); do {locked} || exit 1; done");
            let mut command = std::process::Command::new("sh");
            command.args(["-c", &script, "sh"]).arg(&dir);
            spawn(&mut command)
        })
        .collect();
    for mut runner in runners {
        assert!(
            wait_child(&mut runner).success(),
            "a client failed: {:?}",
            lines(&dir.join("errors"))
        );
    }
    assert_eq!(lines(&dir.join("errors")), Vec::<String>::new());
    let used = lines(&dir.join("used"));
    assert_eq!(used.len(), clients * rounds as usize);
    for slot in ["0", "1", "2"] {
        assert!(used.iter().any(|s| s == slot), "slot {slot} never used");
    }
    let together = lines(&dir.join("together"));
    assert!(
        together.iter().any(|n| n != "1"),
        "no two holders ever ran together: the storm proved nothing"
    );
}

#[test]
fn a_storm_of_max_3_clients_never_gives_two_current_holders_one_slot() {
    let env = Env::new();
    let locker = format!(
        "{} --dir {} --max 3 pool --",
        env.bin().display(),
        env.lock_dir().display()
    );
    storm_of_max_3(&env, &locker, 8, 10);
}

/// Starts a holder of `pool` with `options` whose command first records
/// its `WITHLOCK_SLOT` and `WITHLOCK_SLOT_INDEX` in `<tag>.slot`.
fn hold_slot(env: &Env, run: Run, options: &[&str], tag: &str) -> Holder {
    let file = env.file(&format!("{tag}.slot"));
    let script = format!(
        r#"echo "$WITHLOCK_SLOT $WITHLOCK_SLOT_INDEX" > {} && exec "$@""#,
        file.display()
    );
    // The holder's own command (announce, then block) runs after `exec`.
    let run = run
        .args(options)
        .args(["pool", "--", "sh", "-c", &script, "sh"]);
    env.hold_with(run.command(), tag)
}

fn slot_of(env: &Env, tag: &str) -> String {
    fs::read_to_string(env.file(&format!("{tag}.slot")))
        .unwrap()
        .trim()
        .to_owned()
}

/// The slots `--list --json` shows for `pool`'s holders, by pid.
fn listed_slots(run: Run) -> Vec<(i64, Value)> {
    let out = run.args(["--list", "--json", "pool"]).output();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    doc[0]["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["pid"].as_i64().unwrap(), h["slot"].clone()))
        .collect()
}

/// Three named places: each holder gets a different name, with its index;
/// a freed place goes to the first request in line, the next to the one
/// behind it; `--list` shows each holder's slot.
fn named_slots_are_handed_out_and_reused_in_arrival_order(env: &Env, run: impl Fn() -> Run) {
    let options = ["--slots", "db-a,db-b,db-c"];
    let holders: Vec<Holder> = ["h0", "h1", "h2"]
        .iter()
        .map(|tag| hold_slot(env, run(), &options, tag))
        .collect();
    let mut seen: Vec<String> = ["h0", "h1", "h2"].iter().map(|t| slot_of(env, t)).collect();
    seen.sort();
    assert_eq!(seen, ["db-a 0", "db-b 1", "db-c 2"]);
    let mut listed = listed_slots(run());
    listed.sort_by_key(|(pid, _)| *pid);
    let mut expected: Vec<(i64, Value)> = ["h0", "h1", "h2"]
        .iter()
        .zip(&holders)
        .map(|(tag, holder)| {
            let index: i64 = slot_of(env, tag)
                .split(' ')
                .nth(1)
                .unwrap()
                .parse()
                .unwrap();
            (i64::from(holder.pid()), Value::from(index))
        })
        .collect();
    expected.sort_by_key(|(pid, _)| *pid);
    // A server lock lists the pid its client declares: withlock's too.
    assert_eq!(listed, expected, "--list shows each holder's slot");
    let table = String::from_utf8(run().arg("--list").output().stdout).unwrap();
    assert!(table.lines().next().unwrap().contains("SLOT"), "{table}");
    // Two waiters, in this order; each records its slot, then holds it
    // until its FIFO is written.
    let waiter = |tag: &str| {
        let fifo = env.fifo(&format!("{tag}.go"));
        let script = r#"echo "$WITHLOCK_SLOT" > "$1"; read _ < "$2""#;
        let child = run()
            .args(options)
            .args(["pool", "--", "sh", "-c", script, "sh"])
            .arg(env.file(&format!("{tag}.slot")))
            .arg(&fifo)
            .spawn();
        (child, fifo)
    };
    let first = waiter("first");
    wait_in_line(&run, 1);
    let second = waiter("second");
    wait_in_line(&run, 2);
    let slot_file = |tag: &str| {
        let file = env.file(&format!("{tag}.slot"));
        crate::support::wait_for(&format!("{tag} to run"), || {
            fs::read_to_string(&file).is_ok_and(|s| s.ends_with('\n'))
        });
        fs::read_to_string(&file).unwrap()
    };
    let mut holders: Vec<(String, Holder)> = ["h0", "h1", "h2"]
        .iter()
        .map(|t| slot_of(env, t))
        .zip(holders)
        .collect();
    let take = |holders: &mut Vec<(String, Holder)>, name: &str| {
        let at = holders
            .iter()
            .position(|(s, _)| s.starts_with(name))
            .unwrap();
        holders.remove(at).1
    };
    // Free db-b: the first in line gets it, and the second still waits.
    assert!(take(&mut holders, "db-b").release().success());
    assert_eq!(slot_file("first"), "db-b\n");
    assert!(
        !env.file("second.slot").exists(),
        "the second jumped the line"
    );
    // Then db-a: the second gets it.
    assert!(take(&mut holders, "db-a").release().success());
    assert_eq!(slot_file("second"), "db-a\n");
    for (mut child, fifo) in [first, second] {
        fs::write(&fifo, "\n").unwrap();
        assert!(wait_child(&mut child).success());
    }
    for (_, holder) in holders {
        assert!(holder.release().success());
    }
}

/// Waits until `count` requests wait in `pool`'s line, as `--list` shows it.
fn wait_in_line(run: &impl Fn() -> Run, count: usize) {
    crate::support::wait_for(&format!("{count} waiter(s) on pool"), || {
        let out = run().args(["--list", "--json", "pool"]).output();
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        doc[0]["waiters"].as_array().map_or(0, Vec::len) == count
    });
}

#[test]
fn named_slots_on_this_machine() {
    let env = Env::new();
    named_slots_are_handed_out_and_reused_in_arrival_order(&env, || env.withlock());
}

#[test]
fn a_storm_and_named_slots_on_a_server() {
    let pg = PgEnv::new();
    let locker = format!(
        "{} --url {} --max 3 pool --",
        pg.env.bin().display(),
        pg.server.url()
    );
    storm_of_max_3(&pg.env, &locker, 6, 4);
    named_slots_are_handed_out_and_reused_in_arrival_order(&pg.env, || pg.withlock());
}

#[test]
fn a_storm_and_named_slots_on_etcd() {
    let etcd = EtcdEnv::new();
    let locker = format!(
        "{} --url {} --max 3 pool --",
        etcd.env.bin().display(),
        etcd.etcd.url()
    );
    storm_of_max_3(&etcd.env, &locker, 6, 4);
    named_slots_are_handed_out_and_reused_in_arrival_order(&etcd.env, || etcd.withlock());
}

/// Slot i of a lock file is a lock on byte 2^45 + i.
const SLOT_BYTES: u64 = 1 << 45;

/// Needs root: another user who locks slot bytes of the lock file (anyone
/// who can open it can, as the queue's bytes) neither shares a slot with
/// a holder nor makes one up: the holder takes the next free slot, and
/// with every slot taken it gives its place back as busy (75), saying why,
/// instead of running without one.
#[test]
fn another_users_locks_on_slot_bytes_are_skipped_never_shared() {
    use crate::hostile_users::Squatter;
    crate::support::ensure_user(crate::support::BOB);
    let env = Env::new();
    env.withlock().args(["pool", "--", "true"]).assert().code(0);
    let file = env.lock_file("pool");
    let slot = |options: &[&str]| {
        env.withlock()
            .args(options)
            .args([
                "--max",
                "3",
                "pool",
                "--",
                "sh",
                "-c",
                "echo $WITHLOCK_SLOT",
            ])
            .output()
    };
    let squatter = Squatter::start(crate::support::BOB, &file, SLOT_BYTES, 1);
    let out = slot(&[]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1\n",
        "{}",
        stderr(&out)
    );
    drop(squatter);
    let squatter = Squatter::start(crate::support::BOB, &file, SLOT_BYTES, 3);
    let out = slot(&["-n"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(75), "{err}");
    assert!(
        err.contains("all 3 of its slots are taken from outside"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "the command ran");
    drop(squatter);
    // Gone, the slots are free again.
    assert_eq!(String::from_utf8_lossy(&slot(&[]).stdout), "0\n");
}

/// `--slots` with an empty or repeated name, or for a lock that cannot
/// have places: 64, one line naming the fix, and nothing runs.
#[test]
fn bad_slot_lists_are_refused_with_64_and_nothing_runs() {
    let env = Env::new();
    let marker = env.file("ran");
    for (slots, lock, cause) in [
        ("a,,c", "pool", "name 2 is empty"),
        ("", "pool", "name 1 is empty"),
        ("a,b,", "pool", "name 3 is empty"),
        ("a,b,a", "pool", "\"a\" is given twice"),
        ("a b,c", "pool", "holds a space"),
        (
            "a,b",
            "tcp:47110",
            "socket locks are one holder at a time: drop --slots",
        ),
    ] {
        let out = env
            .withlock()
            .args(["--slots", slots, lock, "--", "touch"])
            .arg(&marker)
            .output();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(64), "{slots:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{slots:?}: {err}");
        assert!(err.contains(cause), "{slots:?}: {err}");
        assert!(!marker.exists(), "{slots:?}: the command ran");
        assert!(
            !env.lock_file("pool").exists(),
            "{slots:?}: a lock file was made"
        );
    }
}
