//! A symbolic link that another user owns, on the way to the lock directory
//! or at the lock path, is refused (78) with a message naming the link and
//! its owner, whatever fs.protected_symlinks says; nothing is created or
//! opened through it.
//!
//! Every test here needs root: the test user wl-alice plants the links
//! (through setpriv) and the test changes fs.protected_symlinks.

use std::fs;
use std::os::unix::fs::{MetadataExt, lchown};
use std::path::{Path, PathBuf};

use crate::support::{
    ALICE, Env, ProtectedSymlinks, command_as, ensure_user, output, require_root, set_mode, stderr,
};

/// The exit status for an unsafe lock directory or lock path.
const CONFIG: i32 = 78;

fn alice_uid() -> u32 {
    ensure_user(ALICE);
    nix::unistd::User::from_name(ALICE)
        .unwrap()
        .unwrap()
        .uid
        .as_raw()
}

/// What must not change in the link's target directory: its entries, and
/// when they or the directory itself last changed.
fn snapshot(dir: &Path) -> (Vec<PathBuf>, [i64; 4]) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    let meta = fs::metadata(dir).unwrap();
    let times = [
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
    ];
    (entries, times)
}

/// Runs `withlock <args> -- touch <marker>` (with WITHLOCK_DIR = `env_dir`
/// when given) and checks it is refused with 78 in one line naming `link`,
/// wl-alice and `fix`, and that nothing ran.
fn assert_refused(
    env: &Env,
    env_dir: Option<&Path>,
    args: &[&std::ffi::OsStr],
    link: &Path,
    fix: &str,
) {
    let marker = env.file("ran");
    let mut run = env
        .withlock()
        .args(args)
        .arg("--")
        .arg("touch")
        .arg(&marker);
    if let Some(dir) = env_dir {
        run.env("WITHLOCK_DIR", dir);
    }
    let out = run.output();
    let err = stderr(&out);
    let context = format!("{args:?} (WITHLOCK_DIR {env_dir:?})");
    assert_eq!(out.status.code(), Some(CONFIG), "{context}: {err}");
    assert_eq!(err.lines().count(), 1, "{context}: one line: {err:?}");
    let named = format!("{} is a symbolic link owned by {ALICE}", link.display());
    assert!(
        err.contains(&named),
        "{context}: should say {named:?}: {err}"
    );
    assert!(err.contains(fix), "{context}: should say {fix:?}: {err}");
    assert!(!marker.exists(), "{context}: the command ran");
}

/// Needs root. wl-alice plants `appdir` -> a root-owned directory in a
/// sticky directory, and a link at a lock path; root's withlock refuses
/// the link as --dir, as WITHLOCK_DIR, as a component above --dir, as the
/// directory of a lock path and at the lock path, under
/// fs.protected_symlinks 0 (the kernel would follow it) and 1 (the kernel
/// would refuse with a bare EACCES). The target directory is untouched.
/// The same link owned by root is followed.
#[test]
fn a_symlink_another_user_owns_is_refused_whatever_protected_symlinks_says() {
    require_root();
    let alice = alice_uid();
    let env = Env::new();
    // env.path() is sticky and world-writable, owned by root: /tmp.
    let target = env.file("root-owned");
    fs::create_dir(&target).unwrap();
    set_mode(&target, 0o755);
    fs::create_dir(target.join("sub")).unwrap();
    set_mode(&target.join("sub"), 0o755);
    let precious = target.join("precious");
    fs::write(&precious, "precious").unwrap();

    // wl-alice plants both links herself: the test directory and the lock
    // directory are sticky and writable by all, as /tmp and /run/lock are.
    let link = env.file("appdir");
    let lock_link = env.lock_file("planted");
    for (to, at) in [(&target, &link), (&precious, &lock_link)] {
        let out = output(command_as(ALICE, "ln").arg("-s").arg(to).arg(at));
        assert!(out.status.success(), "ln -s as {ALICE}: {}", stderr(&out));
        assert_eq!(fs::symlink_metadata(at).unwrap().uid(), alice);
    }

    let dir_fix = "point --dir (or WITHLOCK_DIR, or the lock path) at the real directory";
    for protected in [0u8, 1] {
        let _sysctl = ProtectedSymlinks::set(protected);
        let before = snapshot(&target);
        let through_link = link.join("deploy.lock");
        let below_link = link.join("sub");
        let cases: [(Option<&Path>, Vec<&std::ffi::OsStr>); 4] = [
            (
                None,
                vec!["--dir".as_ref(), link.as_os_str(), "deploy".as_ref()],
            ),
            (Some(&link), vec!["deploy".as_ref()]),
            (
                None,
                vec!["--dir".as_ref(), below_link.as_os_str(), "deploy".as_ref()],
            ),
            (None, vec![through_link.as_os_str()]),
        ];
        for (env_dir, args) in &cases {
            assert_refused(&env, *env_dir, args, &link, dir_fix);
        }
        assert_refused(&env, None, &["planted".as_ref()], &lock_link, "remove it");
        assert_eq!(
            snapshot(&target),
            before,
            "protected_symlinks={protected}: the target changed"
        );
        assert_eq!(fs::read_to_string(&precious).unwrap(), "precious");
        assert!(!target.join("sub/deploy.lock").exists());
    }

    // The owner was the only objection: root's own link is followed.
    lchown(&link, Some(0), None).unwrap();
    env.withlock()
        .args([
            "--dir".as_ref(),
            link.as_os_str(),
            "deploy".as_ref(),
            "--".as_ref(),
            "true".as_ref(),
        ])
        .assert()
        .success();
    assert!(target.join("deploy.lock").exists());
}
