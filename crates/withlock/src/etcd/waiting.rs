//! Waiting for an etcd lock: a watch on the lock's prefix for deletions,
//! never a poll of the line.
//!
//! The watch starts just after the revision the line was last read at, so
//! no deletion is missed. A deletion of a key the request waits for (see
//! `Turn::WaitFor`) makes it read its turn again; the deletion of its own
//! key means its lease ended: it lost its place. The watch is opened again
//! from the last revision seen every [`RECHECK`] (and when a member goes),
//! so a deadline, a lease lost while waiting or a member that stopped
//! answering are noticed without a message from the cluster.
//!
//! A process that must stop while waiting (a signal) revokes the leases
//! of its waits first ([`abandon_waits`]), so it leaves no key in line.
//! A wait ended from another thread ([`crate::WaitCancel`]) revokes its
//! own lease the same way (`lease_revoker`): the watch sees its key
//! deleted and the wait ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::json;

use crate::Deadline;
use crate::etcd::client::{Client, b64, int, prefix_end, unb64};
use crate::etcd::error::EtcdError;
use crate::etcd::lease::{ANSWER_TIMEOUT, Lease};
use crate::etcd::line::{Entry, Turn};
use crate::etcd::record::Record;

/// How long one watch request lasts before it is opened again.
pub const RECHECK: Duration = Duration::from_secs(5);

/// What a wait needs of the lock it waits for. The lock implements it, so
/// that waiting, which the lock calls, does not depend on the lock.
pub(crate) trait Line {
    /// The lock's name, for messages.
    fn name(&self) -> &str;
    /// The cluster, as its URL names it, for messages.
    fn cluster(&self) -> &str;
    /// The prefix under which the line's keys are.
    fn key_prefix(&self) -> &str;
    /// The turn of the request whose key was created at `revision`, read
    /// again; with the revision it was read at and the keys ahead.
    fn turn_now(
        &self,
        client: &Client,
        revision: i64,
    ) -> Result<(Turn, i64, Vec<Entry>), EtcdError>;
    /// The turn, taken with the grant stamped into `record` when it comes.
    fn turn_and_stamp(
        &self,
        client: &Client,
        key: &str,
        lease: &Lease,
        revision: i64,
        record: &Record,
    ) -> Result<(Turn, i64, Option<Record>), EtcdError>;
}

/// A request's place in line: its key, the revision that created it, and
/// its holder record.
#[derive(Clone, Copy)]
pub(crate) struct Place<'a> {
    pub(crate) key: &'a str,
    pub(crate) revision: i64,
    pub(crate) record: &'a Record,
}

/// How a wait ended, short of an error.
pub(crate) enum Outcome {
    /// Granted at `fence` (the revision it was granted at); `stamped`
    /// is the record written again with the grant time meanwhile, if it was.
    Granted { fence: i64, stamped: Option<Record> },
    /// The deadline came; the keys still ahead.
    TimedOut(Vec<Entry>),
}

/// Waits until the request with `key`, created at `revision`, has its
/// turn; it waits for one of `waiting_for` to go.
pub(crate) fn wait(
    lock: &impl Line,
    client: &Client,
    lease: &Lease,
    place: &Place<'_>,
    mut waiting_for: Vec<Vec<u8>>,
    deadline: &Deadline,
) -> Result<Outcome, EtcdError> {
    let Place {
        key,
        revision,
        record,
    } = *place;
    let prefix = lock.key_prefix();
    let mut from = revision + 1;
    loop {
        if let Some(lost) = lease.lost() {
            return Err(lost_place(lock, lost.cause));
        }
        let left = deadline.remaining();
        if left == Some(Duration::ZERO) {
            let (_, _, ahead) = lock.turn_now(client, revision)?;
            return Ok(Outcome::TimedOut(ahead));
        }
        let period = left.map_or(RECHECK, |left| left.min(RECHECK));
        let watch = json!({"create_request": {
            "key": b64(prefix),
            "range_end": prefix_end(prefix),
            "start_revision": from.to_string(),
            "filters": ["NOPUT"],
        }});
        let mut stream = match client.stream("/v3/watch", &watch, period) {
            Ok(stream) => stream,
            Err(EtcdError::Unreachable { .. } | EtcdError::NoQuorum { .. }) => {
                // No member answers now: the lease's keepalives decide when
                // that is a loss; meanwhile try again shortly.
                std::thread::sleep(period.min(ANSWER_TIMEOUT));
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut read_again = false;
        while let Some(Ok(message)) = stream.next_message() {
            let result = &message["result"];
            if result["canceled"] == json!(true) {
                // Compacted past `from`: read the line as it is now.
                read_again = true;
                break;
            }
            for event in result["events"].as_array().into_iter().flatten() {
                let deleted = unb64(&event["kv"]["key"]);
                from = from.max(int(&event["kv"]["mod_revision"]) + 1);
                if deleted == key.as_bytes() {
                    return Err(lost_place(lock, "its key was deleted".into()));
                }
                read_again |= waiting_for.contains(&deleted);
            }
            if read_again {
                break;
            }
        }
        if read_again {
            let (turn, read_at, stamped) =
                lock.turn_and_stamp(client, key, lease, revision, record)?;
            match turn {
                Turn::Granted => {
                    return Ok(Outcome::Granted {
                        fence: read_at,
                        stamped,
                    });
                }
                Turn::WaitFor(keys) => waiting_for = keys,
            }
            from = read_at + 1;
        }
    }
}

fn lost_place(lock: &impl Line, cause: String) -> EtcdError {
    EtcdError::LostWhileWaiting {
        lock: lock.name().to_owned(),
        cluster: lock.cluster().to_owned(),
        cause,
    }
}

/// The leases of the waits in progress in this process.
static WAITS: Mutex<Vec<(Arc<Client>, i64)>> = Mutex::new(Vec::new());

/// A wait in progress, known to [`abandon_waits`] while it lives.
pub(crate) struct Registered {
    lease: i64,
}

impl Registered {
    pub(crate) fn new(client: &Arc<Client>, lease: i64) -> Registered {
        WAITS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((client.clone(), lease));
        Registered { lease }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        WAITS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(_, lease)| *lease != self.lease);
    }
}

/// Revokes the lease of every etcd wait in progress in this process, so
/// that their keys leave the line at once: for a process about to exit
/// on a signal while it waits (the command-line tool calls it before
/// exiting). Each revoke waits at most about a second per member.
pub fn abandon_waits() {
    let waits: Vec<(Arc<Client>, i64)> =
        WAITS.lock().unwrap_or_else(PoisonError::into_inner).clone();
    for (client, lease) in waits {
        revoke_waiting(&client, lease);
    }
}

/// A [`crate::WaitStopper`] for the wait holding `lease` on `client`: it
/// sets `stopped` and revokes the lease from a thread of its own, so the
/// caller never blocks; its key leaves the line and the watch ends the wait.
pub(crate) fn lease_revoker(
    client: &Arc<Client>,
    lease: i64,
    stopped: Arc<AtomicBool>,
) -> crate::WaitStopper {
    let client = client.clone();
    Arc::new(move || {
        if stopped.swap(true, Ordering::SeqCst) {
            return;
        }
        let client = client.clone();
        std::thread::spawn(move || revoke_waiting(&client, lease));
    })
}

/// Revokes a waiting request's `lease`, best effort: a lease that cannot
/// be revoked ends with its keepalives.
fn revoke_waiting(client: &Client, lease: i64) {
    let _ = client.call_within(
        "/v3/lease/revoke",
        &json!({"ID": lease.to_string()}),
        "revoking a waiting lease",
        ANSWER_TIMEOUT,
    );
}
