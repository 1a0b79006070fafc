//! The etcd backend's user/password and TLS set-ups through the real
//! binary, against one-member servers with auth on, TLS, and client
//! certificates demanded (`withlock_etcd_testing::Etcd`): what works,
//! and each wrong set-up's one line and status, never with the password.

use std::process::Output;

use withlock_etcd_testing::{Etcd, USER, USER_PASSWORD, USER_PREFIX};

use crate::support::{Env, stderr};

/// Runs `withlock -n NAME -- COMMAND` with `WITHLOCK_URL=url` and `envs`.
fn run(env: &Env, url: &str, envs: &[(&str, &str)], name: &str, command: &[&str]) -> Output {
    let mut run = env.withlock().args(["-n", name, "--"]).args(command);
    run.env("WITHLOCK_URL", url);
    for (key, value) in envs {
        run.env(key, value);
    }
    run.output()
}

/// The one line of a refusal with `code` that says `says`, and nothing ran.
fn refused(out: &Output, code: i32, says: &str, ran: &std::path::Path) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(err.contains(says), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!ran.exists(), "the command ran");
}

#[test]
fn a_user_with_its_password_takes_locks_under_its_prefix_and_nothing_shows_the_password() {
    let env = Env::new();
    let etcd = Etcd::start_auth();
    let prefix = USER_PREFIX.trim_end_matches('/');
    let url = format!(
        "{}/{prefix}",
        etcd.url().replacen("://", &format!("://{USER}@"), 1)
    );
    let password = [("ETCDCTL_PASSWORD", USER_PASSWORD)];
    // The command shows what others can read meanwhile: the key's value
    // and withlock's own command line.
    let out = run(
        &env,
        &url,
        &password,
        "deploy",
        &[
            "sh",
            "-c",
            "cat /proc/$PPID/cmdline; echo; printenv WITHLOCK_FENCE",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let seen = String::from_utf8_lossy(&out.stdout);
    assert!(!seen.contains(USER_PASSWORD), "{seen}");
    let holder = holder_record(&etcd, &env, &url);
    assert!(holder.contains("\"pid\""), "{holder}");
    assert!(!holder.contains(USER_PASSWORD), "{holder}");

    // The password from a file named in the URL works as well.
    let file = env.file("password");
    std::fs::write(&file, format!("{USER_PASSWORD}\n")).unwrap();
    let with_file = format!("{url}?password-file={}", file.display());
    let out = run(&env, &with_file, &[], "deploy", &["true"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn wrong_credentials_no_user_and_no_permission_exit_77_without_the_password() {
    let env = Env::new();
    let etcd = Etcd::start_auth();
    let ran = env.file("ran");
    let touch = ["touch", &*ran.to_string_lossy()].map(str::to_owned);
    let touch: Vec<&str> = touch.iter().map(String::as_str).collect();
    let as_user = etcd.url().replacen("://", &format!("://{USER}@"), 1);
    let prefix = USER_PREFIX.trim_end_matches('/');

    let wrong = [("ETCDCTL_PASSWORD", "not-the-Pw9")];
    let out = run(
        &env,
        &format!("{as_user}/{prefix}"),
        &wrong,
        "deploy",
        &touch,
    );
    refused(&out, 77, "refused the user", &ran);
    assert!(!stderr(&out).contains("not-the-Pw9"));

    let out = run(&env, &etcd.url(), &[], "deploy", &touch);
    refused(&out, 77, "requires a user", &ran);

    // Outside the prefix its role may use.
    let password = [("ETCDCTL_PASSWORD", USER_PASSWORD)];
    let out = run(&env, &as_user, &password, "deploy", &touch);
    refused(&out, 77, "grant-permission", &ran);
    assert!(!stderr(&out).contains(USER_PASSWORD));
}

#[test]
fn tls_with_the_clusters_ca_works_and_each_mismatch_exits_78() {
    let env = Env::new();
    let etcd = Etcd::start_tls();
    let ca = etcd.tls().ca.display().to_string();
    let ran = env.file("ran");
    let touch = ["touch", &*ran.to_string_lossy()].map(str::to_owned);
    let touch: Vec<&str> = touch.iter().map(String::as_str).collect();
    let out = run(
        &env,
        &format!("{}?cacert={ca}", etcd.url()),
        &[],
        "deploy",
        &["true"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(
        &env,
        &etcd.url(),
        &[("ETCDCTL_CACERT", &ca)],
        "deploy",
        &["true"],
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // The system's roots do not know the test CA; another CA neither.
    let out = run(&env, &etcd.url(), &[], "deploy", &touch);
    refused(&out, 78, "TLS", &ran);
    let other = etcd.tls().other_ca.display().to_string();
    let out = run(
        &env,
        &format!("{}?cacert={other}", etcd.url()),
        &[],
        "deploy",
        &touch,
    );
    refused(&out, 78, "TLS", &ran);
    // Plain HTTP to a TLS cluster.
    let plain = etcd.url().replacen("etcds://", "etcd://", 1);
    let out = run(&env, &plain, &[], "deploy", &touch);
    refused(&out, 78, "serves TLS", &ran);

    // TLS to a plain cluster.
    let plain_etcd = Etcd::start();
    let tls = plain_etcd.url().replacen("etcd://", "etcds://", 1);
    let out = run(&env, &format!("{tls}?cacert={ca}"), &[], "deploy", &touch);
    refused(&out, 78, "TLS", &ran);
}

#[test]
fn a_cluster_that_demands_client_certificates_takes_only_ours() {
    let env = Env::new();
    let etcd = Etcd::start_tls_client_certs();
    let files = etcd.tls();
    let ran = env.file("ran");
    let touch = ["touch", &*ran.to_string_lossy()].map(str::to_owned);
    let touch: Vec<&str> = touch.iter().map(String::as_str).collect();
    let url = format!("{}?cacert={}", etcd.url(), files.ca.display());
    let with_cert = format!(
        "{url}&cert={}&key={}",
        files.client_cert.display(),
        files.client_key.display()
    );
    let out = run(&env, &with_cert, &[], "deploy", &["true"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&env, &url, &[], "deploy", &touch);
    refused(&out, 78, "TLS", &ran);
    let missing = format!("{url}&cert=/nonexistent.pem&key=/nonexistent.key");
    let out = run(&env, &missing, &[], "deploy", &touch);
    refused(&out, 78, "/nonexistent.pem", &ran);
}

/// What the holder record of a lock held through `url` says, read by root.
fn holder_record(etcd: &Etcd, env: &Env, url: &str) -> String {
    let mut run = env.withlock().arg("held");
    run.env("WITHLOCK_URL", url);
    run.env("ETCDCTL_PASSWORD", USER_PASSWORD);
    let holder = env.hold(run, "h");
    let out = etcd
        .etcdctl()
        .args([
            "get",
            "--prefix",
            "--print-value-only",
            &format!("{USER_PREFIX}held/"),
        ])
        .output()
        .unwrap();
    assert!(holder.release().success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}
