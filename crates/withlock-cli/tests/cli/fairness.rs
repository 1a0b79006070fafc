//! Arrival order: waiters are served first come, first served, shared and
//! exclusive alike; an exclusive waiter is not starved by shared holders; a
//! killed or stopped waiter does not stall the queue; `--max N` never lets
//! N+1 in.
//! Every step waits for a real event (a process blocked in the kernel, a
//! file written), never for time to pass.

use std::fs;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command};

use nix::sys::signal::Signal;

use crate::support::{
    Env, Run, assert_sleeps_without_polling, finish, lines, output, signal, spawn, wait_blocked,
    wait_child, wait_for,
};

/// Starts withlock on lock `name` with `options`, its command appending
/// `tag` to `log`, and returns once it is blocked in the kernel.
fn queue(env: &Env, options: &[&str], name: &str, tag: &str, log: &Path) -> Child {
    let run: Run = env.withlock().args(options).args([name, "--", "sh", "-c"]);
    let child = run.arg(r#"echo "$0" >> "$1""#).arg(tag).arg(log).spawn();
    wait_blocked(&env.lock_file(name), child.id() as i32);
    child
}

#[test]
fn thirty_two_waiters_are_served_in_arrival_order() {
    let env = Env::new();
    let log = env.file("log");
    let holder = env.hold(env.withlock().arg("q"), "h");
    // Runs of shared requests between exclusive ones, of several lengths.
    let pattern = "xsxxssxsssxxsxssssxxsxsxxxssxsxx";
    let mut waiters = Vec::new();
    for (i, mode) in pattern.chars().enumerate() {
        let option = if mode == 's' { "-s" } else { "-x" };
        waiters.push(queue(&env, &[option], "q", &i.to_string(), &log));
    }
    assert!(holder.release().success());
    finish(waiters);
    let served: Vec<usize> = lines(&log).iter().map(|l| l.parse().unwrap()).collect();
    // Consecutive shared requests run together, in any order among
    // themselves; everything else keeps the arrival order.
    let mut expected_groups: Vec<Vec<usize>> = Vec::new();
    for (i, mode) in pattern.chars().enumerate() {
        let joins = mode == 's' && i > 0 && pattern.as_bytes()[i - 1] == b's';
        match expected_groups.last_mut() {
            Some(group) if joins => group.push(i),
            _ => expected_groups.push(vec![i]),
        }
    }
    let mut rest = served.as_slice();
    for group in expected_groups {
        assert!(rest.len() >= group.len(), "served {served:?}");
        let (head, tail) = rest.split_at(group.len());
        let mut head = head.to_vec();
        head.sort_unstable();
        assert_eq!(head, group, "served out of arrival order: {served:?}");
        rest = tail;
    }
    assert!(rest.is_empty());
}

/// Starts a shared holder of `name` that arrives after everyone before it.
fn late_reader(env: &Env, name: &str, tag: &str, log: &Path) -> Child {
    queue(env, &["-s"], name, tag, log)
}

#[test]
fn an_exclusive_waiter_is_not_starved_by_shared_holders() {
    let env = Env::new();
    let log = env.file("log");
    let readers: Vec<_> = (0..4)
        .map(|i| env.hold(env.withlock().args(["-s", "r"]), &format!("r{i}")))
        .collect();
    let writer = queue(&env, &["-x"], "r", "writer", &log);
    // Readers keep arriving while the first ones hold: with flock(2) alone
    // each would join the readers at once and the writer would wait for all.
    let late: Vec<Child> = (0..4)
        .map(|i| late_reader(&env, "r", &format!("late{i}"), &log))
        .collect();
    assert!(lines(&log).is_empty(), "nobody ran beside the readers");
    for reader in readers {
        assert!(reader.release().success());
    }
    let mut all = vec![writer];
    all.extend(late);
    finish(all);
    let served = lines(&log);
    assert_eq!(served.len(), 5);
    assert_eq!(served[0], "writer", "the writer went first: {served:?}");
}

#[test]
fn a_killed_waiter_does_not_stall_the_queue() {
    let env = Env::new();
    let log = env.file("log");
    let holder = env.hold(env.withlock().arg("k"), "h");
    let mut waiters: Vec<Child> = (0..5)
        .map(|i| queue(&env, &[], "k", &i.to_string(), &log))
        .collect();
    let mut killed = waiters.remove(2);
    signal(killed.id() as i32, Signal::SIGKILL);
    assert!(!wait_child(&mut killed).success());
    assert!(holder.release().success());
    finish(waiters);
    assert_eq!(lines(&log), ["0", "1", "3", "4"]);
}

#[test]
fn a_killed_shared_waiter_behind_a_writer_stalls_nobody() {
    let env = Env::new();
    let log = env.file("log");
    let holder = env.hold(env.withlock().arg("ks"), "h");
    let writer = queue(&env, &[], "ks", "writer", &log);
    let mut victim = queue(&env, &["-s"], "ks", "victim", &log);
    let reader = queue(&env, &["-s"], "ks", "reader", &log);
    signal(victim.id() as i32, Signal::SIGKILL);
    wait_child(&mut victim);
    assert!(holder.release().success());
    finish(vec![writer, reader]);
    assert_eq!(lines(&log), ["writer", "reader"]);
}

#[test]
fn max_lets_exactly_n_holders_in() {
    let env = Env::new();
    let holders: Vec<_> = (0..3)
        .map(|i| env.hold(env.withlock().args(["--max", "3", "m"]), &format!("m{i}")))
        .collect();
    env.withlock()
        .args(["--max", "3", "-n", "m", "--", "true"])
        .assert()
        .code(75);
    // An exclusive request waits for all of them.
    env.withlock()
        .args(["-n", "m", "--", "true"])
        .assert()
        .code(75);
    let log = env.file("log");
    let fourth = queue(&env, &["--max", "3"], "m", "fourth", &log);
    let mut holders = holders.into_iter();
    assert!(holders.next().unwrap().release().success());
    finish(vec![fourth]);
    assert_eq!(lines(&log), ["fourth"]);
    for holder in holders {
        assert!(holder.release().success());
    }
}

/// The younger of two `--max 2` holders leaves first: its place goes to
/// the next waiter at once, while the older holder still runs.
#[test]
fn a_place_freed_by_any_holder_goes_to_the_next_waiter() {
    let env = Env::new();
    let log = env.file("log");
    let older = env.hold(env.withlock().args(["--max", "2", "m"]), "older");
    let younger = env.hold(env.withlock().args(["--max", "2", "m"]), "younger");
    let mut next = queue(&env, &["--max", "2"], "m", "next", &log);
    assert!(younger.release().success());
    assert!(wait_child(&mut next).success());
    assert_eq!(lines(&log), ["next"], "it ran while the older holder held");
    assert!(older.release().success());
}

#[test]
fn a_semaphore_newcomer_does_not_pass_an_exclusive_waiter() {
    let env = Env::new();
    let log = env.file("log");
    let holder = env.hold(env.withlock().args(["--max", "2", "mx"]), "h");
    let writer = queue(&env, &[], "mx", "writer", &log);
    // One of two places is free, but the writer came first.
    env.withlock()
        .args(["--max", "2", "-n", "mx", "--", "true"])
        .assert()
        .code(75);
    let reader = queue(&env, &["--max", "2"], "mx", "newcomer", &log);
    assert!(holder.release().success());
    finish(vec![writer, reader]);
    assert_eq!(lines(&log), ["writer", "newcomer"]);
}

/// Each command counts itself in and out under a separate flock and
/// records the most that ever ran at once.
const COUNT: &str = r#"
c="$1"
flock "$c/count.lock" sh -c 'n=$(($(cat "$0/running") + 1)); echo $n > "$0/running"
  if [ $n -gt $(cat "$0/max") ]; then echo $n > "$0/max"; fi' "$c"
sleep 0.01
flock "$c/count.lock" sh -c 'echo $(($(cat "$0/running") - 1)) > "$0/running"' "$c"
"#;

#[test]
fn a_semaphore_storm_never_exceeds_its_limit() {
    let env = Env::new();
    let counts = env.file("counts");
    fs::create_dir(&counts).unwrap();
    fs::write(counts.join("running"), "0\n").unwrap();
    fs::write(counts.join("max"), "0\n").unwrap();
    let count = env.file("count.sh");
    fs::write(&count, COUNT).unwrap();
    let (clients, rounds) = (12, 6);
    let runners: Vec<_> = (0..clients)
        .map(|_| {
            let script = format!(
                "for i in $(seq {rounds}); do {} --max 3 sem -- sh {} \"$1\" || exit 1; done",
                env.bin().display(),
                count.display()
            );
            let mut command = Command::new("sh");
            command
                .args(["-c", &script, "sh"])
                .arg(&counts)
                .env("WITHLOCK_DIR", env.lock_dir());
            spawn(&mut command)
        })
        .collect();
    finish(runners);
    let read = |name: &str| -> u32 {
        fs::read_to_string(counts.join(name))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(read("running"), 0);
    let max = read("max");
    eprintln!("at most {max} ran at once under --max 3");
    assert!((1..=3).contains(&max), "{max} ran at once under --max 3");
}

#[test]
fn flock_and_withlock_still_exclude_each_other_with_a_queue() {
    let env = Env::new();
    let file = env.lock_file("f");
    let log = env.file("log");
    let flock_n = || output(Command::new("flock").arg("-n").arg(&file).arg("true"));

    let holder = env.hold(env.withlock().arg("f"), "w");
    let queued = queue(&env, &[], "f", "queued", &log);
    assert_eq!(flock_n().status.code(), Some(1), "flock(1) got in");
    assert!(holder.release().success());
    finish(vec![queued]);

    let flock_holder = env.hold_flock(&file, "flock");
    let first = queue(&env, &[], "f", "first", &log);
    let second = queue(&env, &["-s"], "f", "second", &log);
    env.withlock()
        .args(["-n", "f", "--", "true"])
        .assert()
        .code(75);
    assert!(lines(&log) == ["queued"], "nobody ran beside flock(1)");
    assert!(flock_holder.release().success());
    finish(vec![first, second]);
    assert_eq!(lines(&log), ["queued", "first", "second"]);
}

/// A queued waiter sleeps in fcntl(2) on its predecessor's ticket: its
/// main thread makes no voluntary context switch while it waits.
#[test]
fn a_queued_waiter_does_not_poll() {
    let env = Env::new();
    let file = env.lock_file("p");
    let log = env.file("log");
    let holder = env.hold(env.withlock().arg("p"), "h");
    let ahead = queue(&env, &["-w", "60"], "p", "ahead", &log);
    let mut waiters = vec![ahead];
    for options in [&["-w", "60"][..], &["-s"][..], &["--max", "2"][..]] {
        let waiter = queue(&env, options, "p", "w", &log);
        let pid = waiter.id() as i32;
        wait_blocked(&file, pid);
        assert_sleeps_without_polling(pid, &format!("a waiter with {options:?}"));
        waiters.push(waiter);
    }
    assert!(lines(&log).is_empty());
    assert!(holder.release().success());
    finish(waiters);
    wait_for("every waiter to run", || lines(&log).len() == 4);
}

#[test]
fn max_is_refused_for_socket_locks_and_beside_shared() {
    let env = Env::new();
    env.withlock()
        .args(["--max", "2", "abstract:withlock-fair", "--", "true"])
        .assert()
        .code(64)
        .stderr(predicates::str::contains("--max"));
    env.withlock()
        .args(["--max", "2", "-s", "x", "--", "true"])
        .assert()
        .code(64);
    env.withlock()
        .args(["--max", "0", "x", "--", "true"])
        .assert()
        .code(64);
}

/// True when `pid` is stopped (state T in /proc/PID/stat).
fn is_stopped(pid: i32) -> bool {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rfind(')')
        .and_then(|end| stat[end + 1..].split_whitespace().next())
        == Some("T")
}

/// A waiter stopped as Ctrl-Z would stop it; resumed when dropped, so a
/// failed test leaves no stopped process behind holding its pipes.
struct Stopped {
    child: Option<Child>,
    pid: i32,
}

impl Stopped {
    fn new(waiter: Child) -> Stopped {
        let pid = waiter.id() as i32;
        signal(pid, Signal::SIGSTOP);
        wait_for("the waiter to stop", || is_stopped(pid));
        Stopped {
            child: Some(waiter),
            pid,
        }
    }

    /// Lets it go on, and returns it.
    fn resume(mut self) -> Child {
        signal(self.pid, Signal::SIGCONT);
        self.child.take().unwrap()
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            signal(self.pid, Signal::SIGCONT);
            let _ = child.wait();
        }
    }
}

/// A waiter stopped in the queue, whose turn comes while it is stopped,
/// is passed over: the next request runs, and says whom it passed over.
#[test]
fn a_stopped_waiter_is_passed_over_and_named() {
    let env = Env::new();
    let log = env.file("log");
    let holder = env.hold(env.withlock().arg("st"), "h");
    let stopped = Stopped::new(queue(&env, &[], "st", "stopped", &log));
    let pid = stopped.pid;
    assert!(holder.release().success());
    let run = env.withlock().args(["st", "--", "sh", "-c"]);
    let next = output(&mut run.arg(r#"echo next >> "$0""#).arg(&log).command());
    let err = String::from_utf8_lossy(&next.stderr).into_owned();
    assert!(next.status.success(), "{err}");
    assert!(
        err.contains(&format!("passing over pid {pid} (")) && err.contains("(stopped)"),
        "{err}"
    );
    assert_eq!(lines(&log), ["next"]);
    finish(vec![stopped.resume()]);
    assert_eq!(lines(&log), ["next", "stopped"]);
}

/// While flock(1) holds the lock, a waiter ahead in the queue is stopped:
/// the waiting line of the request behind it names it as stopped, and the
/// request runs once flock(1) lets go.
#[test]
fn the_waiting_line_names_a_stopped_waiter_ahead() {
    let env = Env::new();
    let log = env.file("log");
    let file = env.lock_file("sw");
    let flock = env.hold_flock(&file, "flock");
    let stopped = Stopped::new(queue(&env, &[], "sw", "stopped", &log));
    let pid = stopped.pid;
    let mut next = queue(&env, &[], "sw", "next", &log);
    let stderr = next.stderr.take().unwrap();
    let (line_tx, line_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Read to the end, so that its later lines find the pipe open.
        for line in std::io::BufReader::new(stderr).lines() {
            let _ = line_tx.send(line.unwrap_or_default());
        }
    });
    let line = line_rx
        .recv_timeout(crate::support::BOUND)
        .expect("a waiting line");
    assert!(
        line.contains(&format!("held exclusive by pid {}", flock.pid()))
            && line.contains(&format!("ahead in its queue, stopped: pid {pid} (")),
        "{line}"
    );
    assert!(flock.release().success());
    assert!(wait_child(&mut next).success());
    assert_eq!(lines(&log), ["next"]);
    finish(vec![stopped.resume()]);
}
