//! The session's lease: granted before the lock's key is put, kept alive
//! by a thread of its own from then on (while waiting too), revoked on
//! release, which deletes the key.
//!
//! **Loss.** The lease is lost when a keepalive answers that it has no
//! time left (revoked, or expired on the cluster), or when no keepalive
//! has succeeded for [`LOSS_AFTER`]: every member unreachable, or no
//! quorum (a member without a leader cannot renew a lease). One member
//! down is not a loss: each keepalive tries the members in turn.
//!
//! **The bound.** A keepalive is sent every [`KEEPALIVE_EVERY`], and waits
//! at most [`ANSWER_TIMEOUT`] for each member, plus half a second to ask a
//! member that did not answer whether it has a leader (so that a loss can
//! say "no quorum"), so a loss is noticed at most [`detection_bound`] after
//! the last keepalive that succeeded was sent: `LOSS_AFTER +
//! KEEPALIVE_EVERY + members × (ANSWER_TIMEOUT + STATUS_TIMEOUT)` (7.5 s
//! for one member, 10.5 s for three). The cluster renews the lease for its
//! TTL from when it received that keepalive, and the TTL asked for is
//! [`ttl`]`(grace, members)` = bound + grace + [`MARGIN`], so the holder
//! has stopped its command (SIGTERM, then SIGKILL after `grace`) before
//! the cluster can give the lock to anyone else.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::etcd::client::{Client, STATUS_TIMEOUT, int};
use crate::etcd::error::EtcdError;

/// How often the lease is renewed.
pub const KEEPALIVE_EVERY: Duration = Duration::from_secs(1);
/// How long a keepalive waits for one member's answer.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(1);
/// How long without a successful keepalive is a loss.
pub const LOSS_AFTER: Duration = Duration::from_secs(5);
/// What the TTL adds beyond the detection bound and the grace.
pub const MARGIN: Duration = Duration::from_secs(5);

/// How long after the last successful keepalive a loss is noticed, for a
/// cluster of `members` endpoints (module docs).
pub fn detection_bound(members: usize) -> Duration {
    LOSS_AFTER + KEEPALIVE_EVERY + (ANSWER_TIMEOUT + STATUS_TIMEOUT) * members.max(1) as u32
}

/// The lease TTL for a holder that stops within `grace` (module docs).
pub fn ttl(grace: Duration, members: usize) -> Duration {
    detection_bound(members)
        .saturating_add(grace)
        .saturating_add(MARGIN)
}

/// A lost lease, as the holder tells it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("lost the lock {lock} on {cluster}: {cause}")]
pub struct LeaseLost {
    /// The lock name.
    pub lock: String,
    /// The cluster, as messages name it.
    pub cluster: String,
    /// What happened.
    pub cause: String,
}

type OnLost = Box<dyn FnOnce(LeaseLost) + Send>;

#[derive(Default)]
struct State {
    stop: bool,
    lost: Option<LeaseLost>,
    on_lost: Option<OnLost>,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A granted lease, kept alive until dropped or revoked.
pub(crate) struct Lease {
    id: i64,
    client: Arc<Client>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Lease {
    /// Grants a lease of `ttl` and starts keeping it alive; `lock` names
    /// it in a loss.
    pub(crate) fn grant(
        client: &Arc<Client>,
        ttl: Duration,
        lock: &str,
    ) -> Result<Lease, EtcdError> {
        let asked = Instant::now();
        let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let reply = client.call(
            "/v3/lease/grant",
            &json!({"TTL": seconds.to_string()}),
            "granting a lease",
        )?;
        let id = int(&reply["ID"]);
        if id == 0 {
            return Err(EtcdError::Failed {
                cluster: client.cluster().to_owned(),
                what: "granting a lease",
                cause: crate::escape::text(&reply.to_string()),
            });
        }
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let keeper = Keeper {
            id,
            client: client.clone(),
            shared: shared.clone(),
            lock: lock.to_owned(),
            last_ok: asked,
        };
        let thread = std::thread::Builder::new()
            .name("withlock-etcd-lease".into())
            .spawn(move || keeper.run())
            .map_err(|e| EtcdError::Failed {
                cluster: client.cluster().to_owned(),
                what: "starting the lease's keepalive thread",
                cause: e.to_string(),
            })?;
        Ok(Lease {
            id,
            client: client.clone(),
            shared,
            thread: Some(thread),
        })
    }

    /// The lease id (the lock key's last part, in hex).
    pub(crate) fn id(&self) -> i64 {
        self.id
    }

    /// The loss noticed so far, if any.
    pub(crate) fn lost(&self) -> Option<LeaseLost> {
        self.shared.state().lost.clone()
    }

    /// Calls `on_lost` once, from the keepalive thread, when the lease is
    /// lost (at once if it already is).
    pub(crate) fn on_lost(&self, on_lost: OnLost) {
        let mut state = self.shared.state();
        match state.lost.clone() {
            Some(lost) => {
                drop(state);
                on_lost(lost);
            }
            None => state.on_lost = Some(on_lost),
        }
    }

    /// Stops the keepalives and revokes the lease, which deletes its keys;
    /// Ok(false) when the cluster no longer had it.
    pub(crate) fn revoke(mut self) -> Result<bool, EtcdError> {
        self.stop();
        let reply = self.client.call(
            "/v3/lease/revoke",
            &json!({"ID": self.id.to_string()}),
            "revoking the lease",
        );
        match reply {
            Ok(_) => Ok(true),
            Err(EtcdError::Failed { cause, .. }) if cause.contains("lease not found") => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn stop(&mut self) {
        self.shared.state().stop = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop();
            let _ = self.client.call_within(
                "/v3/lease/revoke",
                &json!({"ID": self.id.to_string()}),
                "revoking the lease",
                ANSWER_TIMEOUT,
            );
        }
    }
}

/// The keepalive thread's side.
struct Keeper {
    id: i64,
    client: Arc<Client>,
    shared: Arc<Shared>,
    lock: String,
    /// When the last keepalive that succeeded was sent.
    last_ok: Instant,
}

impl Keeper {
    fn run(mut self) {
        let mut next = Instant::now() + KEEPALIVE_EVERY;
        loop {
            {
                let mut state = self.shared.state();
                while !state.stop && Instant::now() < next {
                    let left = next.saturating_duration_since(Instant::now());
                    state = self
                        .shared
                        .wake
                        .wait_timeout(state, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                if state.stop {
                    return;
                }
            }
            let sent = Instant::now();
            next = sent + KEEPALIVE_EVERY;
            match self.client.call_within(
                "/v3/lease/keepalive",
                &json!({"ID": self.id.to_string()}),
                "renewing the lease",
                ANSWER_TIMEOUT,
            ) {
                Ok(reply) if int(&reply["TTL"]) > 0 => self.last_ok = sent,
                Ok(_) => {
                    return self.lose("its lease was revoked or expired on the cluster".into());
                }
                Err(e) if self.last_ok.elapsed() >= LOSS_AFTER => {
                    let silent = crate::human_duration(self.last_ok.elapsed());
                    return self.lose(format!("no keepalive succeeded for {silent} ({e})"));
                }
                Err(_) => {}
            }
        }
    }

    fn lose(self, cause: String) {
        let lost = LeaseLost {
            lock: self.lock.clone(),
            cluster: self.client.cluster().to_owned(),
            cause,
        };
        let on_lost = {
            let mut state = self.shared.state();
            state.lost = Some(lost.clone());
            state.on_lost.take()
        };
        if let Some(on_lost) = on_lost {
            on_lost(lost);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ttl_outlasts_detection_and_grace() {
        assert_eq!(detection_bound(1), Duration::from_millis(7_500));
        assert_eq!(detection_bound(3), Duration::from_millis(10_500));
        let grace = Duration::from_secs(10);
        assert!(ttl(grace, 3) > detection_bound(3) + grace);
        assert_eq!(ttl(grace, 1), Duration::from_millis(22_500));
    }
}
