//! Handing a lock on safely after a holder's session ended without
//! releasing it.
//!
//! The server frees an advisory lock the moment the holding session ends:
//! after `pg_terminate_backend`, a server restart or a reset connection,
//! the next waiter is granted the lock at once, while the old holder's
//! command may still be running. Its withlock notices within
//! [`DETECTION_BOUND`] and stops the command (SIGTERM, SIGKILL after its
//! grace), but until then two commands would overlap.
//!
//! So every grant is recorded, and every orderly release erases its
//! record, in one more table:
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS withlock_holds (
//!     key         bigint  NOT NULL,   -- the advisory key of the name
//!     token       bigint  NOT NULL,   -- the grant's fencing token
//!     backend_pid integer NOT NULL,   -- the session holding it
//!     grace_ms    bigint  NOT NULL,   -- its holder's --grace
//!     exclusive   boolean NOT NULL,   -- exclusive, or --max (see below)
//!     PRIMARY KEY (key, token)
//! );
//! ```
//!
//! A new holder, right after its grant, looks for records of the same key
//! whose session no longer holds it (no granted advisory lock on the key
//! in `pg_locks` for that backend pid; a record with this session's own
//! pid is an earlier session's whose pid was reused), and that conflict
//! with the new grant (a shared holder may overlap an old shared one
//! anyway, so it pauses only for exclusive ones; a `--max` holder is
//! recorded as exclusive, since a newcomer cannot tell which slot it had).
//! Each such record is
//! a holder that ended without releasing, at the latest now. Its command
//! has been stopped at the latest [`DETECTION_BOUND`] + its grace +
//! [`SETTLE_MARGIN`] from now, so the new holder waits that long before it
//! returns the guard (and so before the command starts), then erases the
//! records. The pause comes after the grant: `-n` and `-w` bound the wait
//! for the lock, not this pause, and a caller is told of it through
//! [`crate::WaitHooks::notice`].
//!
//! A holder that was frozen (SIGSTOP, a paused VM) for longer than that
//! can still wake up running; that is what the fencing token is for.

use std::time::Duration;

use postgres::Client;
use postgres::error::SqlState;
use postgres::types::Type;

use crate::pg::fence;
use crate::pg::heartbeat::DETECTION_BOUND;

/// Time allowed on top of the detection bound and the grace for the old
/// holder's withlock to be scheduled and its signals delivered.
pub const SETTLE_MARGIN: Duration = Duration::from_secs(2);

/// The table, created with [`crate::pg::fence`]'s table on first use.
pub const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS withlock_holds \
(key bigint NOT NULL, token bigint NOT NULL, backend_pid integer NOT NULL, \
grace_ms bigint NOT NULL, exclusive boolean NOT NULL, PRIMARY KEY (key, token))";

/// Records this session's grant (`$1` key, `$2` token, `$3` grace in ms,
/// `$4` exclusive) and returns the tokens and the longest grace of the
/// records that conflict with it and whose sessions ended without
/// releasing. The insert is not visible to the
/// same statement's query, which is why a record with this session's pid
/// can only be an earlier session's.
const RECORD: &str = "\
WITH mine AS (
  INSERT INTO withlock_holds (key, token, backend_pid, grace_ms, exclusive)
  VALUES ($1, $2, pg_backend_pid(), $3, $4))
SELECT coalesce(array_agg(h.token), '{}'), coalesce(max(h.grace_ms), 0)::bigint
  FROM withlock_holds h
 WHERE h.key = $1
   AND (h.exclusive OR $4)
   AND (h.backend_pid = pg_backend_pid()
        OR NOT EXISTS (
          SELECT 1 FROM pg_locks l
           WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
             AND l.pid = h.backend_pid
             AND (l.classid::bigint << 32 | l.objid::bigint) = $1))";

/// Erases records (`$1` key, `$2` tokens).
const FORGET: &str = "DELETE FROM withlock_holds WHERE key = $1 AND token = ANY($2)";

/// Holders that ended without releasing, found at a grant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unreleased {
    /// Their grants' tokens.
    pub tokens: Vec<i64>,
    /// The longest grace among them.
    pub grace: Duration,
}

impl Unreleased {
    /// How long the new holder waits before its command may start; None
    /// when every earlier holder released in order.
    pub fn pause(&self) -> Option<Duration> {
        (!self.tokens.is_empty()).then(|| DETECTION_BOUND + self.grace + SETTLE_MARGIN)
    }
}

/// A grant to record: the lock's key, the grant's token, its holder's
/// grace and whether it is exclusive.
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    /// The advisory key.
    pub key: i64,
    /// The fencing token of the grant.
    pub token: i64,
    /// The holder's `--grace`.
    pub grace: Duration,
    /// Exclusive (true) or shared.
    pub exclusive: bool,
}

/// Records `grant` on `client`, creating the tables if they are missing,
/// and returns the earlier holders that conflict with it and ended
/// without releasing.
pub fn record(client: &mut Client, grant: Grant) -> Result<Unreleased, postgres::Error> {
    match query(client, grant) {
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => {
            fence::create(client)?;
            query(client, grant)
        }
        other => other,
    }
}

fn query(client: &mut Client, grant: Grant) -> Result<Unreleased, postgres::Error> {
    let grace_ms = i64::try_from(grant.grace.as_millis()).unwrap_or(i64::MAX);
    let row = client.query_typed(
        RECORD,
        &[
            (&grant.key, Type::INT8),
            (&grant.token, Type::INT8),
            (&grace_ms, Type::INT8),
            (&grant.exclusive, Type::BOOL),
        ],
    )?;
    let row = row.first().expect("an aggregate returns one row");
    let max_grace: i64 = row.get(1);
    Ok(Unreleased {
        tokens: row.get(0),
        grace: Duration::from_millis(max_grace.max(0) as u64),
    })
}

/// Erases the records `tokens` of `key`: after the pause for holders that
/// ended without releasing, or this holder's own at an orderly release.
pub fn forget(client: &mut Client, key: i64, tokens: &[i64]) -> Result<(), postgres::Error> {
    client.query_typed(FORGET, &[(&key, Type::INT8), (&tokens, Type::INT8_ARRAY)])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_orderly_history_needs_no_pause() {
        assert_eq!(Unreleased::default().pause(), None);
    }

    #[test]
    fn the_pause_covers_detection_the_old_holders_grace_and_a_margin() {
        let unreleased = Unreleased {
            tokens: vec![7],
            grace: Duration::from_secs(3),
        };
        assert_eq!(
            unreleased.pause(),
            Some(DETECTION_BOUND + Duration::from_secs(3) + SETTLE_MARGIN)
        );
    }
}
