//! Where the etcd programs are, and how a test starts one of them: with
//! none of the caller's `ETCD*` settings, and failing (never skipping) with
//! the command that installs them when they are missing.

use std::path::Path;
use std::process::Command;

/// Where the server binary is looked for by default.
pub const DEFAULT_ETCD: &str = "/usr/bin/etcd";

/// Where the client binary is looked for by default.
pub const DEFAULT_ETCDCTL: &str = "/usr/bin/etcdctl";

/// Leaves none of the caller's `ETCD*` settings to a process: etcd reads
/// `ETCD_<FLAG>` as flags, etcdctl `ETCDCTL_<FLAG>`.
pub(crate) fn clean_env(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("ETCD") {
            command.env_remove(key);
        }
    }
}

/// Fails the test, never skips it, with the command that installs the
/// binaries if either is missing.
pub(crate) fn require_binaries(etcd: &Path, etcdctl: &Path) {
    for tool in [etcd, etcdctl] {
        assert!(
            tool.is_file(),
            "etcd not found ({} is missing): install it with \
             `apt-get install -y etcd-server etcd-client`",
            tool.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "install it with `apt-get install -y etcd-server etcd-client`")]
    fn missing_binaries_fail_with_the_command_that_installs_them() {
        let empty = tempfile::tempdir().unwrap();
        require_binaries(&empty.path().join("etcd"), &empty.path().join("etcdctl"));
    }
}
