//! `PgLock`: a named lock held as a session-level advisory lock.

use std::time::{Duration, SystemTime};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::{Deadline, Error, Holders, Lock, LockName, Mode, Result, WaitHooks, WaitStopper};
use postgres::Client;
use postgres::error::SqlState;
use postgres::types::Type;

use crate::pg::cancel;
use crate::pg::connection::Target;
use crate::pg::error::PgError;
use crate::pg::fence;
use crate::pg::handover::{self, Holding, Unreleased};
use crate::pg::heartbeat;
use crate::pg::holders::{self, PgHolder};
use crate::pg::identity::Identity;
use crate::pg::key::advisory_key;
use crate::pg::pg_guard::PgGuard;
use crate::pg::semaphore::{MAX_SLOTS, Semaphore, Subject};

/// How often a stopped wait sends its cancel request again until the wait
/// has ended (see [`PgLock::stoppable_wait`]).
const CANCEL_AGAIN: Duration = Duration::from_millis(20);

/// A lock name on a PostgreSQL server (one database: advisory keys are
/// per database).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgLock {
    target: Target,
    name: String,
    key: i64,
    mode: Mode,
    identity: Identity,
    /// `Some(N)` for a counting semaphore ([`PgLock::with_max`]).
    max: Option<u32>,
    /// How long the holder takes to stop its command once it notices the
    /// lock is lost ([`PgLock::with_grace`]).
    grace: Duration,
    /// Whether it cancels holders that opted in, and may be cancelled
    /// ([`PgLock::cancelling`]).
    cancelling: bool,
}

impl PgLock {
    /// The lock `name` (withlock's naming rules) on the server `url`,
    /// exclusive, announced as this process.
    pub fn new(url: &str, name: &str) -> Result<PgLock> {
        PgLock::announced(url, name, Identity::current())
    }

    /// The lock `name` on the server `url`, exclusive, announced to other
    /// sessions as `identity`.
    pub fn announced(url: &str, name: &str, identity: Identity) -> Result<PgLock> {
        let name = LockName::new(name)?;
        let target = Target::parse(url)?;
        Ok(PgLock {
            target,
            key: advisory_key(name.as_str()),
            name: name.as_str().to_owned(),
            mode: Mode::Exclusive,
            identity,
            max: None,
            grace: heartbeat::DEFAULT_GRACE,
            cancelling: false,
        })
    }

    /// The same lock taken as `--cancel-running` does (see
    /// [`crate::pg::cancel`]): a request that has to wait asks the holders
    /// that opted in to stop; once granted it gives up
    /// ([`Error::Superseded`]) if a newer such request came meanwhile;
    /// and its guard hears newer ones ([`PgGuard::on_cancel`]). Not with
    /// `--max`, which ignores it.
    pub fn cancelling(mut self) -> PgLock {
        self.cancelling = true;
        self
    }

    /// The same lock taken in `mode` (and no longer as a semaphore).
    pub fn with_mode(mut self, mode: Mode) -> PgLock {
        self.mode = mode;
        self.max = None;
        self
    }

    /// The same lock as a counting semaphore: up to `max` holders at once
    /// (1 to [`MAX_SLOTS`]), served in arrival order like every request.
    /// Such a holder holds the name shared, so it excludes exclusive
    /// holders but not shared ones; use the same `max` for every holder of
    /// a name. The protocol is in [`crate::pg::semaphore`]; a `max` above
    /// [`MAX_SLOTS`] is refused with [`Error::Unsupported`].
    pub fn with_max(mut self, max: u32) -> Result<PgLock> {
        if max > MAX_SLOTS {
            return Err(Error::Unsupported {
                lock: self.name,
                reason: format!(
                    "PostgreSQL locks take --max up to {MAX_SLOTS} \
                     (the first waiter opens a session per place)"
                ),
            });
        }
        self.mode = Mode::Shared;
        self.max = Some(max.max(1));
        Ok(self)
    }

    /// The semaphore's limit, if it is one ([`PgLock::with_max`]).
    pub fn max(&self) -> Option<u32> {
        self.max
    }

    /// What a `--max` request needs of this lock.
    fn semaphore_subject(&self) -> Subject {
        Subject {
            target: self.target.clone(),
            identity: self.identity.clone(),
            name: self.name.clone(),
            key: self.key,
            description: self.describe(),
        }
    }

    /// The same lock held by a caller that stops its work at most `grace`
    /// after it is told the lock is lost ([`PgGuard::watch`]); the server
    /// then keeps the lock of a holder it cannot hear for
    /// [`heartbeat::server_bound`]`(grace)`, so that it is not handed on
    /// while the work may still run. Default [`heartbeat::DEFAULT_GRACE`];
    /// at most [`handover::MAX_GRACE`] (more counts as that much: a
    /// newcomer pauses no longer for a holder that ended without releasing,
    /// so the work must stop within it).
    pub fn with_grace(mut self, grace: Duration) -> PgLock {
        self.grace = grace.min(handover::MAX_GRACE);
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

    /// Where the lock lives, for a listing of it.
    pub(crate) fn target(&self) -> &Target {
        &self.target
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

    /// The try form of the lock call as an SQL expression, the key
    /// written in: for a statement that does more (no parameters).
    fn try_sql(&self) -> String {
        let function = match self.mode {
            Mode::Exclusive => "pg_try_advisory_lock",
            Mode::Shared => "pg_try_advisory_lock_shared",
        };
        format!("pg_catalog.{function}(({})::pg_catalog.int8)", self.key)
    }

    /// One lock call on `client`: the try form, or the blocking one.
    fn lock_call(
        &self,
        client: &mut Client,
        try_only: bool,
    ) -> std::result::Result<bool, postgres::Error> {
        let sql = match (self.mode, try_only) {
            (Mode::Exclusive, true) => "SELECT pg_catalog.pg_try_advisory_lock($1)",
            (Mode::Shared, true) => "SELECT pg_catalog.pg_try_advisory_lock_shared($1)",
            (Mode::Exclusive, false) => "SELECT true FROM pg_catalog.pg_advisory_lock($1)",
            (Mode::Shared, false) => "SELECT true FROM pg_catalog.pg_advisory_lock_shared($1)",
        };
        // pg_advisory_lock returns void: selecting `true` from it makes
        // every form return a boolean, true when taken. query_typed: one
        // round trip, no separate prepare (they add up over a WAN).
        let rows = client.query_typed(sql, &[(&self.key, Type::INT8)])?;
        Ok(rows.first().is_some_and(|row| row.get(0)))
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
        client.query_typed(
            "SELECT pg_catalog.set_config('lock_timeout', $1, false)",
            &[(&format!("{ms}ms"), Type::TEXT)],
        )?;
        let taken = match self.lock_call(client, false) {
            Ok(taken) => Ok(taken),
            Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => Ok(false),
            Err(e) => Err(e),
        };
        // If resetting fails, the session is broken, and so is the lock.
        client.batch_execute("SELECT pg_catalog.set_config('lock_timeout', '0', false)")?;
        taken
    }

    /// The blocking wait on `client`, which `hooks` may end from another
    /// thread ([`WaitHooks::stop_with`]); Err(Interrupted) when they did,
    /// whatever the statement's outcome (the caller drops the session, and
    /// the server with it anything granted meanwhile).
    fn stoppable_wait(
        &self,
        client: &mut Client,
        deadline: Deadline,
        hooks: &mut dyn WaitHooks,
    ) -> Result<std::result::Result<bool, postgres::Error>> {
        let stopped = Arc::new(AtomicBool::new(false));
        let over = Arc::new(AtomicBool::new(false));
        let cancel_statement = Arc::new(Mutex::new(Some(self.target.statement_canceller(client))));
        let stop: WaitStopper = {
            let (stopped, over) = (stopped.clone(), over.clone());
            Arc::new(move || {
                if stopped.swap(true, Ordering::SeqCst) {
                    return;
                }
                let cancel_statement = cancel_statement.lock().ok().and_then(|mut c| c.take());
                let over = over.clone();
                // Sent again until the wait is over: a request that comes
                // before the lock statement starts (or between the two
                // statements of a bounded wait) is lost.
                std::thread::spawn(move || {
                    if let Some(cancel_statement) = cancel_statement {
                        while !over.load(Ordering::SeqCst) {
                            cancel_statement();
                            std::thread::sleep(CANCEL_AGAIN);
                        }
                    }
                });
            })
        };
        hooks.stop_with(Some(stop));
        let waited = match deadline.remaining() {
            Some(left) => self.wait_at_most(client, left),
            None => self.lock_call(client, false),
        };
        hooks.stop_with(None);
        over.store(true, Ordering::SeqCst);
        if stopped.load(Ordering::SeqCst) && hooks.interrupted() {
            return Err(Error::Interrupted {
                lock: self.describe(),
            });
        }
        Ok(waited)
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

    fn acquire_until(&self, deadline: Deadline, hooks: &mut dyn WaitHooks) -> Result<PgGuard> {
        if let Some(max) = self.max {
            let subject = self.semaphore_subject();
            let (client, backend_pid, slot) =
                Semaphore::new(&subject, max).acquire(deadline, hooks)?;
            return Ok(self
                .granted(client, backend_pid, false, deadline, hooks)?
                .with_slot(slot));
        }
        // The server's bound on a silent holder and the first try ride on
        // the statement that finishes the connection's pooler check, when
        // it lets them: one round trip instead of three.
        let bound = heartbeat::server_bound(self.grace);
        let mut then = vec![heartbeat::limit_silent_clients_sql(bound)];
        // A cancelling request listens before it tries (see `cancel`), so
        // its try stays a statement of its own.
        if !self.cancelling {
            then.push(self.try_sql());
        }
        let (mut client, backend_pid, done) =
            self.target.connect_session_then(&self.identity, &then)?;
        let lock_error = |cause| self.query_error("taking the advisory lock", cause);
        let bounded = done.is_some();
        let stamp = match self.cancelling {
            true => Some(cancel::listen(&mut client, backend_pid).map_err(lock_error)?),
            false => None,
        };
        // A try first: the server's try does not barge past queued waiters
        // (it conflicts with their requested modes), so this keeps order
        // and tells whether the wait hooks are needed at all.
        let mut taken = match done.as_ref().and_then(|values| values.get(1)) {
            Some(tried) => tried.as_deref() == Some("true"),
            None => self.lock_call(&mut client, true).map_err(lock_error)?,
        };
        if !taken && deadline.may_wait() {
            hooks.waiting();
            if let Some(stamp) = stamp {
                cancel::ask(&mut client, self.key, stamp).map_err(lock_error)?;
            }
            taken = self
                .stoppable_wait(&mut client, deadline, hooks)?
                .map_err(lock_error)?;
        }
        if !taken {
            let holders = self.conflict_holders(&mut client, hooks);
            return Err(deadline.refuse(self.describe(), holders));
        }
        let guard = self.granted(client, backend_pid, bounded, deadline, hooks)?;
        match stamp {
            Some(stamp) => self.unless_superseded(guard.with_cancel_stamp(stamp)),
            None => Ok(guard),
        }
    }

    fn holders(&self) -> Result<Holders> {
        if let Some(max) = self.max {
            let listing = self.identity.clone().with_command(&["(listing)"]);
            let mut client = self.target.connect(&listing)?;
            return Semaphore::new(&self.semaphore_subject(), max).holders(&mut client, None);
        }
        Ok(holders::to_holders(&self.pg_holders()?))
    }

    fn describe(&self) -> String {
        format!("{} (PostgreSQL {})", self.name, self.target.server())
    }
}

impl PgLock {
    /// Waits, if an earlier holder's session ended without releasing, until
    /// its command has surely been stopped (see [`crate::pg::handover`]),
    /// then erases its records. That pause is part of the wait: a request
    /// that may not wait, or not that long, fails at once with
    /// [`Error::Busy`] or [`Error::TimedOut`], saying when the lock will be
    /// usable.
    fn settle(
        &self,
        client: &mut Client,
        unreleased: &Unreleased,
        deadline: Deadline,
        hooks: &mut dyn WaitHooks,
    ) -> Result<()> {
        let Some(pause) = unreleased.pause() else {
            // Holders already stopped long enough ago (a request that
            // would not wait saw them first): only their records are left.
            if !unreleased.tokens.is_empty() {
                self.forget(client, &unreleased.tokens)?;
            }
            return Ok(());
        };
        let handing_over = || Holders {
            unidentified: Some(format!(
                "an earlier holder's session ended without releasing it, and its command may \
                 still be stopping: usable in {}",
                crate::human_duration(pause)
            )),
            ..Holders::default()
        };
        if !deadline.may_wait_for(pause) {
            return Err(deadline.refuse(self.describe(), handing_over()));
        }
        hooks.notice(&format!(
            "{} was granted, but an earlier holder's session ended without releasing it; \
             waiting {} so that its command has surely been stopped",
            self.name,
            crate::human_duration(pause)
        ));
        std::thread::sleep(pause);
        self.forget(client, &unreleased.tokens)
    }

    fn forget(&self, client: &mut Client, tokens: &[i64]) -> Result<()> {
        handover::forget(client, self.key, tokens)
            .map_err(|cause| self.query_error("erasing old grant records", cause))?;
        Ok(())
    }

    /// `guard`, unless a newer cancelling request came while it waited:
    /// then the lock is given back, and the request gives up.
    fn unless_superseded(&self, mut guard: PgGuard) -> Result<PgGuard> {
        match guard.newer_request() {
            None => Ok(guard),
            Some(newer) => {
                let _ = guard.release();
                Err(Error::Superseded {
                    lock: self.describe(),
                    by: Box::new(newer.by),
                })
            }
        }
    }

    /// The guard of the lock just granted on `client`; `bounded` if the
    /// server's bound on a silent holder is set already.
    fn granted(
        &self,
        mut client: Client,
        backend_pid: i32,
        bounded: bool,
        deadline: Deadline,
        hooks: &mut dyn WaitHooks,
    ) -> Result<PgGuard> {
        match self.set_up_grant(&mut client, bounded, deadline, hooks) {
            Ok((token, granted_at, bound)) => Ok(PgGuard::new(
                client,
                self.key,
                self.mode,
                backend_pid,
                self.target.server().to_owned(),
            )
            .with_fence(token)
            .with_identity(Identity {
                granted_at: Some(granted_at),
                ..self.identity.clone()
            })
            .with_loss_context(&self.name, bound)),
            Err(err) => {
                // Given back now: closing the session would free it too,
                // but only a moment after the caller has heard why.
                let _ = client.batch_execute("SELECT pg_catalog.pg_advisory_unlock_all()");
                Err(err)
            }
        }
    }

    /// The work of a grant before the guard exists: the fencing token, the
    /// hand-over record (and pause), the server's bound on a silent holder.
    /// Returns the token, the grant time and that bound. On an error after the grant was
    /// recorded, its record is erased again, so that giving the lock back
    /// is an orderly release.
    fn set_up_grant(
        &self,
        client: &mut Client,
        bounded: bool,
        deadline: Deadline,
        hooks: &mut dyn WaitHooks,
    ) -> Result<(i64, SystemTime, Duration)> {
        let holding = Holding {
            grace: self.grace,
            exclusive: self.mode == Mode::Exclusive || self.max.is_some(),
        };
        let grant = fence::next(
            client,
            self.key,
            &self.name,
            &self.identity,
            holding,
            self.target.server(),
        )?;
        let settled = self
            .settle(client, &grant.unreleased, deadline, hooks)
            .and_then(|()| {
                // The server's bound on a silent holder (see pg::heartbeat); one
                // it refuses leaves the lock held, only without that bound.
                let bound = heartbeat::server_bound(self.grace);
                if !bounded {
                    heartbeat::limit_silent_clients(client, bound)
                        .map_err(|cause| self.query_error("setting up the lock session", cause))?;
                }
                Ok(bound)
            });
        match settled {
            Ok(bound) => Ok((grant.token, grant.granted_at, bound)),
            Err(err) => {
                let _ = handover::forget(client, self.key, &[grant.token]);
                Err(err)
            }
        }
    }
}
