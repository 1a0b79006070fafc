//! A throwaway PostgreSQL server for one test: `initdb` into its own
//! temporary directory as an unprivileged user (the `postgres` system user
//! when the tests run as root, since the server refuses root), listening
//! on a free port on 127.0.0.1 only, trust authentication, started with
//! `pg_ctl` and stopped (immediate mode) when dropped. It also listens on a
//! Unix socket in its directory ([`TestServer::dir`]). [`TestServer::start_tls`]
//! adds TLS with certificates of its own ([`TlsFiles`]); the role
//! [`PASSWORD_ROLE`] must log in with a password (scram-sha-256), over TCP
//! and the socket, once [`TestServer::create_password_role`] made it.
//!
//! The binaries come from `WITHLOCK_PG_BIN`, else
//! `/usr/lib/postgresql/15/bin`. Missing binaries fail the test with the
//! command that installs them: the suite never skips.

use std::ffi::CString;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use postgres::{Client, NoTls};

use crate::tls::{self, TlsFiles};

/// The role that logs in with a password rather than trust.
pub const PASSWORD_ROLE: &str = "withlock_pw";

/// Where the server binaries are looked for by default.
pub const DEFAULT_BIN: &str = "/usr/lib/postgresql/15/bin";

/// How long a server may take to start or stop.
const START_TIMEOUT_SECS: u32 = 120;

/// A running server, stopped on drop.
pub struct TestServer {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    uid: u32,
    gid: u32,
    tls: Option<TlsFiles>,
    settings: ServerSettings,
}

/// How a server is configured beyond the defaults of [`TestServer::start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerSettings {
    /// TLS on (`ssl=on`), with the certificates of [`TestServer::tls`].
    pub tls: bool,
    /// `fsync`, `full_page_writes` and `synchronous_commit` on, as on a
    /// production server: every commit waits for its WAL to reach the
    /// disk. Off by default, for fast tests.
    pub durable: bool,
    /// `max_connections` (100 by default; superuser_reserved_connections
    /// keeps 3 of them for superusers).
    pub max_connections: u32,
}

impl Default for ServerSettings {
    fn default() -> ServerSettings {
        ServerSettings {
            tls: false,
            durable: false,
            max_connections: 100,
        }
    }
}

impl TestServer {
    /// Creates and starts a server in a new temporary directory.
    pub fn start() -> TestServer {
        TestServer::start_with(ServerSettings::default())
    }

    /// The same with TLS on (`ssl=on`), with the certificates of
    /// [`TestServer::tls`].
    pub fn start_tls() -> TestServer {
        TestServer::start_with(ServerSettings {
            tls: true,
            ..ServerSettings::default()
        })
    }

    /// The same with `settings`.
    pub fn start_with(settings: ServerSettings) -> TestServer {
        let tls = settings.tls;
        let bin = PathBuf::from(std::env::var_os("WITHLOCK_PG_BIN").unwrap_or(DEFAULT_BIN.into()));
        require_binaries(&bin);
        let (uid, gid) = server_user();
        let dir = tempfile::Builder::new()
            .prefix("withlock-pg-")
            .tempdir()
            .expect("temporary directory");
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
            .expect("chown the server directory");
        let mut server = TestServer {
            bin,
            dir,
            port: 0,
            uid,
            gid,
            tls: None,
            settings,
        };
        let data = server.data_dir();
        server.run(
            "initdb",
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-U".as_ref(),
                "postgres".as_ref(),
                "-A".as_ref(),
                "trust".as_ref(),
                "-E".as_ref(),
                "UTF8".as_ref(),
                "--locale=C".as_ref(),
                "-N".as_ref(),
            ],
        );
        server.require_passwords();
        if tls {
            server.tls = Some(tls::write(server.dir(), uid, gid));
        }
        // A free port may be taken by someone else before the server binds
        // it: try a few.
        for _ in 0..5 {
            server.port = free_port();
            if server.pg_ctl_start() {
                return server;
            }
        }
        panic!("the test server did not start; log:\n{}", server.log());
    }

    /// The URL withlock connects with.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A new administrative session, for inspecting the server.
    pub fn client(&self) -> Client {
        Client::connect(&self.url(), NoTls).expect("connect to the test server")
    }

    /// This test's temporary directory (owned by the server user); the
    /// server's Unix socket is `.s.PGSQL.<port>` in it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The user and group the server runs as.
    pub(crate) fn user(&self) -> (u32, u32) {
        (self.uid, self.gid)
    }

    /// The certificates of a server started with [`TestServer::start_tls`].
    pub fn tls(&self) -> &TlsFiles {
        self.tls
            .as_ref()
            .expect("the server was started without TLS")
    }

    /// Creates [`PASSWORD_ROLE`] with `password` (stored as scram-sha-256).
    pub fn create_password_role(&self, password: &str) {
        let mut client = self.client();
        let sql = format!(
            "CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{}'",
            password.replace('\'', "''")
        );
        client
            .batch_execute(&sql)
            .expect("create the password role");
    }

    /// Stops the server (fast mode, ending every session) and starts it
    /// again on the same port.
    pub fn restart(&self) {
        self.pg_ctl(&["stop", "-m", "fast"]);
        assert!(self.pg_ctl_start(), "restart failed; log:\n{}", self.log());
    }

    /// Stops the server as a crash would (immediate mode: no checkpoint, so
    /// it recovers from its write-ahead log) and starts it again on the
    /// same port.
    pub fn crash_and_recover(&self) {
        self.pg_ctl(&["stop", "-m", "immediate"]);
        assert!(self.pg_ctl_start(), "recovery failed; log:\n{}", self.log());
    }

    /// Waits until `condition` holds, checking every few milliseconds, and
    /// fails the test after `bound` saying what was awaited. For waiting on
    /// server state (a backend showing as waiting in pg_locks), never for
    /// time to pass.
    pub fn wait_until(&self, what: &str, bound: Duration, mut condition: impl FnMut() -> bool) {
        let start = Instant::now();
        while !condition() {
            assert!(
                start.elapsed() < bound,
                "timed out after {bound:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sessions waiting for advisory key `key`.
    pub fn waiting_for(&self, client: &mut Client, key: i64) -> i64 {
        // pg_locks splits a bigint key into its high (classid) and low
        // (objid) halves, with objsubid 1. A new wait shows its waitstart
        // a moment after the wait itself: counted once it has one.
        client
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
                 AND objsubid = 1 AND (classid::bigint << 32 | objid::bigint) = $1 \
                 AND waitstart IS NOT NULL",
                &[&key],
            )
            .expect("query pg_locks")
            .get(0)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// pg_hba.conf: [`PASSWORD_ROLE`] needs its password, over TCP and
    /// the socket; initdb's trust lines stay for everyone else. The first
    /// matching line wins.
    fn require_passwords(&self) {
        let path = self.data_dir().join("pg_hba.conf");
        let trust = std::fs::read_to_string(&path).expect("read pg_hba.conf");
        let lines = format!(
            "local all {PASSWORD_ROLE} scram-sha-256\n\
             host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n{trust}"
        );
        std::fs::write(&path, lines).expect("write pg_hba.conf");
    }

    fn pg_ctl_start(&self) -> bool {
        let durable = match self.settings.durable {
            true => "on",
            false => "off",
        };
        let mut options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync={durable} \
             -c full_page_writes={durable} -c synchronous_commit={durable} \
             -c max_connections={} -c shared_buffers=16MB",
            self.port,
            self.dir.path().display(),
            self.settings.max_connections
        );
        if let Some(tls) = &self.tls {
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                tls.server_cert.display(),
                tls.server_key.display()
            ));
        }
        let data = self.data_dir();
        let log = self.log_path();
        let timeout = START_TIMEOUT_SECS.to_string();
        let output = self
            .command("pg_ctl")
            .args(["start", "-w", "-t", &timeout, "-D"])
            .arg(&data)
            .arg("-l")
            .arg(&log)
            .args(["-o", &options])
            .output()
            .expect("run pg_ctl start");
        output.status.success()
    }

    fn pg_ctl(&self, args: &[&str]) -> Output {
        let timeout = START_TIMEOUT_SECS.to_string();
        self.command("pg_ctl")
            .args(args)
            .args(["-w", "-t", &timeout, "-D"])
            .arg(self.data_dir())
            .output()
            .expect("run pg_ctl")
    }

    fn run(&self, tool: &str, args: &[&std::ffi::OsStr]) {
        let output = self
            .command(tool)
            .args(args)
            .output()
            .expect("run a server tool");
        assert!(
            output.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A server tool run as the server user, in the test directory, with
    /// none of the caller's PG* settings.
    fn command(&self, tool: &str) -> Command {
        let mut command = Command::new(self.bin.join(tool));
        command.current_dir(self.dir.path());
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PG") {
                command.env_remove(key);
            }
        }
        // The server refuses to run as root. (std also drops root's
        // supplementary groups when it changes the uid.)
        if self.uid != current_uid() {
            command.uid(self.uid).gid(self.gid);
        }
        command
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let output = self.pg_ctl(&["stop", "-m", "immediate"]);
        if !output.status.success() && !std::thread::panicking() {
            eprintln!(
                "stopping the test server failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

pub(crate) fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }
}

/// The user the server runs as: this one, or `postgres` for root.
/// Looked up once: getpwnam's result is shared by every thread.
fn server_user() -> (u32, u32) {
    static USER: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *USER.get_or_init(look_up_server_user)
}

fn look_up_server_user() -> (u32, u32) {
    let uid = current_uid();
    if uid != 0 {
        // SAFETY: getgid has no preconditions.
        return (uid, unsafe { libc::getgid() });
    }
    let name = CString::new("postgres").expect("no NUL");
    // SAFETY: name is a valid C string; the returned entry is read at once,
    // before any other getpw* call in this thread could overwrite it.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    assert!(
        !entry.is_null(),
        "the tests run as root and need the unprivileged `postgres` user to run the server: \
         install PostgreSQL with `apt-get install -y postgresql-15` (it creates that user)"
    );
    // SAFETY: entry is non-null and points to a valid passwd entry.
    unsafe { ((*entry).pw_uid, (*entry).pw_gid) }
}

/// Advisory locks on the two-int4 key `(high, low)` (pg_locks shows them
/// with objsubid 2): (granted, waiting).
pub fn on_pair(client: &mut Client, (high, low): (i32, i32)) -> (i64, i64) {
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE granted), count(*) FILTER (WHERE NOT granted)
               FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2
                AND classid = $1::int4::oid AND objid = $2::int4::oid",
            &[&high, &low],
        )
        .expect("query pg_locks");
    (row.get(0), row.get(1))
}

/// Fails the test, never skips it, with the command that installs the
/// server binaries if they are not in `bin`.
fn require_binaries(bin: &Path) {
    for tool in ["initdb", "pg_ctl", "postgres"] {
        assert!(
            bin.join(tool).is_file(),
            "PostgreSQL server binaries not found ({} is missing): install them with \
             `apt-get install -y postgresql-15` (or set WITHLOCK_PG_BIN to their directory)",
            bin.join(tool).display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[should_panic(expected = "install them with `apt-get install -y postgresql-15`")]
    fn missing_binaries_fail_with_the_command_that_installs_them() {
        let empty = tempfile::tempdir().unwrap();
        require_binaries(empty.path());
    }
}
