//! `--max N` on a PostgreSQL server: a counting semaphore of up to N
//! holders, served in arrival order, built from advisory locks only, so
//! that every wait happens in the server and nothing polls.
//!
//! # Keys
//!
//! Besides the name's own bigint key `K` ([`advisory_key`]), a semaphore
//! uses keys in the *two-int4* advisory key space, which `pg_locks` shows
//! with `objsubid = 2` and which therefore never meets a bigint key (those
//! have `objsubid = 1`), even with equal halves:
//!
//! - the **gate** `G` = [`gate_key`]`(name)`, and
//! - the **slots** `S1 .. SN` = [`slot_key`]`(name, i)`, 1 ≤ i ≤ N.
//!
//! Each is the bigint that [`advisory_key`] gives for the string `NAME#gate`
//! or `NAME#i` (`i` in decimal; `#` cannot occur in a lock name, so these
//! strings never hash a real name), split into its high and low 32 bits as
//! the two int4 keys. In SQL, with `k` that bigint:
//! `pg_advisory_lock((k >> 32)::int4, (k << 32 >> 32)::int4)`. The keys
//! are computed in `semaphore_keys.rs`.
//!
//! [`advisory_key`]: crate::pg::advisory_key
//!
//! # Protocol
//!
//! A request, on its own session:
//!
//! 1. takes `K` **shared** (`pg_advisory_lock_shared`): it queues behind an
//!    exclusive holder or waiter of the name, and an exclusive request that
//!    comes later waits for it (the server's queue does not let a shared
//!    request pass a queued exclusive one);
//! 2. takes `G` **exclusive**: the server's FIFO queue on `G` is the
//!    arrival order of semaphore requests;
//! 3. holding `G`, tries the slots in order (`pg_try_advisory_lock(Si)` in
//!    one statement, stopping at the first taken); if none is free it waits
//!    for *any* slot: it opens one helper session per slot, each blocking in
//!    `pg_advisory_lock(Si)`; the first helper granted releases its slot
//!    (nobody else tries slots: they would need `G`) and the others are
//!    ended with `pg_terminate_backend` (which, unlike a cancel request,
//!    cannot arrive before the helper's lock call and be lost); then step 3
//!    again, on the request's own session;
//! 4. releases `G` and runs holding `K` shared and one slot.
//!
//! Releasing the lock closes the session, which frees both.
//!
//! Mixing with plain holders of the same name, as for local locks: a
//! `--max` holder holds the name shared, so it excludes exclusive holders
//! (each waits for the other, in arrival order) and coexists with shared
//! ones, which it does not count. Every holder of a name must use the same
//! N: a larger N simply has more slots.
//!
//! # Cost and limits
//!
//! One session per request, as for every lock; the request at the head of
//! the queue holds N + 1 sessions while every slot is busy (helpers connect
//! in parallel when it starts waiting and close once a slot is free), so N
//! is capped at [`MAX_SLOTS`]. Sessions that wait set
//! `client_connection_check_interval` (PostgreSQL 14+), so that the server
//! notices within a second that a killed client's waiting session is gone
//! instead of leaving it queued. A helper that cannot connect (the
//! server's `max_connections`) fails the request, which then holds nothing.
//!
//! No cycle of waits can form, so the server's deadlock checker never
//! reorders these queues: holders of a slot wait for nothing, the gate's
//! holder waits only through its helpers, which hold nothing, and a request
//! waiting for the gate holds only the name, shared.
//!
//! Measured (tests `pg::semaphore::waiters_are_granted_in_arrival_order`
//! and the CLI's `max_waiters_run_in_arrival_order`): waiters are granted
//! in arrival order, since the gate's queue is the server's FIFO queue of
//! one advisory lock.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postgres::Client;
use postgres::error::SqlState;
use postgres::types::ToSql;

use crate::pg::connection::Target;
use crate::pg::error::PgError;
use crate::pg::holders;
use crate::pg::identity::Identity;
pub use crate::pg::semaphore_keys::{IntPair, MAX_SLOTS, gate_key, slot_key};
use crate::pg::semaphore_line::{self, Shared};
use crate::{Deadline, Error, Holders, Result, WaitHooks};

/// How long a request that may not wait waits for the gate held by a request that is
/// about to take one of the free slots (as the local queue's gate).
const GATE_GRACE: Duration = Duration::from_secs(1);

/// Makes a waiting session's backend notice a vanished client within a
/// second; a no-op (no row) before PostgreSQL 14.
const CHECK_CLIENT: &str = "\
SELECT pg_backend_pid(),
       (SELECT set_config(name, '1000', false) FROM pg_settings
         WHERE name = 'client_connection_check_interval')";

/// Takes the first free slot of `$1`/`$2` (the keys' halves), returning its
/// 1-based index, or no row. `LIMIT 1` stops the scan at the first slot
/// taken, so at most one is.
const TRY_SLOTS: &str = "\
SELECT s.i FROM unnest($1::int4[], $2::int4[]) WITH ORDINALITY AS s(k1, k2, i)
 WHERE pg_try_advisory_lock(s.k1, s.k2) LIMIT 1";

/// What a semaphore request needs of its lock (a [`crate::PgLock`] gives
/// it): where it is, who asks, and its name.
#[derive(Debug, Clone)]
pub(crate) struct Subject {
    pub(crate) target: Target,
    pub(crate) identity: Identity,
    pub(crate) name: String,
    /// The name's own advisory key.
    pub(crate) key: i64,
    /// The lock as messages name it.
    pub(crate) description: String,
}

impl Subject {
    fn name(&self) -> &str {
        &self.name
    }

    fn key(&self) -> i64 {
        self.key
    }

    fn target(&self) -> &Target {
        &self.target
    }

    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn server(&self) -> &str {
        self.target.server()
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

/// One semaphore request: the lock, its N slots and its gate.
pub(crate) struct Semaphore<'a> {
    lock: &'a Subject,
    gate: IntPair,
    slots: Vec<IntPair>,
}

/// How a wait on the server ended.
enum Waited {
    Granted,
    TimedOut,
}

impl<'a> Semaphore<'a> {
    pub(crate) fn new(lock: &'a Subject, max: u32) -> Semaphore<'a> {
        Semaphore {
            lock,
            gate: gate_key(lock.name()),
            slots: (1..=max).map(|i| slot_key(lock.name(), i)).collect(),
        }
    }

    /// Takes `K` shared and a slot on a new session, as the module docs
    /// say; returns the session, its backend pid and the slot's index
    /// (0 to N-1).
    pub(crate) fn acquire(
        &self,
        deadline: Deadline,
        hooks: &mut dyn WaitHooks,
    ) -> Result<(Client, i32, u32)> {
        let no_wait = !deadline.may_wait();
        let mut client = self.lock.target().connect(self.lock.identity())?;
        let backend_pid: i32 = client
            .query_one(CHECK_CLIENT, &[])
            .map_err(|cause| self.error("starting the lock session", cause))?
            .get(0);
        let mut request = Request {
            sem: self,
            client: &mut client,
            backend_pid,
            deadline,
            no_wait,
            hooks,
            told: false,
        };
        match request.run() {
            Ok(slot) => Ok((client, backend_pid, slot)),
            Err(err) => {
                // Give back what the request took (the name, the gate)
                // before returning: closing the session frees them too, but
                // only a moment after the caller has heard "busy".
                let _ = client.batch_execute("SELECT pg_advisory_unlock_all()");
                Err(err)
            }
        }
    }

    fn error(&self, context: &'static str, cause: postgres::Error) -> PgError {
        PgError::Query {
            context,
            server: self.lock.server().to_owned(),
            cause,
        }
    }

    fn halves(keys: &[IntPair]) -> (Vec<i32>, Vec<i32>) {
        keys.iter().map(|k| (k.0, k.1)).unzip()
    }

    /// Holders: the sessions holding a slot, and an exclusive holder of the
    /// name; waiters: the gate's holder without a slot, then the sessions
    /// waiting for the gate or the name, in waiting order (see
    /// [`semaphore_line`]); leaving out the session `own` (a request asking
    /// who is in its way).
    pub(crate) fn holders(&self, client: &mut Client, own: Option<i32>) -> Result<Holders> {
        let name = self.lock.name();
        let mut on_name = holders::query(client, self.lock.key())
            .map_err(|cause| self.error("reading pg_locks", cause))?;
        on_name.retain(|s| Some(s.backend_pid) != own);
        let slots = self.slots.len() as u32;
        let pairs = semaphore_line::pair_locks(client, &semaphore_line::keys(name, slots))
            .map_err(|cause| self.error("reading pg_locks", cause))?;
        let line = semaphore_line::arrange(name, slots, on_name, &pairs, Shared::Drop);
        Ok(holders::to_holders(&line))
    }
}

/// What a request takes before it looks for a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The name's own key, shared.
    Name,
    /// The gate, exclusive.
    Gate,
}

/// One request in progress on its session.
struct Request<'s, 'c, 'h> {
    sem: &'s Semaphore<'s>,
    client: &'c mut Client,
    backend_pid: i32,
    deadline: Deadline,
    /// Whether the request could not wait from the start (its gate still
    /// gets [`GATE_GRACE`]).
    no_wait: bool,
    hooks: &'h mut dyn WaitHooks,
    told: bool,
}

impl Request<'_, '_, '_> {
    /// Returns the index of the slot taken.
    fn run(&mut self) -> Result<u32> {
        self.take(Step::Name)?;
        self.take(Step::Gate)?;
        let slot = loop {
            if let Some(slot) = self.try_slots()? {
                break slot;
            }
            if self.no_wait {
                return Err(self.refuse());
            }
            self.tell_waiting();
            match wait_for_any(self.sem, self.client, self.deadline.end())? {
                Waited::Granted => continue,
                Waited::TimedOut => return Err(self.refuse()),
            }
        };
        let gate = self.sem.gate;
        self.client
            .execute("SELECT pg_advisory_unlock($1, $2)", &[&gate.0, &gate.1])
            .map_err(|cause| self.sem.error("releasing the semaphore gate", cause))?;
        Ok(slot)
    }

    /// Takes the name (shared) or the gate: a try first, then, if it is
    /// held, a wait in the server as the request's wait allows.
    fn take(&mut self, step: Step) -> Result<()> {
        let (key, gate) = (self.sem.lock.key(), self.sem.gate);
        let (try_sql, wait_sql, params): (_, _, Vec<&(dyn ToSql + Sync)>) = match step {
            Step::Name => (
                "SELECT pg_try_advisory_lock_shared($1)",
                "SELECT true FROM pg_advisory_lock_shared($1)",
                vec![&key],
            ),
            Step::Gate => (
                "SELECT pg_try_advisory_lock($1, $2)",
                "SELECT true FROM pg_advisory_lock($1, $2)",
                vec![&gate.0, &gate.1],
            ),
        };
        let lock_error = |cause| self.sem.error("taking the advisory lock", cause);
        let taken: bool = self
            .client
            .query_one(try_sql, &params)
            .map_err(lock_error)?
            .get(0);
        if taken {
            return Ok(());
        }
        let limit = if self.no_wait {
            // Only the gate is worth a short wait, and only while a slot is
            // free: its holder is then about to take one and let go.
            if step == Step::Name || self.slots_full()? {
                return Err(self.refuse());
            }
            Some(GATE_GRACE)
        } else {
            self.tell_waiting();
            self.deadline.remaining()
        };
        let granted = wait_at_most(self.client, wait_sql, &params, limit)
            .map_err(|cause| self.sem.error("waiting for the advisory lock", cause))?;
        match granted {
            true => Ok(()),
            false => Err(self.refuse()),
        }
    }

    /// Takes the first free slot, if any: its index, 0 to N-1.
    fn try_slots(&mut self) -> Result<Option<u32>> {
        let (k1, k2) = Semaphore::halves(&self.sem.slots);
        let rows = self
            .client
            .query(TRY_SLOTS, &[&k1, &k2])
            .map_err(|cause| self.sem.error("taking a semaphore slot", cause))?;
        // ORDINALITY counts from 1.
        Ok(rows.first().map(|row| (row.get::<_, i64>(0) - 1) as u32))
    }

    /// True when every slot is held by someone.
    fn slots_full(&mut self) -> Result<bool> {
        let sessions = self.sem.holders(self.client, Some(self.backend_pid))?;
        Ok(sessions.holders.len() >= self.sem.slots.len())
    }

    fn tell_waiting(&mut self) {
        if !self.told {
            self.told = true;
            self.hooks.waiting();
        }
    }

    fn conflict_holders(&mut self) -> Holders {
        if !self.hooks.name_holders() {
            return Holders::default();
        }
        self.sem
            .holders(self.client, Some(self.backend_pid))
            .unwrap_or_default()
    }

    fn refuse(&mut self) -> Error {
        let holders = self.conflict_holders();
        self.deadline.refuse(self.sem.lock.describe(), holders)
    }
}

/// Runs the blocking lock call `sql` with the server's `lock_timeout` set
/// to `limit` (none: no limit); Ok(false) when it ran out.
fn wait_at_most(
    client: &mut Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    limit: Option<Duration>,
) -> std::result::Result<bool, postgres::Error> {
    let Some(limit) = limit else {
        return client.query_one(sql, params).map(|_| true);
    };
    if limit.is_zero() {
        return Ok(false);
    }
    // lock_timeout is in whole milliseconds, and 0 means no limit.
    let ms = limit.as_micros().div_ceil(1000).clamp(1, i32::MAX as u128);
    client.execute(
        "SELECT set_config('lock_timeout', $1, false)",
        &[&format!("{ms}ms")],
    )?;
    let granted = match client.query_one(sql, params) {
        Ok(_) => Ok(true),
        Err(e) if e.code() == Some(&SqlState::LOCK_NOT_AVAILABLE) => Ok(false),
        Err(e) => Err(e),
    };
    client.execute("SELECT set_config('lock_timeout', '0', false)", &[])?;
    granted
}

/// What a helper session reports.
enum Report {
    Granted(usize),
    Failed(PgError),
}

/// The helpers' shared registry: their backend pids, and whether the wait
/// is over (a helper that connects after that does not start waiting).
#[derive(Default)]
struct Registry {
    over: bool,
    pids: Vec<(usize, i32)>,
}

/// Waits, holding the gate, until any slot is granted to one of N helper
/// sessions (then released for the request's own session to take), or the
/// deadline passes. Every helper is gone when this returns.
fn wait_for_any(
    sem: &Semaphore<'_>,
    client: &mut Client,
    deadline: Option<Instant>,
) -> Result<Waited> {
    let registry = Arc::new(Mutex::new(Registry::default()));
    let (tx, rx) = mpsc::channel();
    let helpers: Vec<JoinHandle<Option<Client>>> = (0..sem.slots.len())
        .map(|i| {
            let (lock, slot) = (sem.lock.clone(), sem.slots[i]);
            let (registry, tx) = (registry.clone(), tx.clone());
            std::thread::spawn(move || helper(&lock, i, slot, &registry, &tx))
        })
        .collect();
    drop(tx);
    let report = match deadline {
        None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
    };
    let outcome = match report {
        Ok(Report::Granted(i)) => Ok((Waited::Granted, Some(i))),
        Ok(Report::Failed(e)) => Err(Error::from(e)),
        Err(RecvTimeoutError::Timeout) => Ok((Waited::TimedOut, None)),
        // Only if every helper thread panicked.
        Err(RecvTimeoutError::Disconnected) => Err(Error::io(
            "waiting for a free semaphore slot",
            std::io::Error::other("the helper sessions ended without a word"),
        )),
    };
    let winner = outcome.as_ref().ok().and_then(|(_, i)| *i);
    let ended = end_helpers(sem, client, &registry, helpers, winner);
    let (waited, _) = outcome?;
    ended?;
    Ok(waited)
}

/// One helper: a session that waits for slot `i` until granted or ended.
/// Returns the session if it was granted.
fn helper(
    lock: &Subject,
    i: usize,
    slot: IntPair,
    registry: &Mutex<Registry>,
    tx: &mpsc::Sender<Report>,
) -> Option<Client> {
    let setup = |client: &mut Client| -> std::result::Result<i32, postgres::Error> {
        Ok(client.query_one(CHECK_CLIENT, &[])?.get(0))
    };
    let mut client = match lock.target().connect(lock.identity()) {
        Ok(client) => client,
        Err(e) => {
            let _ = tx.send(Report::Failed(e));
            return None;
        }
    };
    let pid = match setup(&mut client) {
        Ok(pid) => pid,
        Err(cause) => {
            let _ = tx.send(Report::Failed(helper_error(lock, cause)));
            return None;
        }
    };
    {
        let mut registry = registry.lock().unwrap();
        if registry.over {
            return None;
        }
        registry.pids.push((i, pid));
    }
    match client.query_one(
        "SELECT true FROM pg_advisory_lock($1, $2)",
        &[&slot.0, &slot.1],
    ) {
        Ok(_) => {
            let _ = tx.send(Report::Granted(i));
            Some(client)
        }
        Err(cause) => {
            // Ended by the request (terminated) is the usual way here; the
            // request no longer listens then.
            let _ = tx.send(Report::Failed(helper_error(lock, cause)));
            None
        }
    }
}

fn helper_error(lock: &Subject, cause: postgres::Error) -> PgError {
    PgError::Query {
        context: "waiting for a free semaphore slot",
        server: lock.server().to_owned(),
        cause,
    }
}

/// Ends every helper but `winner` with `pg_terminate_backend` (registered
/// ones: the others see `over` and never wait), joins them all, and
/// releases the slot of any helper that was granted one.
fn end_helpers(
    sem: &Semaphore<'_>,
    client: &mut Client,
    registry: &Mutex<Registry>,
    helpers: Vec<JoinHandle<Option<Client>>>,
    winner: Option<usize>,
) -> Result<()> {
    let doomed: Vec<i32> = {
        let mut registry = registry.lock().unwrap();
        registry.over = true;
        registry
            .pids
            .iter()
            .filter(|(i, _)| Some(*i) != winner)
            .map(|(_, pid)| *pid)
            .collect()
    };
    let terminated = client
        .execute(
            "SELECT pg_terminate_backend(p) FROM unnest($1::int4[]) AS p",
            &[&doomed],
        )
        .map_err(|cause| sem.error("ending the semaphore's helper sessions", cause));
    for (i, helper) in helpers.into_iter().enumerate() {
        let Ok(Some(mut granted)) = helper.join() else {
            continue;
        };
        // The winner (or a helper granted in the same instant): hand its
        // slot back, so the request's own session can take it.
        let slot = sem.slots[i];
        let _ = granted.execute("SELECT pg_advisory_unlock($1, $2)", &[&slot.0, &slot.1]);
        let _ = granted.close();
    }
    terminated.map(|_| ()).map_err(Error::from)
}
