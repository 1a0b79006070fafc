//! Locks shared between users: whoever creates a lock file, under whatever
//! umask and fs.protected_regular, every user can take it, share it and be
//! excluded by it; and the refusals that protect one user from another
//! (a private lock file, a lock directory another user owns).
//!
//! Every test here needs root: it runs withlock as the test users wl-alice
//! and wl-bob (through setpriv), changes sysctls and chowns files.

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};

use predicates::str::contains;

use crate::support::{
    ALICE, BOB, Env, ProtectedRegular, Run, command_as, ensure_user, holding, output, require_root,
    spawn, stderr, wait_child, wait_for,
};

const ROOT: &str = "root";

/// The three users every cross-user check runs as.
const USERS: [&str; 3] = [ALICE, BOB, ROOT];

/// A test directory, with the test users created.
fn shared_env() -> Env {
    ensure_user(ALICE);
    ensure_user(BOB);
    Env::new()
}

/// `withlock` run as `user` (root runs it directly).
fn withlock_as(env: &Env, user: &str) -> Run {
    if user == ROOT {
        env.withlock()
    } else {
        env.withlock().as_user(user)
    }
}

fn uid_of(user: &str) -> u32 {
    nix::unistd::User::from_name(user)
        .unwrap()
        .unwrap_or_else(|| panic!("no user {user}"))
        .uid
        .as_raw()
}

fn describe(out: &Output) -> String {
    format!(
        "{}; stdout: {:?}; stderr: {:?}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(out)
    )
}

/// Checks the lock file is what withlock creates: mode 0666, owned by
/// `owner`, empty.
fn assert_created_by(path: &Path, owner: &str, context: &str) -> fs::Metadata {
    let meta = fs::symlink_metadata(path)
        .unwrap_or_else(|e| panic!("{context}: {} was not created: {e}", path.display()));
    assert!(meta.file_type().is_file(), "{context}: not a regular file");
    assert_eq!(
        meta.mode() & 0o7777,
        0o666,
        "{context}: mode {:04o}, want 0666",
        meta.mode() & 0o7777
    );
    assert_eq!(meta.uid(), uid_of(owner), "{context}: not owned by {owner}");
    assert_eq!(meta.len(), 0, "{context}: withlock wrote to the lock file");
    meta
}

/// Needs root. For each fs.protected_regular value, each creator and each
/// umask: the creator's withlock makes a lock file of mode 0666 that every
/// user can hold exclusively (excluding the other two, who are told the
/// holder's pid and user name), take after release, and share.
#[test]
fn every_user_can_use_a_lock_file_whoever_created_it() {
    require_root();
    let env = shared_env();
    for protected_regular in [0u8, 1, 2] {
        // One guard per value, so the sysctl is written three times in all.
        let _sysctl = ProtectedRegular::set(protected_regular);
        for (index, creator) in USERS.into_iter().enumerate() {
            for umask in [0o022, 0o077] {
                let name = format!("pr{protected_regular}-{creator}-umask{umask:03o}");
                cross_user_case(&env, &name, index, umask);
            }
        }
    }
}

/// One cell of the matrix: `USERS[creator]` creates lock `name` under
/// `umask`, then every user holds it in turn.
fn cross_user_case(env: &Env, name: &str, creator: usize, umask: u32) {
    let file = env.lock_file(name);
    let creator_name = USERS[creator];
    assert!(!file.exists(), "{name}: the lock name must be fresh");

    withlock_as(env, creator_name)
        .umask(umask)
        .args([name, "--", "true"])
        .assert()
        .success();
    let created = assert_created_by(&file, creator_name, name);

    // Each user in turn holds it exclusively; both others are refused at
    // once, told who holds it.
    for holder_name in USERS {
        let holder = env.hold(
            withlock_as(env, holder_name).arg(name),
            &format!("{name}-x-{holder_name}"),
        );
        let blame = format!(
            "{name} is busy: held exclusive by pid {} ({holder_name})",
            holder.pid()
        );
        for other in USERS.into_iter().filter(|u| *u != holder_name) {
            let out = withlock_as(env, other)
                .args(["-n", name, "--", "true"])
                .assert()
                .code(75)
                .stderr(contains(blame.as_str()))
                .get_output()
                .clone();
            assert_eq!(stderr(&out).lines().count(), 1, "{name}: {}", stderr(&out));
        }
        assert!(
            holder.release().success(),
            "{name}: {holder_name}'s holder failed"
        );
    }

    // Released: everyone can take it.
    for user in USERS {
        withlock_as(env, user)
            .args(["-n", name, "--", "true"])
            .assert()
            .success();
    }

    // Shared: a second user shares it with the first, the third user (the
    // creator) cannot take it exclusively, and neither can the sharer.
    let first = USERS[(creator + 1) % USERS.len()];
    let second = USERS[(creator + 2) % USERS.len()];
    let shared = env.hold(
        withlock_as(env, first).args(["-s", name]),
        &format!("{name}-s-{first}"),
    );
    withlock_as(env, second)
        .args(["-s", "-n", name, "--", "true"])
        .assert()
        .success();
    let blame = format!(
        "{name} is busy: held shared by pid {} ({first})",
        shared.pid()
    );
    for user in [creator_name, second] {
        withlock_as(env, user)
            .args(["-n", name, "--", "true"])
            .assert()
            .code(75)
            .stderr(contains(blame.as_str()));
    }
    assert!(shared.release().success(), "{name}: shared holder failed");

    // Nobody replaced, rewrote or chmod-ed the file along the way.
    let after = assert_created_by(&file, creator_name, name);
    assert_eq!(
        after.ino(),
        created.ino(),
        "{name}: the lock file was replaced"
    );
}

/// `user`'s flock(1) holding a lock file, its command `cat` reading a pipe
/// from the test. Closing the pipe releases it, and dropping the child
/// closes the pipe, so a failed assertion leaves no process holding the lock.
struct FlockHolder {
    child: Child,
}

impl FlockHolder {
    fn start(user: &str, file: &Path) -> FlockHolder {
        let mut holder = FlockHolder {
            child: spawn(
                command_as(user, "flock")
                    .arg(file)
                    .arg("cat")
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped()),
            ),
        };
        let pid = holder.pid();
        let child = &mut holder.child;
        wait_for(&format!("{user}'s flock(1) to hold the lock"), || {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                panic!("{user}'s flock(1) exited early with {status}: {err:?}");
            }
            holding(file).contains(&pid)
        });
        holder
    }

    /// The pid of flock(1), which took the lock.
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Ends its command by closing the pipe; returns flock(1)'s status.
    fn release(mut self) -> ExitStatus {
        drop(self.child.stdin.take());
        wait_child(&mut self.child)
    }
}

impl Drop for FlockHolder {
    /// After a failed assertion: end `cat` (end of input) and reap flock(1).
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Needs root. Under fs.protected_regular=1 and 2, root's flock(1), which
/// opens with O_CREAT, cannot open wl-alice's lock file in the sticky lock
/// directory, while root's withlock can; and a lock held by withlock
/// excludes wl-alice's flock(1) and the other way round. With the sysctl at
/// 0, root's flock(1) opens it, which shows the sysctl is the cause.
#[test]
fn protected_regular_stops_flock_but_not_withlock() {
    require_root();
    let env = shared_env();
    for protected_regular in [1u8, 2] {
        let _sysctl = ProtectedRegular::set(protected_regular);
        let name = format!("pr{protected_regular}");
        let file = env.lock_file(&name);
        withlock_as(&env, ALICE)
            .args([&name, "--", "true"])
            .assert()
            .success();
        assert_created_by(&file, ALICE, &name);

        // The trap: root's flock(1) is refused.
        let out = output(Command::new("flock").arg(&file).arg("true"));
        assert!(
            !out.status.success() && stderr(&out).contains("Permission denied"),
            "protected_regular={protected_regular}: root's flock(1) should be refused: {}",
            describe(&out)
        );

        // withlock opens the existing file without O_CREAT.
        env.withlock()
            .args([&name, "--", "true"])
            .assert()
            .success();

        // Root's withlock excludes alice's flock(1)...
        let holder = env.hold(env.withlock().arg(&name), &format!("{name}-root"));
        let alice_flock_n = || output(command_as(ALICE, "flock").arg("-n").arg(&file).arg("true"));
        let out = alice_flock_n();
        assert_eq!(
            out.status.code(),
            Some(1),
            "alice's flock -n while root holds: {}",
            describe(&out)
        );
        assert!(holder.release().success());
        let out = alice_flock_n();
        assert!(
            out.status.success(),
            "alice's flock -n after release: {}",
            describe(&out)
        );

        // ...and alice's flock(1) excludes root's withlock, which names her.
        let flock = FlockHolder::start(ALICE, &file);
        env.withlock()
            .args(["-n", &name, "--", "true"])
            .assert()
            .code(75)
            .stderr(contains(format!(
                "held exclusive by pid {} ({ALICE})",
                flock.pid()
            )));
        assert!(flock.release().success());
        env.withlock()
            .args(["-n", &name, "--", "true"])
            .assert()
            .success();
    }

    let _sysctl = ProtectedRegular::set(0);
    let out = output(Command::new("flock").arg(env.lock_file("pr1")).arg("true"));
    assert!(
        out.status.success(),
        "with protected_regular=0 root's flock(1) opens the file: {}",
        describe(&out)
    );
}

/// Needs root. A lock file wl-alice made private (mode 0600, not through
/// withlock) is refused to wl-bob with exit 77 and one line naming its
/// owner and mode and the fix; his command does not run and the file is
/// left alone. Root can still use it, even under fs.protected_regular=2.
#[test]
fn another_users_private_lock_file_is_refused_with_owner_mode_and_fix() {
    require_root();
    let env = shared_env();
    let file = env.lock_file("private");
    let out = output(
        command_as(ALICE, "sh")
            .args(["-c", r#"umask 077; : > "$1""#, "sh"])
            .arg(&file),
    );
    assert!(out.status.success(), "alice's sh: {}", describe(&out));
    let before = fs::metadata(&file).unwrap();
    assert_eq!(before.mode() & 0o7777, 0o600);
    assert_eq!(before.uid(), uid_of(ALICE));

    // Bob could create this marker (the test directory is 1777) if his
    // command ran.
    let marker = env.file("bob-ran");
    let out = withlock_as(&env, BOB)
        .args(["private", "--", "touch"])
        .arg(&marker)
        .assert()
        .code(77)
        .get_output()
        .clone();
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("withlock: "), "{err:?}");
    assert!(err.contains(&file.display().to_string()), "{err:?}");
    assert!(err.contains("owned by wl-alice, mode 0600"), "{err:?}");
    assert!(err.contains("chmod a+r"), "says what to do: {err:?}");
    assert!(!marker.exists(), "bob's command ran");

    let after = fs::metadata(&file).unwrap();
    assert_eq!(
        (after.ino(), after.mode(), after.uid(), after.len()),
        (before.ino(), before.mode(), before.uid(), before.len()),
        "the private file was changed"
    );

    let _sysctl = ProtectedRegular::set(2);
    let root_marker = env.file("root-ran");
    env.withlock()
        .args(["private", "--", "touch"])
        .arg(&root_marker)
        .assert()
        .success();
    assert!(root_marker.exists(), "root's command did not run");
    assert_eq!(fs::metadata(&file).unwrap().mode() & 0o7777, 0o600);
}
