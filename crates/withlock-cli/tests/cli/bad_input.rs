//! No input makes withlock panic: absurd numbers of seconds are refused
//! with one cause and 64, a wait too long for the clock waits until the
//! lock is free, a message that cannot be written (stderr closed) leaves
//! the exit status as documented, and a forged "since" stamp far in the
//! future does not break the listing.

use std::os::fd::OwnedFd;
use std::process::Stdio;

use crate::support::{Env, spawn, stderr, wait_blocked, wait_child};

const USAGE: i32 = 64;
const CONFLICT: i32 = 75;

/// Every absurd value of -w, --grace, --time-limit and --once-per is refused with 64, naming the
/// value and why; nothing runs and no lock file is made.
#[test]
fn absurd_seconds_are_refused_with_64_and_nothing_runs() {
    let env = Env::new();
    let marker = env.file("ran");
    for option in ["-w", "--grace", "--time-limit", "--once-per"] {
        for (value, cause) in [
            ("-1", "is negative"),
            ("-inf", "is negative"),
            ("nan", "is not a number of seconds"),
            ("soon", "is not a number of seconds"),
            ("inf", "is too many seconds"),
            ("1e400", "is too many seconds"),
            ("1e20", "is too many seconds"),
        ] {
            let out = env
                .withlock()
                .args([option, value, "t", "--", "touch"])
                .arg(&marker)
                .output();
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(USAGE), "{option} {value}: {err}");
            assert_eq!(
                err.lines().count(),
                1,
                "{option} {value}: one line: {err:?}"
            );
            let said = format!("{value:?} {cause}");
            assert!(
                err.contains(&said),
                "{option} {value}: should say {said:?}: {err}"
            );
            assert!(!marker.exists(), "{option} {value}: the command ran");
            assert!(
                !env.lock_file("t").exists(),
                "{option} {value}: a lock file was made"
            );
        }
    }
}

/// A wait whose end the clock cannot represent (from about 9.2e18 s)
/// waits as long as it takes: the waiter blocks, and runs once the holder
/// lets go.
#[test]
fn a_wait_too_long_for_the_clock_waits_until_the_lock_is_free() {
    let env = Env::new();
    for (index, seconds) in ["1e19", "1.8e19"].into_iter().enumerate() {
        let holder = env.hold(env.withlock().arg("t"), &format!("holder{index}"));
        let mut waiter = spawn(
            env.withlock()
                .args(["-w", seconds, "t", "--", "true"])
                .command()
                .stderr(Stdio::null()),
        );
        wait_blocked(&env.lock_file("t"), waiter.id() as i32);
        assert!(holder.release().success());
        let status = wait_child(&mut waiter);
        assert_eq!(status.code(), Some(0), "-w {seconds}: {status}");
    }
}

/// A pipe whose reader is gone: every write to it fails with EPIPE.
fn broken_pipe() -> OwnedFd {
    let (read, write) = nix::unistd::pipe().unwrap();
    drop(read);
    write
}

/// With stderr a pipe nobody reads, an invalid name is still 64 and a
/// busy lock still 75 (and the verbose lines of a run change nothing),
/// not a panic's 101.
#[test]
fn an_unwritable_stderr_leaves_the_exit_status_alone() {
    let env = Env::new();
    let run = |args: &[&str]| {
        let mut command = env.withlock().args(args).command();
        command.stdin(Stdio::null()).stderr(broken_pipe());
        command.output().unwrap().status
    };
    assert_eq!(run(&["bad name", "--", "true"]).code(), Some(USAGE));
    assert_eq!(run(&["-v", "t", "--", "true"]).code(), Some(0));
    let holder = env.hold(env.withlock().arg("t"), "holder");
    assert_eq!(run(&["-n", "t", "--", "true"]).code(), Some(CONFLICT));
    assert!(holder.release().success());
}

/// Needs nothing but read access to the lock file: a shared flock and a
/// POSIX read lock at an offset that would be a "since" stamp in the year
/// 15814 and one at the largest offset; --list, --list --json and the
/// busy message still work, naming the holder (this process).
#[test]
fn a_forged_far_future_stamp_does_not_break_the_listing() {
    use std::os::fd::AsRawFd;
    let env = Env::new();
    let path = env.lock_file("t");
    std::fs::write(&path, "").unwrap();
    let file = std::fs::File::open(&path).unwrap();
    let fd = file.as_raw_fd();
    // SAFETY: `fd` is open for the whole test; flock only reads it.
    assert_eq!(unsafe { libc::flock(fd, libc::LOCK_SH) }, 0);
    for offset in [500_000_000_000_000_000, i64::MAX - 1] {
        let record = libc::flock {
            l_type: libc::F_RDLCK as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: offset,
            l_len: 1,
            l_pid: 0,
        };
        // SAFETY: `record` is a valid flock struct; F_SETLK only reads it.
        let set = unsafe { libc::fcntl(fd, libc::F_SETLK, &record) };
        assert_eq!(set, 0, "{}", std::io::Error::last_os_error());
    }
    let me = format!("{}", std::process::id());
    for args in [&["--list"][..], &["--list", "--json"]] {
        let out = env.withlock().args(args).output();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(listing.contains(&me), "{args:?}: {listing}");
    }
    let out = env
        .withlock()
        .args(["-x", "-n", "t", "--", "true"])
        .output();
    assert_eq!(out.status.code(), Some(CONFLICT), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("pid {me}")),
        "{}",
        stderr(&out)
    );
}
