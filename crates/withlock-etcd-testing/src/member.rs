//! One etcd process: a member of a one-member server ([`Etcd`](crate::Etcd))
//! or of a [`Cluster`](crate::Cluster). It listens for clients and peers on
//! free ports of 127.0.0.1 only, keeps its data and log in a directory of
//! the test, and is killed (SIGKILL) when dropped. Its readiness is the
//! member answering `etcdctl endpoint health`, which needs a quorum: a
//! member counts as started once its cluster can serve a read.

use std::ffi::OsString;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::access::Access;
use crate::binaries::{DEFAULT_ETCD, DEFAULT_ETCDCTL, clean_env, require_binaries};

/// How long a member (or a whole cluster) may take to answer.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A member's process and what it takes to start it again.
pub struct Member {
    name: String,
    client_port: u16,
    dir: PathBuf,
    args: Vec<OsString>,
    child: Option<Child>,
    access: Access,
}

/// Ports and peers a member starts with.
pub(crate) struct Plan<'a> {
    pub(crate) name: &'a str,
    pub(crate) client_port: u16,
    pub(crate) peer_port: u16,
    /// `name=http://127.0.0.1:PEER` for every member, comma-separated.
    pub(crate) initial_cluster: &'a str,
    /// Unique per cluster, so members of two tests never join each other.
    pub(crate) token: &'a str,
}

impl Member {
    /// Starts a member (without waiting for it) in `parent/<name>`.
    pub(crate) fn spawn(parent: &Path, plan: &Plan<'_>, access: Access) -> Member {
        let dir = parent.join(plan.name);
        std::fs::create_dir_all(&dir).expect("create a member directory");
        let client_url = format!("{}://127.0.0.1:{}", access.http_scheme(), plan.client_port);
        let peer_url = format!("http://127.0.0.1:{}", plan.peer_port);
        let mut args: Vec<OsString> = vec![
            "--name".into(),
            plan.name.into(),
            "--data-dir".into(),
            dir.join("data").into(),
            "--listen-client-urls".into(),
            client_url.clone().into(),
            "--advertise-client-urls".into(),
            client_url.into(),
            "--listen-peer-urls".into(),
            peer_url.clone().into(),
            "--initial-advertise-peer-urls".into(),
            peer_url.into(),
            "--initial-cluster".into(),
            plan.initial_cluster.into(),
            "--initial-cluster-token".into(),
            plan.token.into(),
            "--initial-cluster-state".into(),
            "new".into(),
            "--logger".into(),
            "zap".into(),
            "--log-outputs".into(),
            "stderr".into(),
        ];
        args.extend(access.server_args());
        let mut member = Member {
            name: plan.name.to_owned(),
            client_port: plan.client_port,
            dir,
            args,
            child: None,
            access,
        };
        member.launch();
        member
    }

    /// Runs the process with the member's arguments; its data directory
    /// decides whether it joins as new or comes back.
    fn launch(&mut self) {
        require_binaries(Path::new(DEFAULT_ETCD), Path::new(DEFAULT_ETCDCTL));
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the member's log");
        let mut command = Command::new(DEFAULT_ETCD);
        clean_env(&mut command);
        let child = command
            .args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log"))
            .stderr(log)
            .spawn()
            .expect("run etcd");
        self.child = Some(child);
    }

    /// The member's name in its cluster.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `127.0.0.1:PORT`, where it serves clients.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The port it serves clients on.
    pub fn port(&self) -> u16 {
        self.client_port
    }

    /// A withlock URL for this member alone: `etcd://` or, with TLS,
    /// `etcds://`.
    pub fn url(&self) -> String {
        format!("{}://{}", self.access.url_scheme(), self.endpoint())
    }

    /// The process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => child.try_wait().expect("check on etcd").is_none(),
            None => false,
        }
    }

    /// `etcdctl` (API 3) for this member alone, as the administrator
    /// ([`ROOT_USER`](crate::ROOT_USER)) when auth is on.
    pub fn etcdctl(&self) -> Command {
        self.access.etcdctl(&[self.endpoint()])
    }

    /// What the member has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Kills the process at once (SIGKILL, no goodbye to its peers) and
    /// reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed member again, on the same ports with its data.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "member {} still runs", self.name);
        self.launch();
    }

    pub(crate) fn access(&self) -> &Access {
        &self.access
    }

    pub(crate) fn set_access(&mut self, access: Access) {
        self.access = access;
    }

    /// Waits until the member answers a health check (which needs its
    /// cluster's quorum). `Err` with its log if the process ended first:
    /// most often a port someone else took meanwhile.
    pub(crate) fn wait_healthy(&mut self, deadline: Instant) -> Result<(), String> {
        loop {
            if !self.is_running() {
                return Err(format!("etcd member {} exited:\n{}", self.name, self.log()));
            }
            if self.healthy() {
                return Ok(());
            }
            assert!(
                Instant::now() < deadline,
                "etcd member {} did not become healthy within {START_TIMEOUT:?}; log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn healthy(&self) -> bool {
        self.etcdctl()
            .args(["endpoint", "health", "--command-timeout=2s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("etcd.log")
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill();
    }
}
