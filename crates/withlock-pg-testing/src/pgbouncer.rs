//! pgbouncer in front of a [`TestServer`], in a pool mode of the test's
//! choice, on a free port on 127.0.0.1, trust authentication, run in the
//! foreground as the server user (pgbouncer refuses root) and killed when
//! dropped.
//!
//! The binary is `WITHLOCK_PGBOUNCER`, else `/usr/sbin/pgbouncer`; without
//! it the test fails with the command that installs it: never a skip.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::TestServer;

/// Where pgbouncer is looked for by default.
const DEFAULT_PGBOUNCER: &str = "/usr/sbin/pgbouncer";

/// How long pgbouncer may take to listen.
const START_BOUND: Duration = Duration::from_secs(30);

/// pgbouncer's `pool_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// A server session per client session, reset when the client leaves.
    Session,
    /// A server session per transaction.
    Transaction,
    /// A server session per statement.
    Statement,
}

impl PoolMode {
    fn name(self) -> &'static str {
        match self {
            PoolMode::Session => "session",
            PoolMode::Transaction => "transaction",
            PoolMode::Statement => "statement",
        }
    }
}

/// A running pgbouncer; killed on drop.
pub struct Pgbouncer {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Pgbouncer {
    /// Starts pgbouncer for `server`'s `postgres` database in `mode`, and
    /// returns once it accepts connections.
    pub fn start(server: &TestServer, mode: PoolMode) -> Pgbouncer {
        let binary = PathBuf::from(
            std::env::var_os("WITHLOCK_PGBOUNCER").unwrap_or(DEFAULT_PGBOUNCER.into()),
        );
        require_pgbouncer(&binary);
        let (uid, gid) = server.user();
        let dir = tempfile::Builder::new()
            .prefix("withlock-pgbouncer-")
            .tempdir()
            .expect("temporary directory");
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown");
        let port = crate::server::free_port();
        let users = dir.path().join("users.txt");
        std::fs::write(&users, "\"postgres\" \"\"\n").expect("write users.txt");
        let ini = dir.path().join("pgbouncer.ini");
        let config = format!(
            "[databases]\n\
             postgres = host=127.0.0.1 port={server_port} dbname=postgres\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {users}\n\
             pool_mode = {mode}\n\
             logfile = {log}\n",
            server_port = server.port(),
            users = users.display(),
            mode = mode.name(),
            log = dir.path().join("pgbouncer.log").display(),
        );
        std::fs::write(&ini, config).expect("write pgbouncer.ini");
        let mut command = Command::new(&binary);
        command
            .arg(&ini)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if uid != crate::server::current_uid() {
            command.uid(uid).gid(gid);
        }
        let child = command.spawn().expect("run pgbouncer");
        let mut pgbouncer = Pgbouncer { child, port, dir };
        pgbouncer.wait_for_listening();
        pgbouncer
    }

    /// A URL for the server's `postgres` database through pgbouncer.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn wait_for_listening(&mut self) {
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(status) = self.child.try_wait().expect("pgbouncer status") {
                panic!("pgbouncer exited ({status}); log:\n{}", self.log());
            }
            assert!(
                start.elapsed() < START_BOUND,
                "pgbouncer did not listen within {START_BOUND:?}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// Fails the test, never skips it, with the command that installs
/// pgbouncer if it is not at `binary`.
fn require_pgbouncer(binary: &Path) {
    assert!(
        binary.is_file(),
        "pgbouncer not found at {}: install it with `apt-get install -y pgbouncer` \
         (or set WITHLOCK_PGBOUNCER to its path)",
        binary.display()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "install it with `apt-get install -y pgbouncer`")]
    fn a_missing_pgbouncer_fails_with_the_command_that_installs_it() {
        let empty = tempfile::tempdir().unwrap();
        require_pgbouncer(&empty.path().join("pgbouncer"));
    }
}
