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
//! So every grant is recorded (by the statement that draws its fencing
//! token, [`crate::pg::fence`]), and every orderly release erases its
//! record, in the table `withlock.holds` of withlock's state
//! ([`crate::pg::state`], shared by every role).
//!
//! A new holder, right after its grant, looks for records of the same key
//! whose session no longer holds it (no granted advisory lock on the key
//! in `pg_locks` for that backend pid; a record with this session's own
//! pid is an earlier session's whose pid was reused), and that conflict
//! with the new grant (a shared holder may overlap an old shared one
//! anyway, so it pauses only for exclusive ones; a `--max` holder is
//! recorded as exclusive, since a newcomer cannot tell which slot it had).
//! Each such record is a holder that ended without releasing, at the
//! latest when a grant first saw it so, a time the record keeps
//! (`seen_ended_at`). Its command has surely been stopped
//! [`DETECTION_BOUND`] + its grace + [`SETTLE_MARGIN`] after that, so the
//! new holder waits until then before it returns the guard (and so before
//! the command starts), then erases the records.
//!
//! - **Bounded.** A grace is recorded, and counted, as at most
//!   [`MAX_GRACE`], whatever the holder asked or a record says: the pause
//!   is never longer than [`MAX_PAUSE`].
//! - **`-n` and `-w`.** The pause counts as waiting: a request that may
//!   not wait (`-n`, `-w 0`) gives a grant that would pause back at once as
//!   busy, saying when the lock will be usable; one that would pause past
//!   its deadline is given back as timed out (see [`crate::Deadline`]). The time keeps running on the
//!   server, so a later request pauses only for what is left.
//! - **Who may erase a record.** Only a session holding the key, and only
//!   its own record, or another's once its pause is over
//!   (`withlock.forget_grants`): a role cannot skip another's pause.
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

/// The longest grace a grant record keeps, and so the longest a newcomer
/// pauses for one holder's grace (the command line refuses more).
pub const MAX_GRACE: Duration = Duration::from_secs(3600);

/// The longest pause after a grant: [`DETECTION_BOUND`] + [`MAX_GRACE`] +
/// [`SETTLE_MARGIN`].
pub const MAX_PAUSE: Duration = DETECTION_BOUND
    .saturating_add(MAX_GRACE)
    .saturating_add(SETTLE_MARGIN);

/// Erases records (`$1` key, `$2` tokens), as far as this session may.
const FORGET: &str = "SELECT withlock.forget_grants($1, $2)";

/// Holders that ended without releasing, found at a grant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unreleased {
    /// Their grants' tokens.
    pub tokens: Vec<i64>,
    /// How long from the grant until the last of their commands has surely
    /// been stopped; at most [`MAX_PAUSE`].
    pub left: Duration,
}

impl Unreleased {
    /// From the server's answer: the tokens, and the pause in ms.
    pub(crate) fn new(tokens: Vec<i64>, pause_ms: i64) -> Unreleased {
        let left = Duration::from_millis(pause_ms.max(0) as u64).min(MAX_PAUSE);
        Unreleased { tokens, left }
    }

    /// How long the new holder waits before its command may start; None
    /// when every earlier holder released in order, or was stopped long
    /// enough ago.
    pub fn pause(&self) -> Option<Duration> {
        (!self.left.is_zero()).then_some(self.left)
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
    /// The grace in whole milliseconds, as the table keeps it (at most
    /// [`MAX_GRACE`]).
    pub(crate) fn grace_ms(&self) -> i64 {
        self.grace.min(MAX_GRACE).as_millis() as i64
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
        assert_eq!(Unreleased::new(vec![7], 0).pause(), None);
    }

    #[test]
    fn the_pause_is_what_the_server_says_up_to_the_maximum() {
        assert_eq!(
            Unreleased::new(vec![7], 12_000).pause(),
            Some(Duration::from_secs(12))
        );
        assert_eq!(Unreleased::new(vec![7], i64::MAX).pause(), Some(MAX_PAUSE));
    }

    #[test]
    fn a_recorded_grace_is_at_most_the_maximum() {
        let holding = |grace| Holding {
            grace,
            exclusive: true,
        };
        assert_eq!(holding(Duration::from_secs(3)).grace_ms(), 3000);
        assert_eq!(
            holding(Duration::MAX).grace_ms(),
            MAX_GRACE.as_millis() as i64
        );
    }
}
