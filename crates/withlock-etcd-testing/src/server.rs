//! A throwaway one-member etcd for one test: its own temporary directory,
//! free ports on 127.0.0.1, killed when dropped. Optionally with auth on
//! (the administrator [`ROOT_USER`] and a normal user [`USER`] whose role
//! may read and write keys under [`USER_PREFIX`] only) and with TLS
//! (certificates of its own, [`TlsFiles`]; optionally demanding client
//! certificates).

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use crate::access::Access;
use crate::member::{Member, Plan, START_TIMEOUT};
use crate::tls::{self, TlsFiles};
use crate::{ROOT_PASSWORD, ROOT_USER, USER, USER_PASSWORD, USER_PREFIX, free_port};

/// How a one-member server is set up.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Auth on: [`ROOT_USER`] and [`USER`], with their passwords.
    pub auth: bool,
    /// TLS on clients' connections (`etcds://`).
    pub tls: bool,
    /// With TLS: clients must show a certificate from [`TlsFiles::ca`].
    pub client_certs: bool,
}

/// A running one-member server, killed on drop.
pub struct Etcd {
    member: Member,
    tls: Option<TlsFiles>,
    // Last: removed after the member is killed.
    dir: tempfile::TempDir,
}

impl Etcd {
    /// A plain server: no TLS, no auth.
    pub fn start() -> Etcd {
        Etcd::start_with(Options::default())
    }

    /// With auth on ([`ROOT_USER`], [`USER`]).
    pub fn start_auth() -> Etcd {
        Etcd::start_with(Options {
            auth: true,
            ..Options::default()
        })
    }

    /// With TLS ([`Etcd::tls`]); any client may connect.
    pub fn start_tls() -> Etcd {
        Etcd::start_with(Options {
            tls: true,
            ..Options::default()
        })
    }

    /// With TLS and client certificates demanded.
    pub fn start_tls_client_certs() -> Etcd {
        Etcd::start_with(Options {
            tls: true,
            client_certs: true,
            ..Options::default()
        })
    }

    /// As `options` say.
    pub fn start_with(options: Options) -> Etcd {
        assert!(
            options.tls || !options.client_certs,
            "client certificates need TLS"
        );
        let dir = tempfile::Builder::new()
            .prefix("withlock-etcd-")
            .tempdir()
            .expect("temporary directory");
        let tls = options.tls.then(|| tls::write(dir.path()));
        let access = match &tls {
            Some(files) => Access::tls(files.clone(), options.client_certs),
            None => Access::plain(),
        };
        let member = start_member(dir.path(), access);
        let mut etcd = Etcd { member, tls, dir };
        if options.auth {
            etcd.enable_auth();
        }
        etcd
    }

    /// The URL withlock connects with: `etcd://127.0.0.1:PORT`, or
    /// `etcds://` with TLS.
    pub fn url(&self) -> String {
        self.member.url()
    }

    /// `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        self.member.endpoint()
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.member.port()
    }

    /// `etcdctl` (API 3) with `--endpoints` set (and the TLS files), as
    /// [`ROOT_USER`] when auth is on.
    pub fn etcdctl(&self) -> Command {
        self.member.etcdctl()
    }

    /// The same, logged in as `user` (with a client certificate, the one
    /// of [`USER`] for that user, root's for any other).
    pub fn etcdctl_as(&self, user: &str, password: &str) -> Command {
        self.member
            .access()
            .logged_in(user, password)
            .etcdctl(&[self.endpoint()])
    }

    /// The certificates of a server with TLS.
    pub fn tls(&self) -> &TlsFiles {
        self.tls
            .as_ref()
            .expect("the server was started without TLS")
    }

    /// This test's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The member process, e.g. for its log or pid.
    pub fn member(&self) -> &Member {
        &self.member
    }

    /// Kills the server (SIGKILL) and starts it again on the same port
    /// with its data; returns once it answers.
    pub fn restart(&mut self) {
        self.member.kill();
        self.member.restart();
        self.member
            .wait_healthy(Instant::now() + START_TIMEOUT)
            .expect("the restarted member runs");
    }

    /// Adds `user` with `password` and a role of the same name that may
    /// read and write the keys starting with `prefix` (none if `None`).
    pub fn add_user(&self, user: &str, password: &str, prefix: Option<&str>) {
        self.ctl(&["role", "add", user]);
        if let Some(prefix) = prefix {
            self.ctl(&[
                "role",
                "grant-permission",
                user,
                "--prefix=true",
                "readwrite",
                prefix,
            ]);
        }
        let password = format!("--new-user-password={password}");
        self.ctl(&["user", "add", user, &password, "--interactive=false"]);
        self.ctl(&["user", "grant-role", user, user]);
    }

    fn enable_auth(&mut self) {
        let password = format!("--new-user-password={ROOT_PASSWORD}");
        self.ctl(&["user", "add", ROOT_USER, &password, "--interactive=false"]);
        self.ctl(&["user", "grant-role", ROOT_USER, "root"]);
        self.add_user(USER, USER_PASSWORD, Some(USER_PREFIX));
        self.ctl(&["auth", "enable"]);
        let access = self.member.access().logged_in(ROOT_USER, ROOT_PASSWORD);
        self.member.set_access(access);
    }

    /// Runs an administrative `etcdctl` command that must succeed.
    fn ctl(&self, args: &[&str]) -> Output {
        let output = self.etcdctl().args(args).output().expect("run etcdctl");
        assert!(
            output.status.success(),
            "etcdctl {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }
}

/// Starts the member in `dir` and waits for it to answer; a free port may
/// be taken by someone else before etcd binds it, so tries a few.
fn start_member(dir: &Path, access: Access) -> Member {
    let mut last_log = String::new();
    for attempt in 0..5 {
        let (client_port, peer_port) = (free_port(), free_port());
        let name = format!("m{attempt}");
        let initial_cluster = format!("{name}=http://127.0.0.1:{peer_port}");
        let token = token(dir);
        let plan = Plan {
            name: &name,
            client_port,
            peer_port,
            initial_cluster: &initial_cluster,
            token: &token,
        };
        let mut member = Member::spawn(dir, &plan, access.clone());
        match member.wait_healthy(Instant::now() + START_TIMEOUT) {
            Ok(()) => return member,
            Err(log) => last_log = log,
        }
    }
    panic!("the test etcd did not start: {last_log}");
}

/// A cluster token unique to this test's directory.
pub(crate) fn token(dir: &Path) -> String {
    dir.file_name()
        .expect("a temporary directory has a name")
        .to_string_lossy()
        .into_owned()
}
