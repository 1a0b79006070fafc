//! The programs under test, the scratch directory they work in, and how each
//! wrapper is asked to run a command under a named lock; with `--pg`, also
//! the servers the server-backed wrappers lock on: two PostgreSQL servers
//! for withlock's `--url` backend (one that makes every commit durable,
//! one that does not) and an etcd member for `etcdctl lock`.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use postgres::{Client, NoTls};
use tempfile::TempDir;
use withlock::pg::{LockKeyParts, advisory_key};

use crate::proc_locks;

/// The exit status of a wrapper that gave up waiting: withlock's default
/// (EX_TEMPFAIL), and what flock(1) is told to use with `-E`.
pub(crate) const GAVE_UP: i32 = 75;

/// A lock wrapper under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wrapper {
    /// withlock on this machine (`--dir`).
    Withlock,
    Flock,
    /// withlock on the PostgreSQL server with `fsync` and
    /// `synchronous_commit` on (`--url`): only with `--pg`.
    Pg,
    /// withlock on the PostgreSQL server with both off: only with `--pg`.
    PgFast,
    /// `etcdctl lock NAME -- COMMAND` on the etcd member: only with `--pg`
    /// or `--etcd`, exclusive and without a wait limit (it has neither).
    Etcdctl,
    /// withlock on the etcd member (`--url etcd://`): only with `--pg`
    /// or `--etcd`.
    Etcd,
}

impl Wrapper {
    /// The two local wrappers, in the order they are reported.
    pub(crate) const BOTH: [Wrapper; 2] = [Wrapper::Withlock, Wrapper::Flock];

    /// What `--pg` compares, in the order it is reported.
    pub(crate) const WITH_PG: [Wrapper; 6] = [
        Wrapper::Pg,
        Wrapper::PgFast,
        Wrapper::Etcdctl,
        Wrapper::Etcd,
        Wrapper::Withlock,
        Wrapper::Flock,
    ];

    /// What `--etcd` compares, in the order it is reported.
    pub(crate) const WITH_ETCD: [Wrapper; 2] = [Wrapper::Etcd, Wrapper::Etcdctl];

    /// The server-backed wrappers of `--pg`, in the order they are reported.
    pub(crate) const SERVERS: [Wrapper; 4] = [
        Wrapper::Pg,
        Wrapper::PgFast,
        Wrapper::Etcdctl,
        Wrapper::Etcd,
    ];

    /// A short name for file names and JSON keys.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Wrapper::Withlock => "withlock",
            Wrapper::Flock => "flock",
            Wrapper::Pg => "withlock_pg",
            Wrapper::PgFast => "withlock_pg_fsync_off",
            Wrapper::Etcdctl => "etcdctl",
            Wrapper::Etcd => "withlock_etcd",
        }
    }
}

/// Where the programs are.
#[derive(Debug, Clone)]
pub(crate) struct Programs {
    pub withlock: PathBuf,
    pub flock: PathBuf,
    /// This binary, which doubles as the locked command (see `helpers`).
    pub bench: PathBuf,
}

/// The programs plus a private scratch directory, deleted when the rig is
/// dropped. A fresh directory per run means no stale lock, FIFO or counter
/// from an earlier run, and no clash with another run at the same time.
pub(crate) struct Rig {
    programs: Programs,
    scratch: TempDir,
    servers: Option<Servers>,
    /// The etcd member [`Wrapper::Etcd`] and [`Wrapper::Etcdctl`] lock on:
    /// its `HOST:PORT`.
    etcd: Option<String>,
}

/// Where the server-backed wrappers of `--pg` lock.
#[derive(Debug, Clone)]
pub(crate) struct ServerUrls {
    /// The PostgreSQL server of [`Wrapper::Pg`] (durable commits).
    pub pg: String,
    /// The PostgreSQL server of [`Wrapper::PgFast`].
    pub pg_fast: String,
    /// The etcd member of [`Wrapper::Etcdctl`], as `etcdctl --endpoints`
    /// takes it.
    pub etcd: String,
}

struct Servers {
    urls: ServerUrls,
    pg: Watcher,
    pg_fast: Watcher,
}

/// A session of the benchmark's own on one PostgreSQL server, that
/// watches `pg_locks` for waiters (opened when first needed).
#[derive(Default)]
struct Watcher(Mutex<Option<Client>>);

impl Rig {
    /// Checks the programs can be run and makes the scratch directory, with
    /// a lock directory for each wrapper.
    pub(crate) fn new(programs: Programs) -> Result<Rig> {
        check_executable(&programs.withlock, "--withlock")?;
        check_executable(&programs.flock, "--flock")?;
        let scratch = tempfile::Builder::new()
            .prefix("withlock-bench.")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let rig = Rig {
            programs,
            scratch,
            servers: None,
            etcd: None,
        };
        for wrapper in Wrapper::BOTH {
            fs::create_dir(rig.lock_dir(wrapper))?;
        }
        Ok(rig)
    }

    pub(crate) fn programs(&self) -> &Programs {
        &self.programs
    }

    /// The same rig with [`Wrapper::Etcd`] and [`Wrapper::Etcdctl`] locking
    /// on the etcd member at `endpoint` (`HOST:PORT`, plain TCP).
    pub(crate) fn with_etcd(mut self, endpoint: &str) -> Rig {
        self.etcd = Some(endpoint.to_owned());
        self
    }

    /// `etcdctl` (API 3) for the etcd member, or for nothing without one
    /// (it then fails at once).
    pub(crate) fn etcdctl(&self) -> Command {
        let mut etcdctl = Command::new(withlock_etcd_testing::DEFAULT_ETCDCTL);
        etcdctl.env("ETCDCTL_API", "3").arg(format!(
            "--endpoints={}",
            self.etcd.as_deref().unwrap_or("")
        ));
        etcdctl
    }

    /// The same rig with the server-backed wrappers locking at `urls`.
    pub(crate) fn with_servers(mut self, urls: ServerUrls) -> Rig {
        self.etcd = Some(urls.etcd.clone());
        self.servers = Some(Servers {
            urls,
            pg: Watcher::default(),
            pg_fast: Watcher::default(),
        });
        self
    }

    /// The durable PostgreSQL server's URL, for the library-level
    /// measurements.
    pub(crate) fn url(&self) -> Result<&str> {
        Ok(&self.servers()?.urls.pg)
    }

    fn servers(&self) -> Result<&Servers> {
        self.servers
            .as_ref()
            .context("no servers: the benchmark was not run with --pg")
    }

    /// How many requests for the lock `name` under `wrapper` are waiting:
    /// blocked requests on the lock file's inode in `/proc/locks` for the
    /// local wrappers, sessions not granted the lock's advisory key in
    /// `pg_locks` for [`Wrapper::Pg`].
    pub(crate) fn waiting(&self, wrapper: Wrapper, name: &str) -> Result<usize> {
        match wrapper {
            Wrapper::Withlock | Wrapper::Flock => {
                let inode = fs::metadata(self.lock_file(wrapper, name))
                    .context("the holder left no lock file")?
                    .ino();
                Ok(proc_locks::blocked_count(inode)?)
            }
            // Both share etcd's lock layout: keys in line under `NAME/`,
            // the first of them the holder's.
            Wrapper::Etcd | Wrapper::Etcdctl => {
                let out = self
                    .etcdctl()
                    .args(["get", "--prefix", "--keys-only"])
                    .arg(format!("{name}/"))
                    .stdin(Stdio::null())
                    .output()
                    .context("cannot run etcdctl")?;
                ensure!(
                    out.status.success(),
                    "etcdctl get failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
                let keys = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|line| !line.is_empty())
                    .count();
                Ok(keys.saturating_sub(1))
            }
            Wrapper::Pg | Wrapper::PgFast => {
                let parts = LockKeyParts::of(advisory_key(name));
                let servers = self.servers()?;
                let (url, watcher) = match wrapper {
                    Wrapper::Pg => (&servers.urls.pg, &servers.pg),
                    _ => (&servers.urls.pg_fast, &servers.pg_fast),
                };
                let mut watcher = watcher
                    .0
                    .lock()
                    .map_err(|_| anyhow::anyhow!("the pg_locks watcher panicked"))?;
                if watcher.is_none() {
                    let client = Client::connect(url, NoTls).with_context(|| {
                        format!("cannot connect to the PostgreSQL server at {url}")
                    })?;
                    *watcher = Some(client);
                }
                let count: i64 = watcher
                    .as_mut()
                    .context("no pg_locks watcher")?
                    .query_one(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' \
                         AND NOT granted AND objsubid = 1 AND classid = $1 AND objid = $2",
                        &[&parts.classid, &parts.objid],
                    )
                    .context("cannot read pg_locks")?
                    .get(0);
                Ok(usize::try_from(count)?)
            }
        }
    }

    /// Each wrapper has a lock directory of its own, so neither is handed a
    /// lock file the other created (withlock checks the files it opens).
    pub(crate) fn lock_dir(&self, wrapper: Wrapper) -> PathBuf {
        self.scratch.path().join(format!("{}-locks", wrapper.key()))
    }

    /// The file the lock `name` is taken on: `<DIR>/<NAME>.lock`, the path
    /// withlock derives and flock(1) is given.
    pub(crate) fn lock_file(&self, wrapper: Wrapper, name: &str) -> PathBuf {
        self.lock_dir(wrapper).join(format!("{name}.lock"))
    }

    /// A fresh directory for one trial's files, inside the scratch directory.
    pub(crate) fn trial_dir(&self) -> Result<TempDir> {
        TempDir::new_in(self.scratch.path()).context("cannot create a trial directory")
    }

    /// `command` under the exclusive lock `name`: `withlock --dir D NAME --
    /// COMMAND...`, `flock D/NAME.lock COMMAND...` or `withlock --url URL
    /// NAME -- COMMAND...`. All output is
    /// discarded: the figures come from exit statuses and stamp files, and
    /// withlock's "waiting for" line would only clutter the report.
    pub(crate) fn locked<S: AsRef<OsStr>>(
        &self,
        wrapper: Wrapper,
        name: &str,
        command: &[S],
    ) -> Command {
        self.wrapped(wrapper, name, false, None, command)
    }

    /// `command` under the lock `name`, shared: `withlock --dir D -s NAME --
    /// COMMAND...` or `flock -s D/NAME.lock COMMAND...`.
    pub(crate) fn locked_shared<S: AsRef<OsStr>>(
        &self,
        wrapper: Wrapper,
        name: &str,
        command: &[S],
    ) -> Command {
        self.wrapped(wrapper, name, true, None, command)
    }

    /// `command` under the exclusive lock `name`, giving up after `limit`
    /// with exit status [`GAVE_UP`]: `withlock --dir D NAME -w SECONDS --
    /// COMMAND...` or `flock -w SECONDS -E 75 D/NAME.lock COMMAND...`.
    pub(crate) fn locked_at_most<S: AsRef<OsStr>>(
        &self,
        wrapper: Wrapper,
        name: &str,
        limit: Duration,
        command: &[S],
    ) -> Command {
        self.wrapped(wrapper, name, false, Some(limit), command)
    }

    fn wrapped<S: AsRef<OsStr>>(
        &self,
        wrapper: Wrapper,
        name: &str,
        shared: bool,
        limit: Option<Duration>,
        command: &[S],
    ) -> Command {
        let seconds = limit.map(|limit| limit.as_secs_f64().to_string());
        let mut locked = match wrapper {
            Wrapper::Etcdctl => {
                // Only the measurements that need neither a shared mode nor
                // a wait limit run etcdctl. `--` ends etcdctl's options, so
                // the command's own (`sh -c`) are left alone.
                assert!(
                    !shared && limit.is_none(),
                    "etcdctl lock has no shared mode and no wait limit"
                );
                let mut etcdctl = self.etcdctl();
                etcdctl.args(["lock", name, "--"]);
                etcdctl
            }
            Wrapper::Withlock | Wrapper::Pg | Wrapper::PgFast | Wrapper::Etcd => {
                let mut withlock = Command::new(&self.programs.withlock);
                // Only what the command line says: never a WITHLOCK_URL or
                // WITHLOCK_DIR from the caller's environment.
                withlock
                    .env_remove("WITHLOCK_URL")
                    .env_remove("WITHLOCK_DIR");
                match (wrapper, &self.servers) {
                    (Wrapper::Pg, Some(servers)) => withlock.arg("--url").arg(&servers.urls.pg),
                    (Wrapper::PgFast, Some(servers)) => {
                        withlock.arg("--url").arg(&servers.urls.pg_fast)
                    }
                    (Wrapper::Etcd, _) => withlock
                        .arg("--url")
                        .arg(format!("etcd://{}", self.etcd.as_deref().unwrap_or(""))),
                    // Without --pg there is no server: the wrapper fails
                    // at once, and the benchmark stops with its status.
                    (Wrapper::Pg | Wrapper::PgFast, None) => {
                        withlock.arg("--url").arg("postgres://")
                    }
                    _ => withlock.arg("--dir").arg(self.lock_dir(wrapper)),
                };
                if shared {
                    withlock.arg("-s");
                }
                withlock.arg(name);
                if let Some(seconds) = &seconds {
                    // -q: flock(1) names no holder when it gives up, so
                    // neither does withlock here; naming one reads
                    // /proc/locks, which costs a few milliseconds more.
                    withlock.arg("-q").arg("-w").arg(seconds);
                }
                withlock.arg("--");
                withlock
            }
            Wrapper::Flock => {
                let mut flock = Command::new(&self.programs.flock);
                if shared {
                    flock.arg("-s");
                }
                if let Some(seconds) = &seconds {
                    flock
                        .arg("-w")
                        .arg(seconds)
                        .arg("-E")
                        .arg(GAVE_UP.to_string());
                }
                flock.arg(self.lock_file(wrapper, name));
                flock
            }
        };
        locked.args(command);
        quiet(locked)
    }

    /// This binary's hidden subcommand `helper FILES...`, under the lock
    /// `name`.
    pub(crate) fn locked_helper(
        &self,
        wrapper: Wrapper,
        name: &str,
        helper: &str,
        files: &[&Path],
    ) -> Command {
        let mut command = vec![self.programs.bench.as_os_str(), OsStr::new(helper)];
        command.extend(files.iter().map(|file| file.as_os_str()));
        self.locked(wrapper, name, &command)
    }

    /// `command` with no lock at all, as the baseline.
    pub(crate) fn bare<S: AsRef<OsStr>>(&self, command: &[S]) -> Command {
        let mut bare = Command::new(&command[0]);
        bare.args(&command[1..]);
        quiet(bare)
    }
}

/// Runs `command` to the end and fails unless it exits with status 0.
pub(crate) fn run_checked(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("cannot run {command:?}"))?;
    ensure!(status.success(), "{command:?} failed: {status}");
    Ok(())
}

fn quiet(mut command: Command) -> Command {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

fn check_executable(path: &Path, option: &str) -> Result<()> {
    let metadata = fs::metadata(path).with_context(|| {
        format!(
            "cannot use {}: build withlock with `cargo build --release -p withlock-cli`, \
             or name the program with {option} PATH",
            path.display()
        )
    })?;
    ensure!(
        metadata.is_file() && metadata.permissions().mode() & 0o111 != 0,
        "{} is not an executable file (see {option})",
        path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rig() -> Rig {
        Rig::new(Programs {
            withlock: PathBuf::from("/bin/true"),
            flock: PathBuf::from("/bin/true"),
            bench: PathBuf::from("/bench"),
        })
        .unwrap()
    }

    #[test]
    fn builds_each_wrappers_command_line() {
        let rig = rig();
        let dir = rig.lock_dir(Wrapper::Withlock);
        let withlock = rig.locked_helper(Wrapper::Withlock, "h", "stamp", &[Path::new("/s")]);
        let args: Vec<&OsStr> = withlock.get_args().collect();
        assert_eq!(
            args,
            [
                OsStr::new("--dir"),
                dir.as_os_str(),
                OsStr::new("h"),
                OsStr::new("--"),
                OsStr::new("/bench"),
                OsStr::new("stamp"),
                OsStr::new("/s"),
            ]
        );
        let lock = rig.lock_file(Wrapper::Flock, "h");
        let flock = rig.locked(Wrapper::Flock, "h", &["true"]);
        let args: Vec<&OsStr> = flock.get_args().collect();
        assert_eq!(args, [lock.as_os_str(), OsStr::new("true")]);
        assert!(lock.ends_with("flock-locks/h.lock"));
    }

    #[test]
    fn a_time_limit_goes_to_each_wrapper_its_own_way() {
        let rig = rig();
        let limit = Duration::from_millis(200);
        let dir = rig.lock_dir(Wrapper::Withlock);
        let withlock = rig.locked_at_most(Wrapper::Withlock, "h", limit, &["true"]);
        let args: Vec<&OsStr> = withlock.get_args().collect();
        assert_eq!(
            args,
            [
                OsStr::new("--dir"),
                dir.as_os_str(),
                OsStr::new("h"),
                OsStr::new("-q"),
                OsStr::new("-w"),
                OsStr::new("0.2"),
                OsStr::new("--"),
                OsStr::new("true"),
            ]
        );
        let lock = rig.lock_file(Wrapper::Flock, "h");
        let flock = rig.locked_at_most(Wrapper::Flock, "h", limit, &["true"]);
        let args: Vec<&OsStr> = flock.get_args().collect();
        assert_eq!(
            args,
            [
                OsStr::new("-w"),
                OsStr::new("0.2"),
                OsStr::new("-E"),
                OsStr::new("75"),
                lock.as_os_str(),
                OsStr::new("true"),
            ]
        );
    }

    #[test]
    fn the_server_wrapper_gets_the_url_and_no_directory() {
        let rig = rig().with_servers(ServerUrls {
            pg: "postgres://u@127.0.0.1:5/db".into(),
            pg_fast: "postgres://u@127.0.0.1:6/db".into(),
            etcd: "127.0.0.1:7".into(),
        });
        let pg = rig.locked_at_most(Wrapper::Pg, "h", Duration::from_millis(200), &["true"]);
        let args: Vec<&OsStr> = pg.get_args().collect();
        assert_eq!(
            args,
            [
                "--url",
                "postgres://u@127.0.0.1:5/db",
                "h",
                "-q",
                "-w",
                "0.2",
                "--",
                "true"
            ]
            .map(OsStr::new)
        );
        let envs: Vec<_> = pg.get_envs().collect();
        assert!(
            envs.contains(&(OsStr::new("WITHLOCK_URL"), None)),
            "{envs:?}"
        );
        assert_eq!(rig.url().unwrap(), "postgres://u@127.0.0.1:5/db");
        assert!(self::rig().url().is_err());
        let fast = rig.locked(Wrapper::PgFast, "h", &["true"]);
        assert_eq!(
            fast.get_args().nth(1),
            Some(OsStr::new("postgres://u@127.0.0.1:6/db"))
        );
        let etcdctl = rig.locked(Wrapper::Etcdctl, "h", &["sh", "-c", "true"]);
        let args: Vec<&OsStr> = etcdctl.get_args().collect();
        assert_eq!(
            args,
            [
                "--endpoints=127.0.0.1:7",
                "lock",
                "h",
                "--",
                "sh",
                "-c",
                "true"
            ]
            .map(OsStr::new)
        );
    }

    #[test]
    fn refuses_a_missing_program() {
        let err = Rig::new(Programs {
            withlock: PathBuf::from("/nonexistent/withlock"),
            flock: PathBuf::from("/bin/true"),
            bench: PathBuf::from("/bench"),
        })
        .err()
        .unwrap();
        assert!(format!("{err:#}").contains("--withlock"), "{err:#}");
    }
}
