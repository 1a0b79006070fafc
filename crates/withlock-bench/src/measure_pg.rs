//! `--pg`: withlock's PostgreSQL backend (`--url`) beside local withlock
//! and flock(1), in one run, on a private server over loopback.
//!
//! The server is started here, through `withlock-pg-testing`'s
//! [`TestServer`]: `initdb` into a temporary directory, a free port on
//! 127.0.0.1, trust authentication, stopped at the end. It needs
//! PostgreSQL's server binaries (`WITHLOCK_PG_BIN`, else
//! [`DEFAULT_BIN`]).
//!
//! Three things are measured, each interleaved across its subjects with the
//! order rotating from round to round:
//!
//! - **startup**: `withlock --url URL startup -- true` beside the local
//!   wrappers and bare `true`, as in the local startup measurement;
//! - **handoff**: from the end of one holder's command to the start of the
//!   next waiter's, as in the local handoff measurement; a PostgreSQL
//!   waiter counts as blocked once `pg_locks` shows its session not granted
//!   the lock's advisory key;
//! - **library**: in-process, no process start: `PgLock` acquire+release
//!   beside `FileLock` acquire+release, and the parts of the former on their
//!   own: opening and closing a lock session (`Target::connect`, which also
//!   sets the session's timeouts), opening and closing a bare connection,
//!   and taking and releasing the advisory lock on a session already open.
//!
//! And, once per wrapper, the arrival order of queued waiters, as in the
//! local fairness measurement.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use postgres::{Client, NoTls};
use withlock::pg::connection::Target;
use withlock::pg::{Identity, advisory_key};
use withlock::{FileLock, Lock, PgLock};
use withlock_pg_testing::{DEFAULT_BIN, TestServer};

use crate::measure_fairness;
use crate::measure_handoff;
use crate::measure_startup::{self, Subject};
use crate::rig::{Rig, Wrapper};

/// The lock name of the library-level measurements.
const LIBRARY_LOCK: &str = "library";

/// Everything `--pg` measures. Arrays of three are in [`Wrapper::WITH_PG`]
/// order: withlock --url, local withlock, flock(1).
#[derive(Debug, Default)]
pub(crate) struct PgResults {
    /// `SHOW server_version`.
    pub server_version: String,
    /// Startup wall times in milliseconds, and bare `true`'s.
    pub startup: [Vec<f64>; 3],
    pub startup_bare: Vec<f64>,
    /// Handoff latencies in microseconds.
    pub handoff: [Vec<f64>; 3],
    /// Library-level times in microseconds.
    pub library: Library,
    /// Pairs of queued waiters served against their arrival order.
    pub inversions: [Option<u64>; 3],
}

/// In-process times of one operation each, in microseconds.
#[derive(Debug, Default)]
pub(crate) struct Library {
    /// `PgLock::acquire` then `PgGuard::release`: connect, set up the
    /// session, lock, unlock, close.
    pub pg_lock: Vec<f64>,
    /// `FileLock::acquire` then `FileGuard::release`.
    pub file_lock: Vec<f64>,
    /// `Target::connect` then close: a lock session without the lock.
    pub session: Vec<f64>,
    /// `postgres::Client::connect` then close: TCP, start-up and
    /// authentication only.
    pub connect: Vec<f64>,
    /// `pg_try_advisory_lock` then `pg_advisory_unlock` on a session that
    /// has been open all along: the lock itself.
    pub lock_on_open_session: Vec<f64>,
    /// The same on a lock session just opened (opening and closing it not
    /// timed): the lock as `PgLock` pays for it, in a new server backend.
    pub lock_on_new_session: Vec<f64>,
}

/// What one library-level sample does.
#[derive(Debug, Clone, Copy)]
enum Operation {
    PgLock,
    FileLock,
    Session,
    Connect,
    LockOnOpenSession,
    LockOnNewSession,
}

const OPERATIONS: [Operation; 6] = [
    Operation::PgLock,
    Operation::FileLock,
    Operation::Session,
    Operation::Connect,
    Operation::LockOnOpenSession,
    Operation::LockOnNewSession,
];

/// Fails with the command that installs the server binaries if they are
/// missing, rather than let [`TestServer::start`] panic.
pub(crate) fn check_server_binaries() -> Result<PathBuf> {
    let bin = PathBuf::from(std::env::var_os("WITHLOCK_PG_BIN").unwrap_or(DEFAULT_BIN.into()));
    check_binaries_in(&bin)?;
    Ok(bin)
}

fn check_binaries_in(bin: &Path) -> Result<()> {
    for tool in ["initdb", "pg_ctl", "postgres"] {
        ensure!(
            bin.join(tool).is_file(),
            "--pg needs PostgreSQL's server binaries, and {} is missing: install them with \
             `apt-get install -y postgresql-15` (or set WITHLOCK_PG_BIN to their directory)",
            bin.join(tool).display()
        );
    }
    Ok(())
}

/// Starts a private server. The caller keeps it for the whole run; it
/// stops when dropped.
pub(crate) fn start_server() -> Result<TestServer> {
    let bin = check_server_binaries()?;
    eprintln!(
        "pg: starting a private PostgreSQL server from {}",
        bin.display()
    );
    let started = Instant::now();
    // TestServer reports failures by panicking (it is a test harness); the
    // panic message, printed by the default hook, says what went wrong.
    let server = std::panic::catch_unwind(TestServer::start)
        .map_err(|_| anyhow::anyhow!("the PostgreSQL server did not start (see above)"))?;
    eprintln!(
        "pg: server up at {} in {:.1} s",
        server.url(),
        started.elapsed().as_secs_f64()
    );
    Ok(server)
}

/// Every `--pg` measurement; `rig` must have the server
/// ([`Rig::with_server`]).
pub(crate) fn measure(
    rig: &Rig,
    runs: usize,
    handoffs: usize,
    waiters: usize,
) -> Result<PgResults> {
    let url = rig.url()?.to_owned();
    let mut admin = Client::connect(&url, NoTls).context("cannot connect to the server")?;
    let server_version: String = admin.query_one("SHOW server_version", &[])?.get(0);

    eprintln!("pg startup: {runs} runs each of withlock --url, withlock, flock(1) and bare true");
    let [pg, withlock, flock, bare] = measure_startup::interleaved(
        rig,
        runs,
        [
            Subject::Locked(Wrapper::Pg),
            Subject::Locked(Wrapper::Withlock),
            Subject::Locked(Wrapper::Flock),
            Subject::Bare,
        ],
    )?;

    eprintln!("pg handoff: {handoffs} trials each of withlock --url, withlock and flock(1)");
    let handoff = measure_handoff::interleaved(rig, handoffs, Wrapper::WITH_PG)?;

    eprintln!("pg library: {runs} in-process runs of each operation");
    let library = library(rig, &url, runs)?;

    eprintln!("pg order: {waiters} waiters queued one by one, each wrapper");
    let mut inversions = [None; 3];
    for (i, wrapper) in Wrapper::WITH_PG.into_iter().enumerate() {
        let n = measure_fairness::order(rig, wrapper, waiters)
            .with_context(|| format!("arrival order with {}", wrapper.key()))?;
        eprintln!("  {:>11}: {n} inversions", wrapper.key());
        inversions[i] = Some(n);
    }

    Ok(PgResults {
        server_version,
        startup: [pg, withlock, flock],
        startup_bare: bare,
        handoff,
        library,
        inversions,
    })
}

/// `runs` samples of each library-level operation, interleaved, after one
/// untimed run each.
fn library(rig: &Rig, url: &str, runs: usize) -> Result<Library> {
    let pg_lock = PgLock::new(url, LIBRARY_LOCK)?;
    let file_lock = FileLock::named(LIBRARY_LOCK, Some(&rig.lock_dir(Wrapper::Withlock)))?;
    let target = Target::parse(url)?;
    let identity = Identity::running(&["withlock-bench"]);
    let mut open_session = target.connect(&identity)?;
    let key = advisory_key(LIBRARY_LOCK);

    let mut time = |operation: Operation| -> Result<f64> {
        let started = Instant::now();
        match operation {
            Operation::PgLock => pg_lock.acquire()?.release()?,
            Operation::FileLock => file_lock.acquire()?.release()?,
            Operation::Session => target.connect(&identity)?.close()?,
            Operation::Connect => Client::connect(url, NoTls)?.close()?,
            Operation::LockOnOpenSession => lock_and_unlock(&mut open_session, key)?,
            Operation::LockOnNewSession => {
                let mut session = target.connect(&identity)?;
                let started = Instant::now();
                lock_and_unlock(&mut session, key)?;
                let us = started.elapsed().as_secs_f64() * 1e6;
                session.close()?;
                return Ok(us);
            }
        }
        Ok(started.elapsed().as_secs_f64() * 1e6)
    };
    for operation in OPERATIONS {
        time(operation).with_context(|| format!("library warm-up: {operation:?}"))?;
    }
    let mut library = Library::default();
    for round in 0..runs {
        let mut order = OPERATIONS;
        order.rotate_left(round % OPERATIONS.len());
        for operation in order {
            let us = time(operation).with_context(|| format!("library: {operation:?}"))?;
            library.samples(operation).push(us);
        }
    }
    Ok(library)
}

/// Takes and releases the advisory `key` on `session`, as `PgLock` does
/// when the lock is free.
fn lock_and_unlock(session: &mut Client, key: i64) -> Result<()> {
    let taken: bool = session
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])?
        .get(0);
    let released: bool = session
        .query_one("SELECT pg_advisory_unlock($1)", &[&key])?
        .get(0);
    ensure!(taken && released, "the advisory lock was not free");
    Ok(())
}

impl Library {
    fn samples(&mut self, operation: Operation) -> &mut Vec<f64> {
        match operation {
            Operation::PgLock => &mut self.pg_lock,
            Operation::FileLock => &mut self.file_lock,
            Operation::Session => &mut self.session,
            Operation::Connect => &mut self.connect,
            Operation::LockOnOpenSession => &mut self.lock_on_open_session,
            Operation::LockOnNewSession => &mut self.lock_on_new_session,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_server_binaries_name_the_install_command() {
        let err = check_binaries_in(Path::new("/nonexistent/pg/bin")).unwrap_err();
        let message = format!("{err:#}");
        assert!(
            message.contains("apt-get install -y postgresql-15"),
            "{message}"
        );
        assert!(message.contains("/nonexistent/pg/bin/initdb"), "{message}");
    }
}
