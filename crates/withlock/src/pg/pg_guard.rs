//! A held PostgreSQL lock: the session that holds it.

use std::time::{Duration, Instant, SystemTime};

use crate::Mode;
use postgres::Client;
use postgres::types::Type;

use crate::cancelled::Cancelled;
use crate::pg::cancel::{self, ServerStamp, Subscription};
use crate::pg::error::PgError;
use crate::pg::handover;
use crate::pg::heartbeat::{self, Context, LockLost, Watch};
use crate::pg::identity::Identity;
use crate::pg::key::LockKeyParts;
use crate::pg::run_record;

/// Whether this session holds the advisory key (`$1` its high, `$2` its low
/// half). Only `is_valid` is bounded by the timeout given to
/// [`PgGuard::check`]; this query relies on the connection's keepalives and
/// `TCP_USER_TIMEOUT` (10 s) on a cut network.
const HELD_BY_THIS_SESSION: &str = "\
SELECT count(*) FROM pg_locks
 WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted
   AND classid = $1 AND objid = $2 AND objsubid = 1";

/// A held [`crate::PgLock`]. The lock lives as long as its session:
/// dropping the guard closes the connection, and the server releases the
/// lock when the session ends (also when this process dies or the network
/// goes). [`PgGuard::watch`] notices such a loss within
/// [`heartbeat::DETECTION_BOUND`] (see [`crate::pg::heartbeat`]).
pub struct PgGuard {
    /// The session; None while a watch's heartbeat thread has it.
    client: Option<Box<Client>>,
    /// The heartbeat, once [`PgGuard::watch`] started it.
    watch: Option<Watch>,
    /// The lock name, for [`LockLost`].
    name: String,
    /// How long the server keeps the lock of a silent holder
    /// ([`heartbeat::server_bound`]), for `idle_session_timeout`.
    server_bound: Duration,
    key: i64,
    mode: Mode,
    backend_pid: i32,
    server: String,
    acquired: Instant,
    /// The fencing token of this grant (see [`crate::pg::fence`]).
    fence: i64,
    /// Who holds it, with the grant time, as its `application_name` says.
    identity: Option<Identity>,
    /// Its place among the N of `--max N` (see [`crate::pg::semaphore`]).
    slot: Option<u32>,
    /// For a lock taken with [`crate::PgLock::cancelling`]: its session's
    /// stamp (see [`crate::pg::cancel`]).
    cancel_stamp: Option<ServerStamp>,
    /// Whom the watch tells of a cancel ([`PgGuard::on_cancel`]).
    on_cancel: Option<Box<dyn FnOnce(Cancelled) + Send>>,
}

impl std::fmt::Debug for PgGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgGuard")
            .field("key", &self.key)
            .field("mode", &self.mode)
            .field("backend_pid", &self.backend_pid)
            .field("server", &self.server)
            .finish()
    }
}

impl PgGuard {
    pub(crate) fn new(
        client: Client,
        key: i64,
        mode: Mode,
        backend_pid: i32,
        server: String,
    ) -> PgGuard {
        PgGuard {
            client: Some(Box::new(client)),
            watch: None,
            name: String::new(),
            server_bound: heartbeat::server_bound(heartbeat::DEFAULT_GRACE),
            key,
            mode,
            backend_pid,
            server,
            acquired: Instant::now(),
            fence: 0,
            identity: None,
            slot: None,
            cancel_stamp: None,
            on_cancel: None,
        }
    }

    /// The same guard of a lock that may be cancelled, its session
    /// listening since `stamp`.
    pub(crate) fn with_cancel_stamp(mut self, stamp: ServerStamp) -> PgGuard {
        self.cancel_stamp = Some(stamp);
        self
    }

    /// Has [`PgGuard::watch`] call `on_cancel`, once, from its heartbeat
    /// thread, when a newer cancelling request for the lock asks (see
    /// [`crate::pg::cancel`]); only for a lock taken with
    /// [`crate::PgLock::cancelling`], else it is dropped. Call it before
    /// the watch starts.
    pub fn on_cancel(&mut self, on_cancel: Box<dyn FnOnce(Cancelled) + Send>) {
        if self.cancel_stamp.is_some() {
            self.on_cancel = Some(on_cancel);
        }
    }

    /// A newer cancelling request heard while this one waited (or since),
    /// checked: the request just granted must give way to it.
    pub(crate) fn newer_request(&mut self) -> Option<Cancelled> {
        let (Some(client), Some(own)) = (self.client.as_mut(), self.cancel_stamp) else {
            return None;
        };
        let heard = cancel::pending(client);
        cancel::first_newer(client, &heard, self.key, own, &self.name)
    }

    /// The server backend pid of the session holding the lock.
    pub fn backend_pid(&self) -> i32 {
        self.backend_pid
    }

    /// This grant's fencing token: higher than that of every earlier
    /// grant of the lock name on this database (see [`crate::pg::fence`]).
    pub fn fence(&self) -> i64 {
        self.fence
    }

    /// The same guard with its fencing token.
    pub(crate) fn with_fence(mut self, token: i64) -> PgGuard {
        self.fence = token;
        self
    }

    /// Which of the N places of a `--max N` lock this session holds, 0 to
    /// N-1: its slot key, unique among the current holders; `None` for
    /// any other lock.
    pub fn slot(&self) -> Option<u32> {
        self.slot
    }

    /// When a run under this lock last succeeded, on the server's clock
    /// (see [`crate::pg::run_record`], for `--once-per`); `None` if none
    /// was recorded. Call it before [`PgGuard::watch`], which takes the
    /// session.
    pub fn last_success(&mut self) -> Result<Option<crate::LastSuccess>, PgError> {
        let server = self.server.clone();
        let client = self.client.as_mut().ok_or(PgError::NotHeld {
            server: server.clone(),
        })?;
        run_record::last_success(client, self.key, &server)
    }

    /// Records that the run under this hold succeeded, at the grant's
    /// time; ends a watch first (the command has ended), keeping the
    /// session for the release.
    pub fn record_success(&mut self) -> Result<(), PgError> {
        let mut client = self.take_session()?;
        let recorded = run_record::record_success(&mut client, self.key, &self.server);
        self.client = Some(Box::new(client));
        recorded
    }

    /// The same guard holding slot `slot` of a `--max N` lock.
    pub(crate) fn with_slot(mut self, slot: u32) -> PgGuard {
        self.slot = Some(slot);
        self
    }

    /// The same guard knowing who holds it, as announced, with the grant
    /// time (what [`PgGuard::announce_deadline`] writes beside).
    pub(crate) fn with_identity(mut self, identity: Identity) -> PgGuard {
        self.identity = Some(identity);
        self
    }

    /// Tells listings when this holder's time limit runs out: its
    /// `application_name` gets the deadline after the grant time (see
    /// [`Identity`]), on the server's clock: the time left until
    /// `deadline` on this machine's clock, counted from the grant. Call it
    /// before [`PgGuard::watch`], which takes the session; once watched,
    /// or without a known grant time, nothing is written.
    pub fn announce_deadline(&mut self, deadline: SystemTime) -> Result<(), PgError> {
        let (Some(client), Some(identity)) = (self.client.as_mut(), self.identity.as_mut()) else {
            return Ok(());
        };
        let Some(granted_at) = identity.granted_at else {
            return Ok(());
        };
        let left = deadline
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        identity.deadline = granted_at
            .checked_add(self.acquired.elapsed())
            .and_then(|now| now.checked_add(left));
        let name = identity.application_name();
        let set = client.query_typed(
            "SELECT pg_catalog.set_config('application_name', $1, false)",
            &[(&name, Type::TEXT)],
        );
        set.map(drop)
            .map_err(|cause| self.query_error("announcing the deadline", cause))
    }

    /// The same guard knowing its lock's name and how long the server
    /// keeps it for a silent holder (what [`PgGuard::watch`] needs).
    pub(crate) fn with_loss_context(mut self, name: &str, server_bound: Duration) -> PgGuard {
        self.name = name.to_owned();
        self.server_bound = server_bound;
        self
    }

    /// Starts watching the session in a heartbeat thread of its own (see
    /// [`crate::pg::heartbeat`]): if the lock is lost while held,
    /// `on_lost` is called there, once, within
    /// [`heartbeat::DETECTION_BOUND`]. [`PgGuard::release`] and dropping
    /// the guard end the watch without calling it. A second call does
    /// nothing. Fails only if the thread cannot start (the guard then
    /// holds the lock unwatched).
    pub fn watch(&mut self, on_lost: Box<dyn FnOnce(LockLost) + Send>) -> std::io::Result<()> {
        let Some(client) = self.client.take() else {
            return Ok(());
        };
        let context = Context {
            lock: self.name.clone(),
            server: self.server.clone(),
        };
        let cancel = match (self.cancel_stamp, self.on_cancel.take()) {
            (Some(own), Some(on_cancel)) => Some(Subscription {
                key: self.key,
                own,
                lock: self.name.clone(),
                on_cancel: Some(on_cancel),
            }),
            _ => None,
        };
        match Watch::start(client, context, self.server_bound, on_lost, cancel) {
            Ok(watch) => {
                self.watch = Some(watch);
                Ok(())
            }
            Err((client, e)) => {
                self.client = Some(client);
                Err(e)
            }
        }
    }

    /// The loss a watch noticed, if any (always None unwatched).
    pub fn lost(&self) -> Option<LockLost> {
        self.watch.as_ref().and_then(Watch::lost)
    }

    /// The advisory key held.
    pub fn key(&self) -> i64 {
        self.key
    }

    /// How long the lock has been held.
    pub fn held_for(&self) -> Duration {
        self.acquired.elapsed()
    }

    /// Asks the server, within `timeout`, whether this session still holds
    /// the lock. An error means the session is gone or unreachable, so the
    /// lock must be taken as lost. While watched, the heartbeat has the
    /// session, and this says what it has seen instead of asking.
    pub fn check(&mut self, timeout: Duration) -> Result<bool, PgError> {
        if let Some(watch) = &self.watch {
            return match watch.lost() {
                None => Ok(true),
                Some(_) => Err(PgError::NotHeld {
                    server: self.server.clone(),
                }),
            };
        }
        let client = self
            .client
            .as_mut()
            .expect("an unwatched guard has its session");
        client
            .is_valid(timeout)
            .map_err(|cause| self.query_error("checking the session", cause))?;
        let parts = LockKeyParts::of(self.key);
        let client = self
            .client
            .as_mut()
            .expect("an unwatched guard has its session");
        let row = client
            .query_one(HELD_BY_THIS_SESSION, &[&parts.classid, &parts.objid])
            .map_err(|cause| self.query_error("checking the lock", cause))?;
        Ok(row.get::<_, i64>(0) > 0)
    }

    /// Releases the lock (`pg_advisory_unlock[_shared]`) and closes the
    /// session; an error says the lock could not be released in an orderly
    /// way (the server still drops it when the session ends).
    pub fn release(mut self) -> Result<(), PgError> {
        let mut client = self.take_session()?;
        // One statement, one round trip. The grant record is erased before
        // the unlock (the unlock reads the erasure's row), so that the next
        // holder, granted the moment the unlock runs, finds no record of an
        // unreleased grant and does not pause for this one (see
        // pg::handover); its own grant waits on the erased row until this
        // statement commits. The name's key says whether the lock was still
        // held; unlock_all then frees the rest (a --max slot) now, not when
        // the server gets round to ending the session after the close. The
        // commit does not wait for the disk: an erasure lost in a crash
        // only makes the next holder pause, and the next grant's commit
        // flushes it anyway.
        let sql = match self.mode {
            Mode::Exclusive => RELEASE_EXCLUSIVE,
            Mode::Shared => RELEASE_SHARED,
        };
        let tokens: &[i64] = &[self.fence];
        let unlocked =
            client.query_typed(sql, &[(&self.key, Type::INT8), (&tokens, Type::INT8_ARRAY)]);
        let unlocked = unlocked.map_err(|cause| self.query_error("releasing the lock", cause))?;
        let was_held = unlocked.first().is_some_and(|row| row.get::<_, bool>(0));
        let server = self.server.clone();
        client.close().map_err(|cause| PgError::Query {
            context: "closing the lock session",
            server: server.clone(),
            cause,
        })?;
        if was_held {
            Ok(())
        } else {
            Err(PgError::NotHeld { server })
        }
    }

    /// The session, from the heartbeat thread if watched; a lost one is
    /// [`PgError::NotHeld`].
    fn take_session(&mut self) -> Result<Client, PgError> {
        let client = match self.watch.take() {
            Some(watch) => watch.stop(),
            None => self.client.take(),
        };
        client
            .map(|client| *client)
            .ok_or_else(|| PgError::NotHeld {
                server: self.server.clone(),
            })
    }

    fn query_error(&self, context: &'static str, cause: postgres::Error) -> PgError {
        PgError::Query {
            context,
            server: self.server.clone(),
            cause,
        }
    }
}

/// The release of an exclusive holder: `$1` the key, `$2` its grant's
/// token (see [`PgGuard::release`]).
const RELEASE_EXCLUSIVE: &str = "\
WITH erased AS MATERIALIZED (SELECT withlock.forget_grants($1, $2)),
     name AS MATERIALIZED (SELECT pg_catalog.pg_advisory_unlock($1) AS held FROM erased)
SELECT held, pg_catalog.pg_advisory_unlock_all(),
       pg_catalog.set_config('synchronous_commit', 'off', true)
  FROM name";

/// The same for a shared holder.
const RELEASE_SHARED: &str = "\
WITH erased AS MATERIALIZED (SELECT withlock.forget_grants($1, $2)),
     name AS MATERIALIZED (SELECT pg_catalog.pg_advisory_unlock_shared($1) AS held FROM erased)
SELECT held, pg_catalog.pg_advisory_unlock_all(),
       pg_catalog.set_config('synchronous_commit', 'off', true)
  FROM name";

impl Drop for PgGuard {
    /// Dropping a held guard releases the lock and ends its session;
    /// erasing the grant record first makes that an orderly end, so the
    /// next holder does not pause for it (see pg::handover). A lost lock
    /// has no session left, and its record stays.
    fn drop(&mut self) {
        if let Ok(mut client) = self.take_session() {
            let _ = handover::forget(&mut client, self.key, &[self.fence]);
            // Free now, not once the server has ended the closed session.
            let _ = client.batch_execute("SELECT pg_catalog.pg_advisory_unlock_all()");
        }
    }
}
