//! A held PostgreSQL lock: the session that holds it.

use std::time::{Duration, Instant};

use crate::Mode;
use postgres::Client;

use crate::pg::error::PgError;
use crate::pg::key::LockKeyParts;

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
/// goes: see docs/wip-postgres.md for detecting that loss).
pub struct PgGuard {
    client: Client,
    key: i64,
    mode: Mode,
    backend_pid: i32,
    server: String,
    acquired: Instant,
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
            client,
            key,
            mode,
            backend_pid,
            server,
            acquired: Instant::now(),
        }
    }

    /// The server backend pid of the session holding the lock.
    pub fn backend_pid(&self) -> i32 {
        self.backend_pid
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
    /// lock must be taken as lost. (Groundwork for lock-loss detection: the
    /// heartbeat thread that calls this is not written yet.)
    pub fn check(&mut self, timeout: Duration) -> Result<bool, PgError> {
        self.client
            .is_valid(timeout)
            .map_err(|cause| self.query_error("checking the session", cause))?;
        let parts = LockKeyParts::of(self.key);
        let row = self
            .client
            .query_one(HELD_BY_THIS_SESSION, &[&parts.classid, &parts.objid])
            .map_err(|cause| self.query_error("checking the lock", cause))?;
        Ok(row.get::<_, i64>(0) > 0)
    }

    /// Releases the lock (`pg_advisory_unlock[_shared]`) and closes the
    /// session; an error says the lock could not be released in an orderly
    /// way (the server still drops it when the session ends).
    pub fn release(mut self) -> Result<(), PgError> {
        let sql = match self.mode {
            Mode::Exclusive => "SELECT pg_advisory_unlock($1)",
            Mode::Shared => "SELECT pg_advisory_unlock_shared($1)",
        };
        let unlocked = self.client.query_one(sql, &[&self.key]);
        let unlocked = unlocked.map_err(|cause| self.query_error("releasing the lock", cause))?;
        let was_held: bool = unlocked.get(0);
        let server = self.server.clone();
        self.client.close().map_err(|cause| PgError::Query {
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

    fn query_error(&self, context: &'static str, cause: postgres::Error) -> PgError {
        PgError::Query {
            context,
            server: self.server.clone(),
            cause,
        }
    }
}
