//! `--pg`: withlock's PostgreSQL backend (`--url`) beside `etcdctl lock`,
//! local withlock and flock(1), in one run, on private servers over
//! loopback.
//!
//! The servers are started here. Two PostgreSQL servers, through
//! `withlock-pg-testing`'s [`TestServer`] (`initdb` into a temporary
//! directory, a free port on 127.0.0.1, trust authentication, stopped at
//! the end): one with `fsync`, `full_page_writes` and `synchronous_commit`
//! on, as in production, whose every commit waits for the disk; and one
//! with them off, as the test suite runs. That needs PostgreSQL's server
//! binaries (`WITHLOCK_PG_BIN`, else [`DEFAULT_BIN`]). And one etcd member,
//! through `withlock-etcd-testing`'s [`Etcd`] (free ports, a temporary data
//! directory, its own fsync on every write), for `etcdctl lock`.
//!
//! Four things are measured, each interleaved across its subjects with the
//! order rotating from round to round:
//!
//! - **startup**: `withlock --url URL startup -- true` on each PostgreSQL
//!   server and `etcdctl lock startup true` beside the local wrappers and
//!   bare `true`, as in the local startup measurement;
//! - **handoff**: from the end of one holder's command to the start of the
//!   next waiter's, as in the local handoff measurement; a PostgreSQL
//!   waiter counts as blocked once `pg_locks` shows its session not granted
//!   the lock's advisory key, an etcdctl waiter once its key is under the
//!   lock's prefix;
//! - **storm**: P processes each running K locked commands one after
//!   another through each server-backed wrapper, as in the local storm;
//! - **round trips**: how many times `withlock --url` waits for the durable
//!   server before its command starts, counted by a proxy
//!   ([`crate::round_trips`]);
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
use withlock_etcd_testing::Etcd;
use withlock_pg_testing::{DEFAULT_BIN, ServerSettings, TestServer};

use crate::measure_fairness;
use crate::measure_handoff;
use crate::measure_startup::{self, Subject};
use crate::measure_storm::{self, Round};
use crate::rig::{Rig, ServerUrls, Wrapper};
use crate::round_trips::{self, RoundTrips};
use withlock_etcd_testing::DEFAULT_ETCDCTL;

/// The lock name of the library-level measurements.
const LIBRARY_LOCK: &str = "library";

/// Everything `--pg` measures. Arrays of six are in [`Wrapper::WITH_PG`]
/// order: withlock --url (fsync on), withlock --url (fsync off), etcdctl
/// lock, withlock --url etcd://, local withlock, flock(1); arrays of four
/// in [`Wrapper::SERVERS`] order.
#[derive(Debug, Default)]
pub(crate) struct PgResults {
    /// `SHOW server_version`.
    pub server_version: String,
    /// `etcd --version`'s first line.
    pub etcd_version: String,
    /// Startup wall times in milliseconds, and bare `true`'s.
    pub startup: [Vec<f64>; 6],
    pub startup_bare: Vec<f64>,
    /// Handoff latencies in microseconds.
    pub handoff: [Vec<f64>; 6],
    /// Storm rounds of the server-backed wrappers.
    pub storm: [Vec<Round>; 4],
    /// The storms' processes and runs per process.
    pub storm_shape: (usize, usize),
    /// Round trips of `withlock --url` on the durable server, per run.
    pub round_trips: Vec<RoundTrips>,
    /// Library-level times in microseconds.
    pub library: Library,
    /// Pairs of queued waiters served against their arrival order.
    pub inversions: [Option<u64>; 6],
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

/// The private servers of a `--pg` run; each stops when dropped.
pub(crate) struct Servers {
    /// `fsync`, `full_page_writes` and `synchronous_commit` on.
    pub durable: TestServer,
    /// All three off.
    pub fast: TestServer,
    pub etcd: Etcd,
}

impl Servers {
    pub(crate) fn urls(&self) -> ServerUrls {
        ServerUrls {
            pg: self.durable.url(),
            pg_fast: self.fast.url(),
            etcd: self.etcd.endpoint(),
        }
    }
}

/// Starts the private servers; `max_connections` for the PostgreSQL ones.
pub(crate) fn start_servers(max_connections: u32) -> Result<Servers> {
    let bin = check_server_binaries()?;
    check_etcd()?;
    eprintln!(
        "pg: starting two private PostgreSQL servers from {} and an etcd member",
        bin.display()
    );
    let started = Instant::now();
    // The harnesses report failures by panicking (they are test harnesses);
    // the panic message, printed by the default hook, says what went wrong.
    let start = |durable: bool| {
        std::panic::catch_unwind(|| {
            TestServer::start_with(ServerSettings {
                durable,
                max_connections,
                ..ServerSettings::default()
            })
        })
        .map_err(|_| anyhow::anyhow!("a PostgreSQL server did not start (see above)"))
    };
    let servers = Servers {
        durable: start(true)?,
        fast: start(false)?,
        etcd: std::panic::catch_unwind(Etcd::start)
            .map_err(|_| anyhow::anyhow!("the etcd member did not start (see above)"))?,
    };
    eprintln!(
        "pg: servers up in {:.1} s: {} (fsync on), {} (fsync off), etcd {}",
        started.elapsed().as_secs_f64(),
        servers.durable.url(),
        servers.fast.url(),
        servers.etcd.endpoint()
    );
    Ok(servers)
}

/// Fails with the command that installs etcd if it is missing.
fn check_etcd() -> Result<()> {
    for (program, package) in [
        ("/usr/bin/etcd", "etcd-server"),
        (DEFAULT_ETCDCTL, "etcd-client"),
    ] {
        ensure!(
            Path::new(program).is_file(),
            "--pg compares with etcdctl lock, and {program} is missing: install it with \
             `apt-get install -y {package}`"
        );
    }
    Ok(())
}

/// How `--pg` is asked to measure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PgPlan {
    pub runs: usize,
    pub handoffs: usize,
    pub waiters: usize,
    pub procs: usize,
    pub iterations: usize,
    pub rounds: usize,
}

/// Every `--pg` measurement; `rig` must have the servers
/// ([`Rig::with_servers`]).
pub(crate) fn measure(rig: &Rig, servers: &Servers, plan: PgPlan) -> Result<PgResults> {
    let PgPlan {
        runs,
        handoffs,
        waiters,
        ..
    } = plan;
    let url = rig.url()?.to_owned();
    let mut admin = Client::connect(&url, NoTls).context("cannot connect to the server")?;
    let server_version: String = admin.query_one("SHOW server_version", &[])?.get(0);
    let settings: String = admin
        .query_one(
            "SELECT pg_catalog.string_agg(name || '=' || setting, ' ' ORDER BY name) \
             FROM pg_catalog.pg_settings \
             WHERE name IN ('fsync', 'synchronous_commit', 'full_page_writes')",
            &[],
        )?
        .get(0);
    eprintln!("pg: the durable server runs with {settings}");
    ensure!(
        settings == "fsync=on full_page_writes=on synchronous_commit=on",
        "the durable server runs with {settings}"
    );

    eprintln!("pg round trips: withlock --url through a counting proxy, 5 runs");
    let round_trips = round_trips::measure(rig, servers.durable.port(), 5)?;

    let [a, b, c, d, e, f] = Wrapper::WITH_PG.map(Subject::Locked);
    eprintln!("pg startup: {runs} runs each of the 6 wrappers and bare true");
    let [pg, pg_fast, etcdctl, etcd, withlock, flock, bare] =
        measure_startup::interleaved(rig, runs, [a, b, c, d, e, f, Subject::Bare])?;

    eprintln!("pg handoff: {handoffs} trials each of the 6 wrappers");
    let handoff = measure_handoff::interleaved(rig, handoffs, Wrapper::WITH_PG)?;

    eprintln!(
        "pg storm: {} processes x {} locked runs, {} rounds each",
        plan.procs, plan.iterations, plan.rounds
    );
    let storm = measure_storm::each(
        rig,
        Wrapper::SERVERS,
        plan.procs,
        plan.iterations,
        plan.rounds,
    )?;

    eprintln!("pg library: {runs} in-process runs of each operation");
    let library = library(rig, &url, runs)?;

    eprintln!("pg order: {waiters} waiters queued one by one, each wrapper");
    let mut inversions = [None; 6];
    for (i, wrapper) in Wrapper::WITH_PG.into_iter().enumerate() {
        let n = measure_fairness::order(rig, wrapper, waiters)
            .with_context(|| format!("arrival order with {}", wrapper.key()))?;
        eprintln!("  {:>21}: {n} inversions", wrapper.key());
        inversions[i] = Some(n);
    }

    Ok(PgResults {
        server_version,
        etcd_version: etcd_version(),
        startup: [pg, pg_fast, etcdctl, etcd, withlock, flock],
        startup_bare: bare,
        handoff,
        storm,
        storm_shape: (plan.procs, plan.iterations),
        round_trips,
        library,
        inversions,
    })
}

fn etcd_version() -> String {
    std::process::Command::new("/usr/bin/etcd")
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "etcd (version unknown)".into())
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
