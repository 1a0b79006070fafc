//! The test command's provisioning (`scripts/provision`): on a machine that
//! lacks a package, a user who cannot install it gets one line with the
//! exact command, and nothing is installed. Needs root (it runs the script
//! as another user).

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::support::{Env, command_as, ensure_user, output, stderr};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/provision");

/// A PATH of only the programs the script needs, so that `cc` (gcc) is
/// missing however complete this machine is.
fn path_lacking_gcc(env: &Env, with: &[(&str, &str)]) -> PathBuf {
    let bin = env.path().join("provision-bin");
    std::fs::create_dir(&bin).unwrap();
    crate::support::set_mode(&bin, 0o755);
    for (name, target) in with {
        symlink(target, bin.join(name)).unwrap();
    }
    bin
}

fn provision_as_alice(path: &Path) -> std::process::Output {
    ensure_user("wl-alice");
    let mut command = command_as("wl-alice", "/usr/bin/env");
    command.args([
        "-i",
        &format!("PATH={}", path.display()),
        "/bin/bash",
        SCRIPT,
        "build",
    ]);
    output(&mut command)
}

#[test]
fn a_user_without_root_gets_the_apt_command_and_nothing_is_installed() {
    let env = Env::new();
    // apt-get is there but is never run: /bin/false would fail the script.
    let path = path_lacking_gcc(
        &env,
        &[
            ("cargo", "/bin/true"),
            ("id", "/usr/bin/id"),
            ("apt-get", "/bin/false"),
        ],
    );
    let out = provision_as_alice(&path);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "missing: gcc: run as root: apt-get update && apt-get install -y \
         --no-install-recommends gcc\n"
    );
}

#[test]
fn a_machine_without_apt_is_told_which_packages_to_find() {
    let env = Env::new();
    let path = path_lacking_gcc(&env, &[("cargo", "/bin/true"), ("id", "/usr/bin/id")]);
    let out = provision_as_alice(&path);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "missing: gcc (Debian's package names) and there is no apt-get here: \
         install their equivalents and run this again\n"
    );
}

#[test]
fn a_machine_without_cargo_is_sent_to_rustup() {
    let env = Env::new();
    let path = path_lacking_gcc(&env, &[("id", "/usr/bin/id")]);
    let out = provision_as_alice(&path);
    assert_eq!(out.status.code(), Some(1));
    let line = stderr(&out);
    assert!(
        line.starts_with("cargo is not on PATH: install Rust"),
        "{line}"
    );
    assert!(line.contains("rustup"), "{line}");
    assert_eq!(line.lines().count(), 1, "{line}");
}
