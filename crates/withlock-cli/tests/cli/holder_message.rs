//! Naming the holder: on conflict, on time-out and while waiting, with pid,
//! user, command line and how long; escaped so it cannot drive a terminal.

use std::io::Read;
use std::sync::{Arc, Mutex};

use crate::support::{Env, stderr, wait_blocked, wait_child, wait_for};

/// What `withlock -n NAME -- true` says on the busy lock NAME (exit 75).
fn busy(env: &Env, name: &str) -> std::process::Output {
    let out = env
        .withlock()
        .args(["-n", name, "--", "true"])
        .assert()
        .code(75);
    out.get_output().clone()
}

#[test]
fn a_conflict_names_pid_user_time_and_command_on_one_line() {
    let env = Env::new();
    let holder = env.hold(env.withlock().arg("t"), "h");
    let out = busy(&env, "t");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("withlock: t is busy: held exclusive by "),
        "{err}"
    );
    assert!(
        err.contains(&format!("pid {} (root) for ", holder.pid())),
        "{err}"
    );
    assert!(
        err.contains("withlock t -- sh -c"),
        "the holder's command line: {err}"
    );
    assert!(holder.release().success());
}

#[test]
fn a_time_out_names_the_holder_too() {
    let env = Env::new();
    let holder = env.hold(env.withlock().args(["-s", "t"]), "h");
    let out = env
        .withlock()
        .args(["-w", "0.1", "t", "--", "true"])
        .assert()
        .code(75)
        .get_output()
        .clone();
    let err = stderr(&out);
    assert!(err.contains("gave up on t after"), "{err}");
    assert!(
        err.contains(&format!("held shared by pid {} (root)", holder.pid())),
        "{err}"
    );
    assert!(holder.release().success());
}

#[test]
fn escape_sequences_in_a_holder_command_line_are_made_visible() {
    let env = Env::new();
    let evil = "\x1b]0;pwned\x07\x1b[2J\u{202e}";
    let (ready, go) = (env.file("ready"), env.fifo("go"));
    let script = format!(r#"echo > {}; read _ < {}"#, ready.display(), go.display());
    let mut holder = env
        .withlock()
        .args(["t", "--", "sh", "-c", &script, evil])
        .spawn();
    wait_for("the holder's command to start", || ready.exists());
    let out = busy(&env, "t");
    assert!(
        !out.stderr.iter().any(|&b| b == 0x1b || b == 0x07),
        "raw control bytes reached stderr: {:?}",
        stderr(&out)
    );
    let err = stderr(&out);
    assert!(
        err.contains(r"\u{1b}]0;pwned\u{7}\u{1b}[2J\u{202e}"),
        "{err}"
    );
    std::fs::write(&go, "\n").unwrap();
    assert!(wait_child(&mut holder).success());
}

/// flock(1) does not say when it took the lock, which it did after its
/// process started: the message gives that age as an upper bound, in the
/// same words and with one figure, as it gives a withlock holder's time.
#[test]
fn a_flock1_holder_is_named_with_an_upper_bound_on_its_time() {
    let env = Env::new();
    let flock = env.hold_flock(&env.lock_file("f"), "flock");
    let out = busy(&env, "f");
    let err = stderr(&out);
    let prefix = format!(
        "withlock: f is busy: held exclusive by pid {} (root) for up to ",
        flock.pid()
    );
    assert!(err.starts_with(&prefix), "{err}");
    let figure = err[prefix.len()..].split(':').next().unwrap();
    assert!(
        figure.ends_with('s') && !figure.contains(' '),
        "one figure for how long: {err}"
    );
    assert!(err.contains(": flock "), "{err}");
    assert!(!err.contains("running for"), "{err}");
    assert!(flock.release().success());
}

/// Without a terminal the waiting line comes once, after about a second.
#[test]
fn a_long_wait_says_once_who_it_waits_for() {
    let env = Env::new();
    let holder = env.hold(env.withlock().arg("t"), "h");
    let mut waiter = env.withlock().args(["t", "--", "true"]).spawn();
    let lines = Arc::new(Mutex::new(String::new()));
    let reader = {
        let lines = Arc::clone(&lines);
        let mut pipe = waiter.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0; 256];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                lines
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    wait_blocked(&env.lock_file("t"), waiter.id() as i32);
    wait_for("the waiting line", || lines.lock().unwrap().ends_with('\n'));
    let expected = format!(
        "waiting 1.0s for t: held exclusive by pid {} (root) for ",
        holder.pid()
    );
    assert!(
        lines.lock().unwrap().contains(&expected),
        "{}",
        lines.lock().unwrap()
    );
    assert!(holder.release().success());
    assert!(wait_child(&mut waiter).success());
    reader.join().unwrap();
    let all = lines.lock().unwrap().clone();
    assert_eq!(all.lines().count(), 1, "{all}");
}

#[test]
fn quiet_waits_in_silence() {
    let env = Env::new();
    let holder = env.hold(env.withlock().arg("t"), "h");
    let mut waiter = env.withlock().args(["-q", "t", "--", "true"]).spawn();
    wait_blocked(&env.lock_file("t"), waiter.id() as i32);
    assert!(holder.release().success());
    assert!(wait_child(&mut waiter).success());
    let mut err = String::new();
    waiter
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert_eq!(err, "");
}

/// Out of file descriptors, withlock may take no look at /proc/locks: the
/// busy message then says so, and never blames another PID namespace.
#[test]
fn a_holder_that_cannot_be_looked_up_for_want_of_descriptors_is_said_so() {
    let env = Env::new();
    let holder = env.hold(env.withlock().arg("t"), "h");
    let mut unreadable = 0;
    // Too few descriptors to open the lock (71), then enough for the lock
    // but not for /proc/locks, then enough for both.
    for limit in 4..=16 {
        let out = crate::support::output(
            std::process::Command::new("sh")
                .args(["-c", &format!("ulimit -n {limit} && exec \"$0\" \"$@\"")])
                .arg(env.bin())
                .args(["-n", "t", "--", "true"])
                .env("WITHLOCK_DIR", env.lock_dir()),
        );
        let err = stderr(&out);
        match out.status.code() {
            Some(71) => assert!(err.contains("ulimit -n"), "{limit}: {err}"),
            Some(75) => {
                assert!(!err.contains("another PID namespace"), "{limit}: {err}");
                if err.contains("/proc/locks cannot be read: Too many open files") {
                    unreadable += 1;
                } else {
                    assert!(err.contains(&format!("pid {}", holder.pid())), "{err}");
                }
            }
            other => panic!("ulimit -n {limit}: {other:?}: {err}"),
        }
    }
    assert!(
        unreadable > 0,
        "no limit left the lookup without a descriptor"
    );
    assert!(holder.release().success());
}
