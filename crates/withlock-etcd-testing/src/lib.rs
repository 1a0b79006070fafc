//! What withlock's tests need to exercise the etcd backend against real
//! servers: a private one-member server per test ([`Etcd`], optionally with
//! auth and TLS), a cluster of several members on loopback whose members a
//! test can kill ([`Cluster`]), and a TCP proxy that can freeze or sever a
//! client's connection ([`Proxy`]). Dev-only.
//!
//! The binaries are `/usr/bin/etcd` and `/usr/bin/etcdctl` (Debian's
//! `etcd-server` and `etcd-client`); if either is missing, a test fails
//! with the command that installs them: the suite never skips.
#![deny(missing_docs)]

mod access;
mod binaries;
mod cluster;
mod member;
mod proxy;
mod server;
mod tls;

pub use binaries::{DEFAULT_ETCD, DEFAULT_ETCDCTL};
pub use cluster::Cluster;
pub use member::Member;
pub use proxy::Proxy;
pub use server::{Etcd, Options};
pub use tls::{SERVER_NAME, TlsFiles};

/// The administrator of a server started with auth on.
pub const ROOT_USER: &str = "root";

/// [`ROOT_USER`]'s password.
pub const ROOT_PASSWORD: &str = "root-secret-Pw1";

/// The normal user of a server started with auth on.
pub const USER: &str = "withlock-user";

/// [`USER`]'s password.
pub const USER_PASSWORD: &str = "user-secret-Pw2";

/// The key prefix [`USER`]'s role may read and write; nothing else.
pub const USER_PREFIX: &str = "granted/";

/// A free port on 127.0.0.1 (free now: someone may take it before use).
pub(crate) fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}
