//! Cancelling a running holder of a PostgreSQL lock
//! (`withlock --url URL --cancel-running`), across machines; the file
//! lock's side is [`crate::cancel`].
//!
//! Everything goes through the server, nothing is signalled: the holder's
//! own withlock stops its command. A lock taken with
//! [`crate::PgLock::cancelling`]:
//!
//! 1. **Listens** on its lock session before it asks for the lock:
//!    `LISTEN withlock_cancel`, then reads the server's clock, its stamp.
//!    Listening first means that every request with a later stamp is
//!    heard.
//! 2. **Asks**, once it has to wait: `pg_notify('withlock_cancel',
//!    '<key>:<stamp>')` from the same session, then waits for the lock.
//! 3. **Hears** the notifications on its session: a holder's heartbeat
//!    thread reads them every [`crate::pg::heartbeat::LISTEN_EVERY`] (no
//!    round trip), and a request just granted reads those that came while
//!    it waited. One counts if it names this lock's key, its stamp is newer
//!    than this session's (the backend pid breaks ties), and its sender
//!    (the notifying backend's pid, which the server sets: nobody can
//!    forge it) holds or waits for the same advisory key in `pg_locks`
//!    within a second (it notifies just before it begins to wait). A
//!    holder then is cancelled ([`Cancelled`], with who asked as its
//!    session declares it, and the server's view of it); a request just
//!    granted gives the lock back and gives up
//!    ([`crate::Error::Superseded`]), as an older waiter does with
//!    `--supersede`.
//!
//! Who can cancel whom: `NOTIFY` needs nothing but a session on the
//! database, and so does taking an advisory lock, so any role that can
//! connect to the database (`CONNECT`, a login) and so could take the
//! lock can cancel a holder that opted in, from any machine; a role that
//! cannot connect cannot. A session that did not opt in never listens and
//! is never cancelled. Nothing is written to withlock's state.

use std::time::{Duration, Instant};

use postgres::types::Type;
use postgres::{Client, Notification};

use crate::cancelled::Cancelled;
use crate::pg::holders;

/// The channel cancelling requests notify on.
pub const CHANNEL: &str = "withlock_cancel";

/// How long a sender may take to appear in `pg_locks` after notifying.
const SENDER_APPEARS: Duration = Duration::from_secs(1);
/// How often `pg_locks` is looked at meanwhile.
const LOOK_AGAIN: Duration = Duration::from_millis(20);

/// When a cancelling session began listening, on the server's clock, and
/// which session it is: later is newer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ServerStamp {
    micros: i64,
    backend_pid: i32,
}

/// Step 1: listens on `client` (whose backend is `backend_pid`) and
/// returns its stamp.
pub(crate) fn listen(
    client: &mut Client,
    backend_pid: i32,
) -> Result<ServerStamp, postgres::Error> {
    client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
    let row = client.query_one(
        "SELECT (extract(epoch FROM pg_catalog.clock_timestamp()) * 1000000)::bigint",
        &[],
    )?;
    Ok(ServerStamp {
        micros: row.get(0),
        backend_pid,
    })
}

/// Step 2: asks every session listening for `key` to give way.
pub(crate) fn ask(
    client: &mut Client,
    key: i64,
    stamp: ServerStamp,
) -> Result<(), postgres::Error> {
    let payload = format!("{key}:{}", stamp.micros);
    client.query_typed(
        "SELECT pg_catalog.pg_notify($1, $2)",
        &[(&CHANNEL, Type::TEXT), (&payload, Type::TEXT)],
    )?;
    Ok(())
}

/// The notifications already received on `client`, without waiting.
pub(crate) fn pending(client: &mut Client) -> Vec<Notification> {
    use postgres::fallible_iterator::FallibleIterator;
    let mut notifications = client.notifications();
    let mut pending = notifications.iter();
    let mut found = Vec::new();
    while let Ok(Some(n)) = pending.next() {
        found.push(n);
    }
    found
}

/// Step 3: the first newer cancelling request for `key` among
/// `notifications`, checked in `pg_locks` on `client`; `lock` is the
/// lock's name for [`Cancelled`].
pub(crate) fn first_newer(
    client: &mut Client,
    notifications: &[Notification],
    key: i64,
    own: ServerStamp,
    lock: &str,
) -> Option<Cancelled> {
    notifications
        .iter()
        .filter(|n| n.channel() == CHANNEL && is_newer(n.payload(), n.process_id(), key, own))
        .find_map(|n| checked(client, key, n.process_id(), lock))
}

/// A watched holder's wish to hear of cancels: what the heartbeat thread
/// checks the notifications it reads against, and whom it tells, once.
pub(crate) struct Subscription {
    pub(crate) key: i64,
    pub(crate) own: ServerStamp,
    pub(crate) lock: String,
    pub(crate) on_cancel: Option<Box<dyn FnOnce(Cancelled) + Send>>,
}

impl Subscription {
    /// Tells the subscriber if one of `notifications` cancels the holder.
    pub(crate) fn hear(&mut self, client: &mut Client, notifications: &[Notification]) {
        if self.on_cancel.is_none() {
            return;
        }
        if let Some(cancelled) = first_newer(client, notifications, self.key, self.own, &self.lock)
        {
            if let Some(on_cancel) = self.on_cancel.take() {
                on_cancel(cancelled);
            }
        }
    }
}

/// Whether `payload` from backend `sender` is a cancelling request for
/// `key` newer than `own`.
fn is_newer(payload: &str, sender: i32, key: i64, own: ServerStamp) -> bool {
    let Some((named, micros)) = payload.split_once(':') else {
        return false;
    };
    let (Ok(named), Ok(micros)) = (named.parse::<i64>(), micros.parse::<i64>()) else {
        return false;
    };
    let theirs = ServerStamp {
        micros,
        backend_pid: sender,
    };
    named == key && sender != own.backend_pid && own < theirs
}

/// Who `sender` is, if it holds or waits for `key` (within
/// [`SENDER_APPEARS`]).
fn checked(client: &mut Client, key: i64, sender: i32, lock: &str) -> Option<Cancelled> {
    let give_up = Instant::now() + SENDER_APPEARS;
    loop {
        let sessions = holders::query(client, key).ok()?;
        if let Some(session) = sessions.iter().find(|s| s.backend_pid == sender) {
            let by = session.to_holder();
            let host = by.host.clone().unwrap_or_else(|| "an unknown host".into());
            return Some(Cancelled {
                lock: lock.to_owned(),
                by,
                host,
            });
        }
        if Instant::now() >= give_up {
            return None;
        }
        std::thread::sleep(LOOK_AGAIN);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_newer_request_for_the_same_key_counts() {
        let own = ServerStamp {
            micros: 1000,
            backend_pid: 7,
        };
        assert!(is_newer("-5:1001", 8, -5, own));
        assert!(
            is_newer("-5:1000", 8, -5, own),
            "a later pid breaks the tie"
        );
        assert!(!is_newer("-5:1000", 6, -5, own));
        assert!(!is_newer("-5:999", 8, -5, own), "older");
        assert!(!is_newer("-6:1001", 8, -5, own), "another lock");
        assert!(!is_newer("-5:1001", 7, -5, own), "this session itself");
        for bad in ["", "-5", "x:1", "-5:y", "-5:1:2"] {
            assert!(!is_newer(bad, 8, -5, own), "{bad}");
        }
    }
}
