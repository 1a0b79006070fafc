//! A held etcd lock: its key in line, kept by the session's lease.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::etcd::cancel;
use crate::etcd::client::Client;
use crate::etcd::error::EtcdError;
use crate::etcd::lease::{Lease, LeaseLost};
use crate::etcd::record::Record;
use crate::etcd::run_record;

/// A held [`crate::EtcdLock`]. The lock lives as long as its lease:
/// dropping the guard or [`EtcdGuard::release`] revokes it, which deletes
/// the key and lets the next in line in; if this process dies, the
/// cluster deletes the key when the lease's TTL runs out.
pub struct EtcdGuard {
    /// None once released.
    lease: Option<Lease>,
    client: Arc<Client>,
    key: String,
    /// What the key's value says.
    record: Record,
    fence: i64,
    acquired: Instant,
    /// For a lock taken with [`crate::EtcdLock::cancelling`]: its line's
    /// prefix, its name and the revision of its key in line.
    cancellable: Option<(String, String, i64)>,
    /// The watch for cancelling requests ([`EtcdGuard::on_cancel`]).
    cancel_watch: Option<cancel::Watch>,
}

impl std::fmt::Debug for EtcdGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdGuard")
            .field("key", &self.key)
            .field("fence", &self.fence)
            .finish_non_exhaustive()
    }
}

impl EtcdGuard {
    pub(crate) fn new(
        lease: Lease,
        client: Arc<Client>,
        key: String,
        record: Record,
        fence: i64,
    ) -> EtcdGuard {
        EtcdGuard {
            lease: Some(lease),
            client,
            key,
            record,
            fence,
            acquired: Instant::now(),
            cancellable: None,
            cancel_watch: None,
        }
    }

    /// The same guard of a lock that may be cancelled (see
    /// [`crate::etcd::cancel`]).
    pub(crate) fn with_cancel(mut self, prefix: &str, name: &str, revision: i64) -> EtcdGuard {
        self.cancellable = Some((prefix.to_owned(), name.to_owned(), revision));
        self
    }

    /// Calls `on_cancel`, once, from a thread of its own, when a newer
    /// cancelling request for the lock asks (see [`crate::etcd::cancel`]);
    /// only for a lock taken with [`crate::EtcdLock::cancelling`], else it
    /// is dropped. Fails only if the thread cannot start.
    pub fn on_cancel(
        &mut self,
        on_cancel: Box<dyn FnOnce(crate::Cancelled) + Send>,
    ) -> std::io::Result<()> {
        let Some((prefix, name, revision)) = self.cancellable.clone() else {
            return Ok(());
        };
        let watch = cancel::Watch::start(self.client.clone(), prefix, name, revision, on_cancel)?;
        self.cancel_watch = Some(watch);
        Ok(())
    }

    /// The grant's fencing token: the cluster's revision when it was
    /// granted, above that of every earlier grant of the lock (revisions
    /// only grow, across the cluster and its leader changes).
    pub fn fence(&self) -> i64 {
        self.fence
    }

    /// Which of the N places of a `--max N` lock this holder claimed, 0
    /// to N-1, unique among the current holders.
    pub fn slot(&self) -> Option<u32> {
        self.record.slot
    }

    /// When a run under this lock last succeeded, if its window has not
    /// passed (see `run_record.rs`, for `--once-per`).
    pub fn last_success(&self) -> Result<Option<crate::LastSuccess>, EtcdError> {
        run_record::last_success(&self.client, &self.key)
    }

    /// Records that the run under this hold succeeded, for a window of
    /// `window` from when it took the lock.
    pub fn record_success(&self, window: Duration) -> Result<(), EtcdError> {
        run_record::record_success(&self.client, &self.key, window, self.held_for())
    }

    /// The lock's key (`[PREFIX/]NAME/<lease id in hex>`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// How long the lock has been held.
    pub fn held_for(&self) -> Duration {
        self.acquired.elapsed()
    }

    /// Writes into the holder record when this holder's time limit runs
    /// out, for listings.
    pub fn announce_deadline(&mut self, deadline: SystemTime) -> Result<(), EtcdError> {
        let Some(lease) = &self.lease else {
            return Ok(());
        };
        self.record.deadline = Some(deadline);
        self.record
            .put(&self.client, &self.key, lease, "announcing the deadline")
    }

    /// Calls `on_lost` once, from the lease's keepalive thread, if the
    /// lock is lost while held (see [`crate::etcd::lease`]); at once if it
    /// is already. Release and drop end the watch without calling it.
    pub fn watch(&mut self, on_lost: Box<dyn FnOnce(LeaseLost) + Send>) {
        if let Some(lease) = &self.lease {
            lease.on_lost(on_lost);
        }
    }

    /// The loss noticed, if any.
    pub fn lost(&self) -> Option<LeaseLost> {
        self.lease.as_ref().and_then(Lease::lost)
    }

    /// Releases the lock: revokes the lease, which deletes the key. An
    /// error says the lock was already gone or the cluster did not answer
    /// (the lease then runs out on its own).
    pub fn release(mut self) -> Result<(), EtcdError> {
        let lease = self
            .lease
            .take()
            .expect("a guard holds its lease until released");
        match lease.revoke()? {
            true => Ok(()),
            false => Err(EtcdError::NotHeld {
                cluster: self.client.cluster().to_owned(),
            }),
        }
    }
}
