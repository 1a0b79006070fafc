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
//! So every grant is recorded (in the statement that draws its fencing
//! token, [`crate::pg::fence`]), and every orderly release erases its
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
use postgres::types::Type;

use crate::pg::heartbeat::DETECTION_BOUND;

/// Time allowed on top of the detection bound and the grace for the old
/// holder's withlock to be scheduled and its signals delivered.
pub const SETTLE_MARGIN: Duration = Duration::from_secs(2);

/// The table, created with [`crate::pg::fence`]'s table on first use.
pub const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS withlock_holds \
(key bigint NOT NULL, token bigint NOT NULL, backend_pid integer NOT NULL, \
grace_ms bigint NOT NULL, exclusive boolean NOT NULL, PRIMARY KEY (key, token))";

/// The grant's own record: the session's pid and its holder's grace and
/// mode, inserted in the grant's statement ([`crate::pg::fence`]), where
/// `$1` is the key, `$5` the grace in ms and `$6` whether it is exclusive.
pub(crate) const RECORD_MINE: &str = "\
mine AS (
  INSERT INTO withlock_holds (key, token, backend_pid, grace_ms, exclusive)
  SELECT $1, token, pg_backend_pid(), $5, $6 FROM granted)";

/// The earlier records that conflict with the grant and whose sessions
/// ended without releasing: their tokens, and the longest grace among
/// them. In the same statement as [`RECORD_MINE`], whose insert it does
/// not see; so a record with this session's pid can only be an earlier
/// session's, whose pid was reused.
pub(crate) const UNRELEASED: &str = "\
(SELECT coalesce(array_agg(h.token), '{}') FROM withlock_holds h WHERE UNRELEASED_WHERE),
(SELECT coalesce(max(h.grace_ms), 0)::bigint FROM withlock_holds h WHERE UNRELEASED_WHERE)";

/// Which records [`UNRELEASED`] counts.
pub(crate) const UNRELEASED_WHERE: &str = "\
h.key = $1 AND (h.exclusive OR $6)
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

/// What a grant's record says of its holder.
#[derive(Debug, Clone, Copy)]
pub struct Holding {
    /// The holder's `--grace`.
    pub grace: Duration,
    /// Whether newcomers of any mode must pause for it: exclusive, or
    /// `--max` (a newcomer cannot tell which slot an old one had).
    pub exclusive: bool,
}

impl Holding {
    /// The grace in whole milliseconds, as the table keeps it.
    pub(crate) fn grace_ms(&self) -> i64 {
        i64::try_from(self.grace.as_millis()).unwrap_or(i64::MAX)
    }
}

impl Unreleased {
    /// From [`UNRELEASED`]'s two columns.
    pub(crate) fn new(tokens: Vec<i64>, max_grace_ms: i64) -> Unreleased {
        Unreleased {
            tokens,
            grace: Duration::from_millis(max_grace_ms.max(0) as u64),
        }
    }
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
