//! The harness itself against the real etcd: each kind of server answers
//! as it says, and refuses what it should, so that a backend test failing
//! against it points at the backend.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};

use withlock_etcd_testing::{Cluster, Etcd, Options, Proxy, USER, USER_PASSWORD, USER_PREFIX};

fn run(mut command: Command, args: &[&str]) -> Output {
    command.args(args).output().expect("run etcdctl")
}

fn ok(command: Command, args: &[&str]) -> String {
    let output = run(command, args);
    assert!(
        output.status.success(),
        "etcdctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn a_member_stores_and_reads_keys() {
    let etcd = Etcd::start();
    assert_eq!(etcd.url(), format!("etcd://{}", etcd.endpoint()));
    ok(etcd.etcdctl(), &["put", "k", "v"]);
    assert_eq!(
        ok(etcd.etcdctl(), &["get", "k", "--print-value-only"]),
        "v\n"
    );
}

#[test]
fn with_auth_the_user_writes_under_its_prefix_only() {
    let etcd = Etcd::start_auth();
    let key = format!("{USER_PREFIX}k");
    ok(etcd.etcdctl_as(USER, USER_PASSWORD), &["put", &key, "v"]);
    let outside = run(etcd.etcdctl_as(USER, USER_PASSWORD), &["put", "other", "v"]);
    assert!(!outside.status.success());
    let wrong = run(etcd.etcdctl_as(USER, "wrong"), &["put", &key, "v"]);
    assert!(!wrong.status.success());
    // The administrator reads it all.
    assert_eq!(
        ok(etcd.etcdctl(), &["get", &key, "--print-value-only"]),
        "v\n"
    );
}

#[test]
fn with_tls_clients_verify_the_server_and_plain_text_is_refused() {
    let etcd = Etcd::start_tls();
    assert_eq!(etcd.url(), format!("etcds://{}", etcd.endpoint()));
    ok(etcd.etcdctl(), &["put", "k", "v"]);
    let mut plain = Command::new("/usr/bin/etcdctl");
    plain
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=http://{}", etcd.endpoint()));
    let refused = run(
        plain,
        &["get", "k", "--dial-timeout=1s", "--command-timeout=2s"],
    );
    assert!(!refused.status.success());
    let mut untrusted = Command::new("/usr/bin/etcdctl");
    untrusted
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=https://{}", etcd.endpoint()))
        .arg("--cacert")
        .arg(&etcd.tls().other_ca);
    let refused = run(
        untrusted,
        &["get", "k", "--dial-timeout=1s", "--command-timeout=2s"],
    );
    assert!(!refused.status.success());
}

#[test]
fn with_client_certificates_a_stranger_is_refused() {
    let etcd = Etcd::start_tls_client_certs();
    ok(etcd.etcdctl(), &["put", "k", "v"]);
    let tls = etcd.tls();
    let mut stranger = Command::new("/usr/bin/etcdctl");
    stranger
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=https://{}", etcd.endpoint()))
        .arg("--cacert")
        .arg(&tls.ca)
        .arg("--cert")
        .arg(&tls.stranger_cert)
        .arg("--key")
        .arg(&tls.stranger_key);
    let refused = run(
        stranger,
        &["get", "k", "--dial-timeout=1s", "--command-timeout=2s"],
    );
    assert!(!refused.status.success());
}

#[test]
fn with_client_certificates_and_auth_the_certificate_names_the_user() {
    let etcd = Etcd::start_with(Options {
        auth: true,
        tls: true,
        client_certs: true,
    });
    let tls = etcd.tls();
    let as_cert = |cert: &std::path::Path, key: &std::path::Path| {
        let mut command = Command::new("/usr/bin/etcdctl");
        command
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints=https://{}", etcd.endpoint()))
            .arg("--cacert")
            .arg(&tls.ca)
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key);
        command
    };
    let key = format!("{USER_PREFIX}k");
    ok(
        as_cert(&tls.client_cert, &tls.client_key),
        &["put", &key, "v"],
    );
    let outside = run(
        as_cert(&tls.client_cert, &tls.client_key),
        &["put", "x", "v"],
    );
    assert!(
        !outside.status.success(),
        "{USER} may not write outside its prefix"
    );
    ok(as_cert(&tls.root_cert, &tls.root_key), &["put", "x", "v"]);
}

#[test]
fn a_cluster_elects_a_new_leader_and_stops_without_a_quorum() {
    let mut cluster = Cluster::start(3);
    assert_eq!(
        cluster.url(),
        format!("etcd://{}", cluster.endpoints().join(","))
    );
    ok(cluster.etcdctl(), &["put", "k", "1"]);
    let leader = cluster.leader();
    cluster.kill(leader);
    let next = cluster.leader();
    assert_ne!(next, leader);
    ok(cluster.etcdctl(), &["put", "k", "2"]);
    let survivor = (0..3).find(|&i| i != leader && i != next).unwrap();
    cluster.kill(next);
    let refused = run(
        cluster.member(survivor).etcdctl(),
        &["put", "k", "3", "--command-timeout=2s"],
    );
    assert!(!refused.status.success(), "no quorum, no write");
    cluster.restart(leader);
    ok(cluster.etcdctl(), &["put", "k", "4"]);
}

#[test]
fn a_proxy_forwards_until_severed_then_refuses() {
    let etcd = Etcd::start();
    let proxy = Proxy::start(etcd.endpoint());
    let mut through = Command::new("/usr/bin/etcdctl");
    through
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", proxy.endpoint()));
    ok(through, &["put", "k", "v"]);
    let mut held = TcpStream::connect(proxy.addr()).unwrap();
    proxy.freeze();
    // Frozen: the connection stays open and carries nothing.
    held.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
    held.set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 64];
    let err = held.read(&mut buf).unwrap_err();
    assert!(matches!(
        err.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    ));
    proxy.sever();
    held.set_read_timeout(None).unwrap();
    assert_eq!(held.read(&mut buf).unwrap_or(0), 0, "severed: closed");
    assert!(TcpStream::connect(proxy.addr()).is_err(), "refused");
}
