//! The attacks a lock file in a shared directory invites, and that withlock
//! refuses them: symlinks, FIFOs, devices and other non-regular files
//! planted at the lock path; directories where another user could swap
//! lock files; a lock file deleted or replaced while withlock waits for it.
//! Also that an existing lock file is never changed, and that a lock given
//! by path is the same lock flock(1) takes.
//!
//! "Never opened" and "never changed" are checked with inotify on the file
//! itself: the kernel reports every open, write and attribute change as it
//! happens, so once withlock has exited every event is already queued.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{ErrorKind, Read};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};

use crate::support::{
    ALICE, Env, blocked_on, ensure_user, holding, output, require_root, set_mode, stderr,
    wait_blocked, wait_child,
};

/// The exit status for an unusable or unsafe lock directory, or no regular
/// file at the lock path.
const CONFIG: i32 = 78;
/// The exit status for a busy lock.
const CONFLICT: i32 = 75;

/// Every inotify event that means a file was opened, read, written or had
/// its attributes (mode, owner, times, link count) changed.
const ANY_USE: u32 = libc::IN_OPEN
    | libc::IN_ACCESS
    | libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_CLOSE_WRITE
    | libc::IN_CLOSE_NOWRITE;

/// An inotify watch on one file.
struct Watch {
    inotify: fs::File,
    path: PathBuf,
}

impl Watch {
    /// Watches `path` (following a symlink) for [`ANY_USE`].
    fn new(path: &Path) -> Watch {
        // SAFETY: inotify_init1 takes no pointers; the result is checked.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        assert!(
            fd >= 0,
            "inotify_init1: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        let inotify = fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
        let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: `c_path` is a valid NUL-terminated string for the call.
        let wd = unsafe { libc::inotify_add_watch(fd, c_path.as_ptr(), ANY_USE) };
        assert!(
            wd >= 0,
            "inotify_add_watch {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        Watch {
            inotify,
            path: path.to_owned(),
        }
    }

    /// The masks of the events queued so far.
    fn events(&mut self) -> Vec<u32> {
        let mut events = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = match self.inotify.read(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return events,
                Err(e) => panic!("read inotify: {e}"),
            };
            let mut at = 0;
            while at + 16 <= n {
                let field =
                    |i: usize| u32::from_ne_bytes(buf[at + i..at + i + 4].try_into().unwrap());
                let (mask, len) = (field(4), field(12));
                if mask & libc::IN_IGNORED == 0 {
                    events.push(mask);
                }
                at += 16 + len as usize;
            }
        }
    }

    /// Fails unless nothing opened, read, wrote or changed the file.
    fn assert_untouched(&mut self) {
        let events = self.events();
        assert!(
            events.is_empty(),
            "{} was used: inotify events {events:x?}",
            self.path.display()
        );
    }
}

/// Runs `withlock LOCK -- touch <marker>` and checks that it is refused with
/// exit 78 because `kind` sits at the lock path, and that nothing ran.
fn assert_refused(env: &Env, lock: impl AsRef<OsStr>, kind: &str) {
    let lock = lock.as_ref();
    let marker = env.file("ran");
    let out = env
        .withlock()
        .arg(lock)
        .arg("--")
        .arg("touch")
        .arg(&marker)
        .output();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(CONFIG), "{lock:?}: {err}");
    assert!(
        err.contains(&format!("is a {kind}, not a lock file")),
        "{lock:?} should be refused as a {kind}: {err}"
    );
    assert!(!marker.exists(), "{lock:?}: the command ran");
}

/// What a file's metadata says that withlock must never change.
#[derive(Debug, PartialEq, Eq)]
struct Fingerprint {
    content: Vec<u8>,
    ino: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    nlink: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

fn fingerprint(path: &Path) -> Fingerprint {
    let meta = fs::symlink_metadata(path).unwrap();
    assert!(meta.is_file(), "{} is not a regular file", path.display());
    Fingerprint {
        content: fs::read(path).unwrap(),
        ino: meta.ino(),
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        nlink: meta.nlink(),
        size: meta.size(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        ctime: (meta.ctime(), meta.ctime_nsec()),
    }
}

fn alice_ids() -> (u32, u32) {
    ensure_user(ALICE);
    let user = nix::unistd::User::from_name(ALICE).unwrap().unwrap();
    (user.uid.as_raw(), user.gid.as_raw())
}

/// A file worth attacking: "precious", mode 0640, owned by wl-alice.
fn precious_file(env: &Env) -> PathBuf {
    let (uid, gid) = alice_ids();
    let target = env.file("precious");
    fs::write(&target, "precious").unwrap();
    set_mode(&target, 0o640);
    std::os::unix::fs::chown(&target, Some(uid), Some(gid)).unwrap();
    target
}

/// Checks that a symlink at a lock path to a precious file, and a dangling
/// one, are refused, the lock being given as `lock_of(lock path)`, and that
/// nothing is opened, changed or created through them.
fn symlinks_are_refused(env: &Env, lock_of: impl Fn(&Path) -> std::ffi::OsString) {
    let target = precious_file(env);
    let link = env.lock_file("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let before = fingerprint(&target);
    let mut watch = Watch::new(&target);

    assert_refused(env, lock_of(&link), "symbolic link");

    watch.assert_untouched();
    assert_eq!(fingerprint(&target), before, "the symlink's target changed");
    assert_eq!(fs::read_link(&link).unwrap(), target, "the symlink changed");

    let nowhere = env.file("nowhere");
    let dangling = env.lock_file("dangling");
    std::os::unix::fs::symlink(&nowhere, &dangling).unwrap();

    assert_refused(env, lock_of(&dangling), "symbolic link");

    assert!(
        fs::symlink_metadata(&nowhere).is_err(),
        "a file was created through a dangling symlink"
    );
    assert!(fs::symlink_metadata(&dangling).unwrap().is_symlink());
}

/// Refuses a symlink at the lock path and leaves its target alone.
/// Needs root (chowns the target to wl-alice).
#[test]
fn refuses_a_symlink_and_leaves_its_target_alone() {
    require_root();
    let env = Env::new();
    symlinks_are_refused(&env, |path| {
        path.file_stem().unwrap().to_owned() // the lock name
    });
}

/// The same for a lock given by path. Needs root.
#[test]
fn refuses_a_symlink_at_a_lock_path() {
    require_root();
    let env = Env::new();
    symlinks_are_refused(&env, |path| path.as_os_str().to_owned());
}

/// A non-regular file planted at a lock path, and a watch on it.
struct Planted {
    name: &'static str,
    kind: &'static str,
    is_kind: fn(&fs::FileType) -> bool,
    watch: Watch,
    _listener: Option<UnixListener>,
}

/// Plants a FIFO, a directory, a socket and a character device (1,3, the
/// null device) at four lock paths. Needs root (mknod).
fn plant_special_files(env: &Env) -> Vec<Planted> {
    let fifo = env.lock_file("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o666)).unwrap();
    fs::create_dir(env.lock_file("dir")).unwrap();
    let listener = UnixListener::bind(env.lock_file("sock")).unwrap();
    let device = env.lock_file("chardev");
    let out = output(Command::new("mknod").arg(&device).args(["c", "1", "3"]));
    assert!(out.status.success(), "mknod: {}", stderr(&out));

    let plant = |name, kind, is_kind, listener| Planted {
        name,
        kind,
        is_kind,
        watch: Watch::new(&env.lock_file(name)),
        _listener: listener,
    };
    vec![
        plant("fifo", "FIFO", fs::FileType::is_fifo, None),
        plant("dir", "directory", fs::FileType::is_dir, None),
        plant("sock", "socket", fs::FileType::is_socket, Some(listener)),
        plant(
            "chardev",
            "character device",
            fs::FileType::is_char_device,
            None,
        ),
    ]
}

/// Checks each planted file is refused, never opened, and still there.
/// `assert_refused` runs within the support's bound, so a withlock that
/// blocks opening the FIFO fails the test.
fn special_files_are_refused(env: &Env, lock_of: impl Fn(&Planted) -> std::ffi::OsString) {
    for mut planted in plant_special_files(env) {
        assert_refused(env, lock_of(&planted), planted.kind);
        planted.watch.assert_untouched();
        let path = env.lock_file(planted.name);
        let file_type = fs::symlink_metadata(&path).unwrap().file_type();
        assert!(
            (planted.is_kind)(&file_type),
            "{} was replaced",
            path.display()
        );
    }
}

/// Refuses a FIFO (without blocking), a directory, a socket and a
/// character device at the lock path, without opening them. Needs root.
#[test]
fn refuses_special_files_without_opening_them() {
    require_root();
    let env = Env::new();
    special_files_are_refused(&env, |planted| planted.name.into());
}

/// The same for a lock given by path. Needs root.
#[test]
fn refuses_special_files_at_a_lock_path() {
    require_root();
    let env = Env::new();
    special_files_are_refused(&env, |planted| env.lock_file(planted.name).into_os_string());
}

/// An existing lock file (mode 0600, with content, owned by root or by
/// wl-alice) is locked but never written, truncated, chmod-ed, chown-ed or
/// touched. Needs root (chowns to wl-alice).
#[test]
fn an_existing_lock_file_is_never_changed() {
    require_root();
    let env = Env::new();
    for (name, owner) in [("roots", (0, 0)), ("alices", alice_ids())] {
        let path = env.lock_file(name);
        fs::write(&path, "someone else's notes\n").unwrap();
        set_mode(&path, 0o600);
        std::os::unix::fs::chown(&path, Some(owner.0), Some(owner.1)).unwrap();
        let before = fingerprint(&path);
        assert_eq!((before.uid, before.mode & 0o7777), (owner.0, 0o600));
        let mut watch = Watch::new(&path);

        env.withlock().args([name, "--", "true"]).assert().success();

        let events = watch.events();
        assert!(
            events.iter().any(|mask| mask & libc::IN_OPEN != 0),
            "the watch saw withlock open nothing: {events:x?}"
        );
        assert_eq!(fingerprint(&path), before, "{name}");
        // Not IN_CLOSE_WRITE: a process forked by another test's thread
        // while fs::write above had the file open closes its inherited copy
        // when it execs, which the watch may see. A real write shows as
        // IN_MODIFY, and the fingerprint catches any change to the content.
        let changes: Vec<u32> = events
            .into_iter()
            .filter(|mask| mask & (libc::IN_MODIFY | libc::IN_ATTRIB) != 0)
            .collect();
        assert!(changes.is_empty(), "{name} was changed: {changes:x?}");
    }
}

/// A lock file withlock creates is mode 0666 whatever the umask, so that
/// every user can lock it.
#[test]
fn a_new_lock_file_is_mode_0666_under_umask_077() {
    let env = Env::new();
    env.withlock()
        .umask(0o077)
        .args(["fresh", "--", "true"])
        .assert()
        .success();
    let meta = fs::symlink_metadata(env.lock_file("fresh")).unwrap();
    assert!(meta.is_file());
    assert_eq!(meta.mode() & 0o7777, 0o666);
    assert_eq!(meta.len(), 0);
}

/// A fresh directory in the test directory with `mode`.
fn dir_with_mode(env: &Env, name: &str, mode: u32) -> PathBuf {
    let dir = env.file(name);
    fs::create_dir(&dir).unwrap();
    set_mode(&dir, mode);
    dir
}

/// Runs `withlock --dir DIR t -- touch <marker>`, expects exit 78, and
/// returns stderr; checks that nothing ran and no lock file was made.
fn refused_dir(env: &Env, dir: &Path) -> String {
    let marker = env.file("ran");
    let out = env
        .withlock()
        .arg("--dir")
        .arg(dir)
        .args(["t", "--", "touch"])
        .arg(&marker)
        .output();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(CONFIG), "{}: {err}", dir.display());
    assert!(err.contains("unsafe lock directory"), "{err}");
    assert!(!marker.exists(), "{}: the command ran", dir.display());
    assert_eq!(
        fs::read_dir(dir).unwrap().count(),
        0,
        "a lock file was created in {}",
        dir.display()
    );
    err
}

/// A lock directory that others may write without the sticky bit is
/// refused, with the fix; a sticky one is accepted.
#[test]
fn refuses_a_directory_writable_by_others_without_the_sticky_bit() {
    let env = Env::new();
    for (mode, who) in [
        (0o777, "everyone"),
        (0o775, "its group"),
        (0o757, "everyone"),
    ] {
        let dir = dir_with_mode(&env, &format!("open-{mode:o}"), mode);
        let err = refused_dir(&env, &dir);
        assert!(err.contains("sticky bit"), "{mode:o}: {err}");
        assert!(
            err.contains(&format!("writable by {who}")),
            "{mode:o}: {err}"
        );
        assert!(
            err.contains(&format!("chmod +t {}", dir.display())),
            "{mode:o}: {err}"
        );
    }

    let sticky = dir_with_mode(&env, "sticky", 0o1777);
    let marker = env.file("ran");
    env.withlock()
        .arg("--dir")
        .arg(&sticky)
        .args(["t", "--", "touch"])
        .arg(&marker)
        .assert()
        .success();
    assert!(marker.exists());
    assert!(sticky.join("t.lock").is_file());
}

/// A safe directory inside an unsafe one is refused too, naming the parent:
/// whoever can rename the parent can swap the whole lock directory.
#[test]
fn refuses_a_directory_below_an_unsafe_parent() {
    let env = Env::new();
    let parent = dir_with_mode(&env, "wide", 0o777);
    let inner = parent.join("locks");
    fs::create_dir(&inner).unwrap();
    set_mode(&inner, 0o755);
    let err = refused_dir(&env, &inner);
    assert!(
        err.contains(&format!("its parent {}", parent.display())),
        "{err}"
    );
    assert!(err.contains("chmod +t"), "{err}");

    // Also when the lock is given by path.
    let marker = env.file("ran");
    let out = env
        .withlock()
        .arg(inner.join("x.lock"))
        .arg("--")
        .arg("touch")
        .arg(&marker)
        .output();
    assert_eq!(out.status.code(), Some(CONFIG), "{}", stderr(&out));
    assert!(!marker.exists());
    assert!(!inner.join("x.lock").exists());
}

/// A directory owned by another unprivileged user is refused, even to
/// root; its owner may use it. Needs root.
#[test]
fn refuses_a_directory_owned_by_another_user() {
    require_root();
    let env = Env::new();
    let (uid, gid) = alice_ids();
    let dir = dir_with_mode(&env, "alices", 0o755);
    std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
    let err = refused_dir(&env, &dir);
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.contains(&format!("owned by {ALICE}")), "{err}");

    let marker = dir.join("ran");
    env.withlock()
        .as_user(ALICE)
        .arg("--dir")
        .arg(&dir)
        .args(["t", "--", "touch"])
        .arg(&marker)
        .assert()
        .success();
    assert!(marker.exists());

    // Ownership was the only objection: owned by root, root may use it.
    std::os::unix::fs::chown(&dir, Some(0), Some(0)).unwrap();
    env.withlock()
        .arg("--dir")
        .arg(&dir)
        .args(["t", "--", "true"])
        .assert()
        .success();
}

/// A withlock started in the background, killed if the test fails first.
struct Waiter(Child);

impl Waiter {
    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    fn is_running(&mut self) -> bool {
        self.0.try_wait().unwrap().is_none()
    }

    /// Waits for it to exit; returns its status and stderr.
    fn finish(&mut self) -> (ExitStatus, String) {
        let status = wait_child(&mut self.0);
        let mut err = String::new();
        if let Some(mut pipe) = self.0.stderr.take() {
            pipe.read_to_string(&mut err).unwrap();
        }
        (status, err)
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `withlock t -- sh -c 'flock -n PATH true; echo $? > MARKER'`: its
/// command records whether the file at the lock path is locked (1) or free
/// (0) while it runs, and the marker shows that it ran.
fn start_waiter(env: &Env, marker: &Path) -> Waiter {
    Waiter(
        env.withlock()
            .args([
                "t",
                "--",
                "sh",
                "-c",
                r#"flock -n "$1" true; echo $? > "$2""#,
                "sh",
            ])
            .arg(env.lock_file("t"))
            .arg(marker)
            .spawn(),
    )
}

/// A lock file replaced while withlock waits on the old one: once the old
/// one is free, withlock sees it no longer guards the path and waits on the
/// new one, held by flock(1), instead of running.
#[test]
fn a_lock_file_replaced_while_waiting_is_locked_anew() {
    let env = Env::new();
    let path = env.lock_file("t");
    let marker = env.file("ran");
    let first = env.hold(env.withlock().arg("t"), "first");
    let old_inode = fs::metadata(&path).unwrap().ino();
    let mut waiter = start_waiter(&env, &marker);
    let waiter_pid = waiter.pid();
    wait_blocked(&path, waiter_pid);

    fs::remove_file(&path).unwrap();
    let second = env.hold_flock(&path, "second");
    assert_ne!(fs::metadata(&path).unwrap().ino(), old_inode);
    assert!(first.release().success());

    wait_blocked(&path, waiter_pid);
    assert!(
        !marker.exists(),
        "the command ran while flock(1) held the new lock file"
    );
    assert!(waiter.is_running(), "withlock stopped waiting");

    assert!(second.release().success());
    let (status, err) = waiter.finish();
    assert!(status.success(), "{status}: {err}");
    assert_eq!(
        fs::read_to_string(&marker).unwrap(),
        "1\n",
        "the command ran without the lock on the file at the path"
    );
}

/// A lock file deleted while withlock waits on it: once it is free,
/// withlock creates a new one at the path, locks that and runs.
#[test]
fn a_lock_file_deleted_while_waiting_is_created_anew() {
    let env = Env::new();
    let path = env.lock_file("t");
    let marker = env.file("ran");
    let first = env.hold(env.withlock().arg("t"), "first");
    let mut waiter = start_waiter(&env, &marker);
    wait_blocked(&path, waiter.pid());

    fs::remove_file(&path).unwrap();
    assert!(first.release().success());

    let (status, err) = waiter.finish();
    assert!(status.success(), "{status}: {err}");
    assert_eq!(
        fs::read_to_string(&marker).unwrap(),
        "1\n",
        "the command ran holding a lock on a deleted file"
    );
    let meta = fs::symlink_metadata(&path).unwrap();
    assert!(meta.is_file(), "no lock file at {}", path.display());
    assert_eq!(meta.mode() & 0o7777, 0o666);
    assert!(holding(&path).is_empty() && blocked_on(&path).is_empty());
}

/// A lock given by path is flock(2) on that file: flock(1) on the same path
/// sees withlock's lock, and withlock sees flock(1)'s.
#[test]
fn a_lock_by_path_excludes_flock_and_flock_excludes_it() {
    let env = Env::new();
    let path = env.lock_dir().join("x.lock");
    let flock_n = || {
        output(Command::new("flock").arg("-n").arg(&path).arg("true"))
            .status
            .code()
    };

    let held = env.hold(env.withlock().arg(&path), "withlock");
    assert_eq!(holding(&path), [held.pid()]);
    assert_eq!(flock_n(), Some(1), "flock(1) took a lock withlock holds");
    assert!(held.release().success());
    assert_eq!(flock_n(), Some(0));

    let marker = env.file("ran");
    let flock = env.hold_flock(&path, "flock");
    let out = env
        .withlock()
        .arg("-n")
        .arg(&path)
        .arg("--")
        .arg("touch")
        .arg(&marker)
        .output();
    assert_eq!(out.status.code(), Some(CONFLICT), "{}", stderr(&out));
    assert!(
        !marker.exists(),
        "withlock ran while flock(1) held the lock"
    );
    assert!(flock.release().success());

    env.withlock()
        .arg("-n")
        .arg(&path)
        .arg("--")
        .arg("touch")
        .arg(&marker)
        .assert()
        .success();
    assert!(marker.exists());
}
