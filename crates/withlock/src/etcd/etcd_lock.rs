//! `EtcdLock`: a named lock on an etcd cluster, taken in the line of
//! [`crate::etcd::line`] and waited for with a watch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::etcd::cancel;
use crate::etcd::client::{Client, b64, int, prefix_end};
use crate::etcd::error::EtcdError;
use crate::etcd::etcd_guard::EtcdGuard;
use crate::etcd::lease::{self, Lease};
use crate::etcd::line::{self, Entry, Turn};
use crate::etcd::record::Record;
use crate::etcd::target::Target;
use crate::etcd::waiting;
use crate::{Deadline, Error, Holders, Lock, LockName, Mode, Result, WaitHooks};

/// How long a grace is assumed when none is given: the CLI's default.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// A lock name on an etcd cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdLock {
    target: Target,
    name: String,
    /// etcd's lock prefix: `[PREFIX/]NAME/`.
    prefix: String,
    mode: Mode,
    max: Option<u32>,
    grace: Duration,
    /// The command announced in the holder record.
    command: Vec<String>,
    /// Whether it cancels holders that opted in, and may be cancelled
    /// ([`EtcdLock::cancelling`]).
    cancelling: bool,
}

impl EtcdLock {
    /// The lock `name` (withlock's naming rules) on the cluster `url`
    /// (see [`crate::etcd`] for the URL), exclusive, announced with this
    /// process's command line.
    pub fn new(url: &str, name: &str) -> Result<EtcdLock> {
        let name = LockName::new(name)?;
        let target = Target::parse(url)?;
        let command = std::fs::read("/proc/self/cmdline")
            .map(|raw| {
                raw.split(|&b| b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect()
            })
            .unwrap_or_default();
        Ok(EtcdLock {
            prefix: target.lock_prefix(name.as_str()),
            target,
            name: name.as_str().to_owned(),
            mode: Mode::Exclusive,
            max: None,
            grace: DEFAULT_GRACE,
            command,
            cancelling: false,
        })
    }

    /// The same lock announced as running `command` (the command a tool
    /// runs under it, rather than the tool's own command line).
    pub fn running(mut self, command: &[impl AsRef<str>]) -> EtcdLock {
        self.command = command.iter().map(|a| a.as_ref().to_owned()).collect();
        self
    }

    /// The same lock taken in `mode` (and no longer as a semaphore).
    pub fn with_mode(mut self, mode: Mode) -> EtcdLock {
        self.mode = mode;
        self.max = None;
        self
    }

    /// The same lock as a counting semaphore of up to `max` holders,
    /// served in arrival order; use the same `max` for every holder.
    pub fn with_max(mut self, max: u32) -> EtcdLock {
        self.mode = Mode::Shared;
        self.max = Some(max.max(1));
        self
    }

    /// The same lock taken as `--cancel-running` does (see
    /// [`crate::etcd::cancel`]): a request that has to wait asks the
    /// holders that opted in to stop; once granted it gives up
    /// ([`Error::Superseded`]) if a newer such request is asking; and its
    /// guard hears newer ones ([`EtcdGuard::on_cancel`]).
    pub fn cancelling(mut self) -> EtcdLock {
        self.cancelling = true;
        self
    }

    /// The same lock held by a caller that stops its work at most `grace`
    /// after it is told the lock is lost: the lease's TTL covers it
    /// ([`lease::ttl`]).
    pub fn with_grace(mut self, grace: Duration) -> EtcdLock {
        self.grace = grace;
        self
    }

    /// The semaphore's limit, if it is one ([`EtcdLock::with_max`]).
    pub fn max(&self) -> Option<u32> {
        self.max
    }

    /// The mode it will be taken in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The lock name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The cluster, as messages name it (never the password).
    pub fn cluster(&self) -> &str {
        self.target.cluster()
    }

    /// etcd's lock prefix (`[PREFIX/]NAME/`): `etcdctl lock` with this
    /// name takes the same lock.
    pub fn key_prefix(&self) -> &str {
        &self.prefix
    }

    /// The lease TTL a holder asks for.
    pub fn lease_ttl(&self) -> Duration {
        lease::ttl(self.grace, self.target.endpoints.len())
    }

    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    /// The whole line (holders and waiters, create order), from `client`.
    pub(crate) fn line(
        &self,
        client: &Client,
    ) -> std::result::Result<(Vec<Entry>, i64), EtcdError> {
        let range = client.call(
            "/v3/kv/range",
            &self.range_body(None),
            "reading the lock's keys",
        )?;
        Ok((line::entries(&range), int(&range["header"]["revision"])))
    }

    /// A range over the lock's keys in create order, up to `before`.
    fn range_body(&self, before: Option<i64>) -> Value {
        let mut body = json!({
            "key": b64(&self.prefix),
            "range_end": prefix_end(&self.prefix),
            "sort_order": "ASCEND",
            "sort_target": "CREATE",
        });
        if let Some(before) = before {
            body["max_create_revision"] = json!((before - 1).to_string());
        }
        body
    }

    fn record(&self) -> Record {
        Record::this_process(self.command.clone(), self.mode, self.max)
    }

    /// Puts this request's key in line: one transaction that also reads
    /// the line. Returns the key, its create revision, who is ahead and
    /// the revision the line was read at. A transaction retried on
    /// another member after the first one's answer was lost finds the key
    /// already there: the else branch reads it, as etcd's own Mutex does.
    fn join_line(
        &self,
        client: &Client,
        lease: &Lease,
        record: &Record,
    ) -> std::result::Result<(String, i64, Vec<Entry>, i64), EtcdError> {
        let key = format!("{}{:x}", self.prefix, lease.id());
        let txn = json!({
            "compare": [{"key": b64(&key), "target": "CREATE", "result": "EQUAL",
                         "create_revision": "0"}],
            "success": [
                {"request_put": {"key": b64(&key), "value": b64(record.to_json()),
                                 "lease": lease.id().to_string()}},
                {"request_range": self.range_body(None)},
            ],
            "failure": [
                {"request_range": {"key": b64(&key)}},
                {"request_range": self.range_body(None)},
            ],
        });
        let reply = client.call("/v3/kv/txn", &txn, "queueing for the lock")?;
        let read_at = int(&reply["header"]["revision"]);
        let revision = if reply["succeeded"] == json!(true) {
            read_at
        } else {
            line::entries(&reply["responses"][0]["response_range"])
                .first()
                .map(|mine| mine.create_revision)
                .ok_or_else(|| EtcdError::Failed {
                    cluster: client.cluster().to_owned(),
                    what: "queueing for the lock",
                    cause: format!("the key {key} was neither put nor found"),
                })?
        };
        let ahead = line::entries(&reply["responses"][1]["response_range"])
            .into_iter()
            .filter(|e| e.create_revision < revision)
            .collect();
        Ok((key, revision, ahead, read_at))
    }

    fn conflict(&self, ahead: &[Entry], deadline: &Deadline, hooks: &dyn WaitHooks) -> Error {
        let holders = if hooks.name_holders() {
            line::holders(ahead)
        } else {
            Holders::default()
        };
        deadline.refuse(self.describe(), holders)
    }

    /// Claims the lowest place of `0..max` no other holder has, written
    /// into the record: read the line, try ([`EtcdLock::try_claim`]),
    /// and read again while another client wrote in between.
    fn claim_slot(
        &self,
        client: &Client,
        key: &str,
        lease: &Lease,
        record: &mut Record,
        max: u32,
    ) -> std::result::Result<(), EtcdError> {
        loop {
            let read = self.line(client)?;
            if self.try_claim(client, key, lease, record, max, &read)? {
                return Ok(());
            }
        }
    }

    /// Writes into the record the lowest place of `0..max` that no other
    /// holder in `read` (the line, the revision it was read at) has, in a
    /// transaction that holds only if no key under the prefix was written
    /// since: a holder claiming at the same time writes its key, and so
    /// does one granted since that claimed first (a compare over the keys
    /// read alone would miss it). A key deleted since only frees a place.
    /// False, writing nothing, if the line changed.
    fn try_claim(
        &self,
        client: &Client,
        key: &str,
        lease: &Lease,
        record: &mut Record,
        max: u32,
        read: &(Vec<Entry>, i64),
    ) -> std::result::Result<bool, EtcdError> {
        let (entries, read_at) = read;
        let others: Vec<&Entry> = line::holding(entries)
            .into_iter()
            .filter(|e| e.key != key.as_bytes())
            .collect();
        record.slot = Some(line::free_slot(&others, max));
        let txn = json!({
            "compare": [{"key": b64(&self.prefix), "range_end": prefix_end(&self.prefix),
                         "target": "MOD", "result": "LESS",
                         "mod_revision": (read_at + 1).to_string()}],
            "success": [{"request_put": {"key": b64(key), "value": b64(record.to_json()),
                                         "lease": lease.id().to_string()}}],
            "failure": [],
        });
        let reply = client.call("/v3/kv/txn", &txn, "claiming a place")?;
        Ok(reply["succeeded"] == json!(true))
    }
}

impl Lock for EtcdLock {
    type Guard = EtcdGuard;

    fn acquire_until(&self, deadline: Deadline, hooks: &mut dyn WaitHooks) -> Result<EtcdGuard> {
        let client = Client::connect(&self.target)?;
        let lease = Lease::grant(&client, self.lease_ttl(), &self.name)?;
        // From here until it returns, a signal gives up this request.
        let _registered = waiting::Registered::new(&client, lease.id());
        let record = self.record();
        let (key, revision, ahead, read_at) = self.join_line(&client, &lease, &record)?;
        let (fence, record) = match line::turn(&ahead, self.mode, self.max) {
            Turn::Granted => (read_at, record),
            Turn::WaitFor(_) if !deadline.may_wait() => {
                let refused = self.conflict(&ahead, &deadline, hooks);
                lease.revoke()?;
                return Err(refused);
            }
            Turn::WaitFor(keys) => {
                hooks.waiting();
                let place = waiting::Place {
                    key: &key,
                    revision,
                    record: &record,
                };
                if self.cancelling {
                    cancel::ask(&client, &self.prefix, &lease)?;
                }
                // Another thread may end the wait (an asyncio task's
                // cancel): it revokes the lease, which ends the watch.
                let stopped = Arc::new(AtomicBool::new(false));
                hooks.stop_with(Some(waiting::lease_revoker(
                    &client,
                    lease.id(),
                    stopped.clone(),
                )));
                let waited = waiting::wait(self, &client, &lease, &place, keys, &deadline);
                hooks.stop_with(None);
                if stopped.load(Ordering::SeqCst) && hooks.interrupted() {
                    return Err(Error::Interrupted {
                        lock: self.describe(),
                    });
                }
                match waited? {
                    waiting::Outcome::Granted {
                        fence,
                        stamped: Some(record),
                    } => (fence, record),
                    waiting::Outcome::Granted {
                        fence,
                        stamped: None,
                    } => {
                        let record = record.granted_now();
                        if self.max.is_none() {
                            // Only the "since" of listings is at stake: a
                            // failure changes nothing else, and the lease
                            // watch notices a cluster gone.
                            let _ = record.put(&client, &key, &lease, "stamping the grant");
                        }
                        (fence, record)
                    }
                    waiting::Outcome::TimedOut(ahead) => {
                        let refused = self.conflict(&ahead, &deadline, hooks);
                        lease.revoke()?;
                        return Err(refused);
                    }
                }
            }
        };
        let mut record = record;
        if let Some(max) = self.max {
            self.claim_slot(&client, &key, &lease, &mut record, max)?;
        }
        if !self.cancelling {
            return Ok(EtcdGuard::new(lease, client, key, record, fence));
        }
        if let Some(newer) = cancel::newer_asking(&client, &self.prefix, &self.name, revision)? {
            lease.revoke()?;
            return Err(Error::Superseded {
                lock: self.describe(),
                by: Box::new(newer.by),
            });
        }
        Ok(
            EtcdGuard::new(lease, client, key, record, fence).with_cancel(
                &self.prefix,
                &self.name,
                revision,
            ),
        )
    }

    fn holders(&self) -> Result<Holders> {
        let client = Client::connect(&self.target)?;
        let (line, _) = self.line(&client)?;
        Ok(line::holders(&line))
    }

    fn describe(&self) -> String {
        format!("{} (etcd {})", self.name, self.target.cluster())
    }
}

impl waiting::Line for EtcdLock {
    fn name(&self) -> &str {
        EtcdLock::name(self)
    }

    fn cluster(&self) -> &str {
        EtcdLock::cluster(self)
    }

    fn key_prefix(&self) -> &str {
        EtcdLock::key_prefix(self)
    }

    /// The turn of the request with `key`, created at `revision`, read
    /// again; once granted, the record written again with the grant time
    /// (true when done). An exclusive request does both in one
    /// transaction: "every key under the prefix was created at or after
    /// mine" (a compare over the prefix) then stamps the record, else reads
    /// who is ahead, so a handoff costs one round trip.
    fn turn_and_stamp(
        &self,
        client: &Client,
        key: &str,
        lease: &Lease,
        revision: i64,
        record: &Record,
    ) -> std::result::Result<(Turn, i64, Option<Record>), EtcdError> {
        if self.mode != Mode::Exclusive || self.max.is_some() {
            let (turn, read_at, _) = self.turn_now(client, revision)?;
            return Ok((turn, read_at, None));
        }
        let stamped = record.granted_now();
        let txn = json!({
            "compare": [{"key": b64(&self.prefix), "range_end": prefix_end(&self.prefix),
                         "target": "CREATE", "result": "GREATER",
                         "create_revision": (revision - 1).to_string()}],
            "success": [{"request_put": {"key": b64(key), "value": b64(stamped.to_json()),
                                         "lease": lease.id().to_string()}}],
            "failure": [{"request_range": self.range_body(Some(revision))}],
        });
        let reply = client.call("/v3/kv/txn", &txn, "reading the lock's line")?;
        let read_at = int(&reply["header"]["revision"]);
        if reply["succeeded"] == json!(true) {
            return Ok((Turn::Granted, read_at, Some(stamped)));
        }
        let ahead = line::entries(&reply["responses"][0]["response_range"]);
        Ok((line::turn(&ahead, self.mode, self.max), read_at, None))
    }

    /// The turn of a request whose key was created at `revision`, read
    /// again; with the revision it was read at.
    fn turn_now(
        &self,
        client: &Client,
        revision: i64,
    ) -> std::result::Result<(Turn, i64, Vec<Entry>), EtcdError> {
        let range = client.call(
            "/v3/kv/range",
            &self.range_body(Some(revision)),
            "reading the lock's line",
        )?;
        let ahead = line::entries(&range);
        Ok((
            line::turn(&ahead, self.mode, self.max),
            int(&range["header"]["revision"]),
            ahead,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use withlock_etcd_testing::Etcd;

    /// A request in line for `lock` with its own client and lease.
    fn join(lock: &EtcdLock) -> (Arc<Client>, Lease, String, Record) {
        let client = Client::connect(lock.target()).unwrap();
        let lease = Lease::grant(&client, lock.lease_ttl(), lock.name()).unwrap();
        let record = lock.record();
        let (key, _, ahead, _) = lock.join_line(&client, &lease, &record).unwrap();
        assert_eq!(line::turn(&ahead, lock.mode, lock.max), Turn::Granted);
        (client, lease, key, record)
    }

    #[test]
    fn a_holder_granted_after_a_claims_read_never_gets_its_place() {
        let etcd = Etcd::start();
        let lock = EtcdLock::new(&etcd.url(), "pool").unwrap().with_max(3);
        let (a_client, a_lease, a_key, mut a_record) = join(&lock);
        // A reads the line (A alone), then B is granted and claims a
        // place before A's transaction.
        let read = lock.line(&a_client).unwrap();
        let (b_client, b_lease, b_key, mut b_record) = join(&lock);
        lock.claim_slot(&b_client, &b_key, &b_lease, &mut b_record, 3)
            .unwrap();
        assert_eq!(b_record.slot, Some(0));
        let claimed = lock
            .try_claim(&a_client, &a_key, &a_lease, &mut a_record, 3, &read)
            .unwrap();
        assert!(
            !claimed,
            "A claimed place 0 from a line read before B's claim"
        );
        lock.claim_slot(&a_client, &a_key, &a_lease, &mut a_record, 3)
            .unwrap();
        assert_eq!(a_record.slot, Some(1));
        let (entries, _) = lock.line(&a_client).unwrap();
        let mut slots: Vec<Option<u32>> = entries
            .iter()
            .map(|e| e.record.as_ref().unwrap().slot)
            .collect();
        slots.sort();
        assert_eq!(slots, [Some(0), Some(1)]);
        a_lease.revoke().unwrap();
        b_lease.revoke().unwrap();
    }
}
