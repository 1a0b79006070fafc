//! Another user who can only read a lock file locks bytes of the arrival
//! queue: withlock must be no easier to hold up than flock(1) on the same
//! file, and must say who does it.
//!
//! Every test here needs root: it runs the squatter as the test user
//! wl-bob, on a lock file root's flock(1) created with mode 0644.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use predicates::prelude::*;
use predicates::str::contains;
use serde_json::Value;

use crate::support::{
    BOB, Env, ensure_user, output, require_root, spawn, wait_blocked, wait_child,
};

/// Bytes of the queue: its gate is byte 0, ticket t is byte 2^40 + t.
const GATE: u64 = 0;
const TICKETS: u64 = 1 << 40;

/// `user`'s process holding an open file description lock, for reading,
/// on a byte range of a file it may only read: `cat` reading a pipe,
/// which inherited the descriptor the lock was taken through.
pub(crate) struct Squatter {
    child: Child,
}

impl Squatter {
    /// Locks `len` bytes from `start` (0: to the end of the file).
    pub(crate) fn start(user: &str, file: &Path, start: u64, len: u64) -> Squatter {
        let account = nix::unistd::User::from_name(user).unwrap().unwrap();
        let (uid, gid) = (account.uid.as_raw(), account.gid.as_raw());
        let path = CString::new(file.as_os_str().as_bytes()).unwrap();
        let mut command = Command::new("cat");
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: runs in the child between fork and exec, and calls only
        // async-signal-safe functions on data prepared before the fork.
        unsafe {
            command.pre_exec(move || {
                let check = |rc: libc::c_int| {
                    if rc < 0 {
                        Err(std::io::Error::last_os_error())
                    } else {
                        Ok(rc)
                    }
                };
                check(libc::setgroups(0, std::ptr::null()))?;
                check(libc::setgid(gid))?;
                check(libc::setuid(uid))?;
                // Left open across exec: the lock lives as long as `cat`.
                let fd = check(libc::open(path.as_ptr(), libc::O_RDONLY))?;
                let record = libc::flock {
                    l_type: libc::F_RDLCK as libc::c_short,
                    l_whence: libc::SEEK_SET as libc::c_short,
                    l_start: start as libc::off_t,
                    l_len: len as libc::off_t,
                    l_pid: 0,
                };
                check(libc::fcntl(fd, libc::F_OFD_SETLK, &record))?;
                Ok(())
            });
        }
        // spawn returns once `cat` runs, so the lock is held.
        Squatter {
            child: spawn(&mut command),
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }
}

impl Drop for Squatter {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lock file `name` as root's flock(1) creates it under umask 022:
/// mode 0644, so other users can only read it.
fn made_by_flock(env: &Env, name: &str) -> std::path::PathBuf {
    let file = env.lock_file(name);
    let out = output(
        Command::new("sh")
            .args(["-c", "umask 022 && exec flock \"$0\" true"])
            .arg(&file),
    );
    assert!(out.status.success());
    file
}

fn list_json(env: &Env, name: &str) -> Value {
    let out = env
        .withlock()
        .args(["--list", "--json", name])
        .assert()
        .success();
    let doc: Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    doc[0].clone()
}

/// Needs root. wl-bob read-locks the queue's gate of a 0644 lock file.
/// withlock then takes a free lock at once, `-n` and `-s` included, says
/// whose lock obstructs its queue, and waits for a holder as flock(1)
/// would; `--list` shows the lock as obstructed, naming wl-bob.
#[test]
fn a_reader_s_lock_on_the_gate_holds_up_nothing_and_is_named() {
    require_root();
    ensure_user(BOB);
    let env = Env::new();
    let file = made_by_flock(&env, "g");
    let squatter = Squatter::start(BOB, &file, GATE, 1);
    let named = format!("pid {} ({BOB})", squatter.pid());

    for options in [&["-n"][..], &["-s"], &["-w", "30"], &["--max", "2"]] {
        env.withlock()
            .args(options)
            .args(["g", "--", "true"])
            .assert()
            .success()
            .stderr(
                contains("the queue of g is obstructed by a read lock on byte 0")
                    .and(contains(named.as_str())),
            );
    }

    let holder = env.hold(env.withlock().arg("g"), "h");
    env.withlock()
        .args(["-n", "g", "--", "true"])
        .assert()
        .code(75)
        .stderr(contains(format!("held exclusive by pid {}", holder.pid())));
    let mut waiter = env.withlock().args(["g", "--", "true"]).spawn();
    wait_blocked(&file, waiter.id() as i32);
    assert!(holder.release().success());
    assert!(wait_child(&mut waiter).success());

    let listed = list_json(&env, "g");
    assert_eq!(listed["state"], "obstructed", "{listed}");
    let what = listed["obstruction"].as_str().unwrap_or_default();
    assert!(what.contains(&named), "{what}");
    let table = env.withlock().args(["--list", "g"]).output();
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(
        table.contains("obstructed") && table.contains(&named),
        "{table}"
    );
    drop(squatter);
    assert_eq!(list_json(&env, "g")["state"], "free");
}

/// Needs root. wl-bob read-locks every ticket byte, from 2^40 to the end
/// of the file: no ticket can be drawn, and every kind of request still
/// takes the lock, naming him.
#[test]
fn a_reader_s_lock_over_the_tickets_fails_no_request() {
    require_root();
    ensure_user(BOB);
    let env = Env::new();
    let file = made_by_flock(&env, "t");
    let squatter = Squatter::start(BOB, &file, TICKETS, 0);
    let named = format!("pid {} ({BOB})", squatter.pid());
    for options in [&[][..], &["-n"], &["-s"], &["--max", "3"]] {
        env.withlock()
            .args(options)
            .args(["t", "--", "true"])
            .assert()
            .success()
            .stderr(contains("the queue's tickets").and(contains(named.as_str())));
    }
    assert_eq!(list_json(&env, "t")["state"], "obstructed");
}
