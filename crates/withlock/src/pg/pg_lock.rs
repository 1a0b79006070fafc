//! `PgLock`: a named lock held as a session-level advisory lock.

use std::time::{Duration, Instant};

use crate::{Error, Holders, Lock, LockName, Mode, Result, Wait, WaitHooks};
use postgres::Client;
use postgres::error::SqlState;

use crate::pg::connection::Target;
use crate::pg::error::PgError;
use crate::pg::holders::{self, PgHolder};
use crate::pg::identity::Identity;
use crate::pg::key::advisory_key;
use crate::pg::pg_guard::PgGuard;

/// A lock name on a PostgreSQL server (one database: advisory keys are
/// per database).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgLock {
    target: Target,
    name: String,
    key: i64,
    mode: Mode,
    identity: Identity,
}

impl PgLock {
    /// The lock `name` (withlock's naming rules) on the server `url`,
    /// exclusive, announced as this process.
    pub fn new(url: &str, name: &str) -> Result<PgLock> {
        let name = LockName::new(name)?;
        let target = Target::parse(url)?;
        Ok(PgLock {
            target,
            key: advisory_key(name.as_str()),
            name: name.as_str().to_owned(),
            mode: Mode::Exclusive,
            identity: Identity::current(),
        })
    }

    /// The same lock taken in `mode`.
    pub fn with_mode(mut self, mode: Mode) -> PgLock {
        self.mode = mode;
        self
    }

    /// The same lock announced with another identity (the command line
    /// withlock runs, rather than its own).
    pub fn with_identity(mut self, identity: Identity) -> PgLock {
        self.identity = identity;
        self
    }

    /// The mode it will be taken in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The lock name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server, as messages name it: `host:port/dbname`, never the
    /// password.
    pub fn server(&self) -> &str {
        self.target.server()
    }

    /// The advisory key ([`advisory_key`] of the name).
    pub fn key(&self) -> i64 {
        self.key
    }

    /// Every session holding or waiting for the lock, with the server's
    /// details (backend pid, role, address). Opens a short-lived session.
    pub fn pg_holders(&self) -> Result<Vec<PgHolder>> {
        let mut client = self
            .target
            .connect(&self.identity.clone().with_command(&["(listing)"]))?;
        let sessions = holders::query(&mut client, self.key)
            .map_err(|cause| self.query_error("reading pg_locks", cause))?;
        Ok(sessions)
    }

    fn query_error(&self, context: &'static str, cause: postgres::Error) -> PgError {
        PgError::Query {
            context,
            server: self.target.server().to_owned(),
            cause,
        }
    }

    /// One lock call on `client`: the try form, or the blocking one.
    fn lock_call(
        &self,
        client: &mut Client,
        try_only: bool,
    ) -> std::result::Result<bool, postgres::Error> {
        let sql = match (self.mode, try_only) {
            (Mode::Exclusive, true) => "SELECT pg_try_advisory_lock($1)",
            (Mode::Shared, true) => "SELECT pg_try_advisory_lock_shared($1)",
            (Mode::Exclusive, false) => "SELECT true FROM pg_advisory_lock($1)",
            (Mode::Shared, false) => "SELECT true FROM pg_advisory_lock_shared($1)",
        };
        // pg_advisory_lock returns void: selecting `true` from it makes
        // every form return a boolean, true when taken.
        client.query_one(sql, &[&self.key]).map(|row| row.get(0))
    }

    /// Waits on `client` with the server's `lock_timeout` as the deadline;
    /// Ok(false) when it ran out.
    fn wait_at_most(
        &self,
        client: &mut Client,
        timeout: Duration,
    ) -> std::result::Result<bool, postgres::Error> {
        // lock_timeout is in whole milliseconds, and 0 means no limit.
        let ms = timeout
            .as_micros()
            .div_ceil(1000)
            .clamp(1, i32::MAX as u128) as i32;
        client.execute(
            "SELECT set_config('lock_timeout', $1, false)",
            &[&format!("{ms}ms")],
        )?;
        let taken = match self.lock_call(client, false) {
            Ok(taken) => Ok(taken),
            Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => Ok(false),
            Err(e) => Err(e),
        };
        // If resetting fails, the session is broken, and so is the lock.
        client.execute("SELECT set_config('lock_timeout', '0', false)", &[])?;
        taken
    }

    fn conflict_holders(&self, client: &mut Client, hooks: &dyn WaitHooks) -> Holders {
        if !hooks.name_holders() {
            return Holders::default();
        }
        holders::query(client, self.key)
            .map(|sessions| holders::to_holders(&sessions))
            .unwrap_or_default()
    }
}

impl Lock for PgLock {
    type Guard = PgGuard;

    fn acquire_with(&self, wait: Wait, hooks: &mut dyn WaitHooks) -> Result<PgGuard> {
        let started = Instant::now();
        let mut client = self.target.connect(&self.identity)?;
        let backend_pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .map_err(|cause| self.query_error("starting the lock session", cause))?
            .get(0);
        let lock_error = |cause| self.query_error("taking the advisory lock", cause);
        // A try first: the server's try does not barge past queued waiters
        // (it conflicts with their requested modes), so this keeps order
        // and tells whether the wait hooks are needed at all.
        let mut taken = self.lock_call(&mut client, true).map_err(lock_error)?;
        if !taken {
            let wait = match wait {
                Wait::For(d) if d.is_zero() => Wait::NoWait,
                other => other,
            };
            match wait {
                Wait::NoWait => {
                    return Err(Error::Busy {
                        lock: self.describe(),
                        holders: self.conflict_holders(&mut client, hooks),
                    });
                }
                Wait::For(timeout) => {
                    hooks.waiting();
                    let left = timeout.saturating_sub(started.elapsed());
                    taken = !left.is_zero()
                        && self.wait_at_most(&mut client, left).map_err(lock_error)?;
                    if !taken {
                        return Err(Error::TimedOut {
                            lock: self.describe(),
                            waited: started.elapsed(),
                            holders: self.conflict_holders(&mut client, hooks),
                        });
                    }
                }
                Wait::Forever => {
                    hooks.waiting();
                    taken = self.lock_call(&mut client, false).map_err(lock_error)?;
                }
            }
        }
        debug_assert!(taken);
        Ok(PgGuard::new(
            client,
            self.key,
            self.mode,
            backend_pid,
            self.target.server().to_owned(),
        ))
    }

    fn holders(&self) -> Result<Holders> {
        Ok(holders::to_holders(&self.pg_holders()?))
    }

    fn describe(&self) -> String {
        format!("{} (PostgreSQL {})", self.name, self.target.server())
    }
}
