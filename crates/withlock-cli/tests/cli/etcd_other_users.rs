//! What other etcd users and clients can do to a withlock holder, through
//! the real binary against a private member with auth or TLS
//! (`withlock_etcd_testing::Etcd`), beside `etcd_security.rs`'s set-ups:
//! an etcd user whose role grants another prefix cannot take, see or
//! remove the holder's key, and is refused with 77 while the holder holds
//! on; the holder's password shows in none of what others read (its key's
//! value, its command line, a busy message, `--list`, `--json`); a client
//! certificate signed by another authority is refused with 78.

use std::fs;
use std::path::Path;

use withlock_etcd_testing::{Etcd, USER, USER_PASSWORD, USER_PREFIX};

use crate::support::{Env, Run, stderr};

/// A test's directory and binary, and its own member with auth on.
struct AuthEnv {
    env: Env,
    etcd: Etcd,
}

impl AuthEnv {
    fn new() -> AuthEnv {
        AuthEnv {
            env: Env::new(),
            etcd: Etcd::start_auth(),
        }
    }

    /// `withlock` as `user` with `password` (in etcdctl's variable), on
    /// the prefix `prefix` of the member.
    fn withlock_as(&self, user: &str, password: &str, prefix: &str) -> Run {
        let mut run = self.env.withlock();
        run.env(
            "WITHLOCK_URL",
            format!("etcd://{user}@{}/{prefix}", self.etcd.endpoint()),
        );
        run.env("ETCDCTL_PASSWORD", password);
        run
    }

    /// `withlock` as [`USER`] under the prefix its role grants.
    fn withlock(&self) -> Run {
        self.withlock_as(USER, USER_PASSWORD, USER_PREFIX.trim_end_matches('/'))
    }

    /// Every key and value on the member, as its administrator reads them.
    fn everything(&self) -> String {
        let out = self
            .etcd
            .etcdctl()
            .args(["get", "--prefix", ""])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Runs `run -- touch RAN`, expecting `code` and one line that contains
/// `says` (in any case) and not `secret`, if given; nothing ran.
fn refused(run: Run, ran: &Path, code: i32, says: &str, secret: Option<&str>) -> String {
    let out = run.args(["deploy", "--", "touch"]).arg(ran).output();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(err.to_lowercase().contains(&says.to_lowercase()), "{err}");
    if let Some(secret) = secret {
        assert!(!err.contains(secret), "the secret in: {err}");
    }
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!ran.exists(), "the command ran");
    err
}

#[test]
fn the_holder_s_password_shows_in_nothing_others_read() {
    let ae = AuthEnv::new();
    let holder = ae.env.hold(ae.withlock().arg("deploy"), "h");
    let stored = ae.everything();
    assert!(
        stored.contains(&format!("{USER_PREFIX}deploy/")),
        "{stored}"
    );
    assert!(
        !stored.contains(USER_PASSWORD),
        "in the holder record: {stored}"
    );
    let cmdline = fs::read(format!("/proc/{}/cmdline", holder.pid())).unwrap();
    assert!(!String::from_utf8_lossy(&cmdline).contains(USER_PASSWORD));
    let busy = ae.withlock().args(["-n", "deploy", "--", "true"]).output();
    assert_eq!(busy.status.code(), Some(75), "{}", stderr(&busy));
    assert!(
        stderr(&busy).contains(&format!("pid {}", holder.pid())),
        "{}",
        stderr(&busy)
    );
    for listing in [&["--list"][..], &["--list", "--json"][..]] {
        let out = ae.withlock().args(listing).arg("deploy").output();
        assert!(out.status.success(), "{listing:?}: {}", stderr(&out));
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
        assert!(
            all.contains(&holder.pid().to_string()),
            "{listing:?}: {all}"
        );
        assert!(!all.contains(USER_PASSWORD), "{listing:?}: {all}");
    }
    assert!(holder.release().success());
    assert!(
        !ae.everything().contains("deploy/"),
        "the key outlived the release"
    );
}

#[test]
fn another_etcd_user_neither_takes_sees_nor_removes_a_holder() {
    let ae = AuthEnv::new();
    ae.etcd.add_user("other", "other-Pw-55", Some("elsewhere/"));
    let holder = ae.env.hold(ae.withlock().arg("deploy"), "h");
    let ran = ae.env.file("ran");
    let prefix = USER_PREFIX.trim_end_matches('/');
    let err = refused(
        ae.withlock_as("other", "other-Pw-55", prefix),
        &ran,
        77,
        prefix,
        Some("other-Pw-55"),
    );
    eprintln!("no rights: {err}");
    // Nor can it see who holds the lock, nor take it out of line.
    let list = ae
        .withlock_as("other", "other-Pw-55", prefix)
        .args(["--list", "deploy"])
        .output();
    assert!(!String::from_utf8_lossy(&list.stdout).contains(&holder.pid().to_string()));
    let del = ae
        .etcd
        .etcdctl_as("other", "other-Pw-55")
        .args(["del", "--prefix", USER_PREFIX])
        .output()
        .unwrap();
    assert!(
        !del.status.success(),
        "etcd let another user delete the key"
    );
    // Its own prefix works as usual.
    ae.withlock_as("other", "other-Pw-55", "elsewhere")
        .args(["-n", "deploy", "--", "true"])
        .assert()
        .code(0);
    assert_eq!(
        ae.withlock()
            .args(["-n", "deploy", "--", "true"])
            .output()
            .status
            .code(),
        Some(75),
        "the holder still holds"
    );
    assert!(holder.release().success());
}

#[test]
fn a_client_certificate_from_another_authority_is_refused_with_78() {
    let env = Env::new();
    let etcd = Etcd::start_tls_client_certs();
    let tls = etcd.tls();
    let ran = env.file("ran");
    let url = format!(
        "{}?cacert={}&cert={}&key={}",
        etcd.url(),
        tls.ca.display(),
        tls.stranger_cert.display(),
        tls.stranger_key.display()
    );
    let mut run = env.withlock();
    run.env("WITHLOCK_URL", url);
    let err = refused(run, &ran, 78, "TLS", None);
    eprintln!("a stranger's certificate: {err}");
}
