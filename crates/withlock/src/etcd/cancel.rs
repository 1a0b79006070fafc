//! Cancelling a running holder of an etcd lock (`withlock --url
//! etcd://... --cancel-running`), across machines; the file lock's side
//! is [`crate::cancel`], the PostgreSQL lock's [`crate::pg::cancel`].
//!
//! Nothing is signalled: the holder's own withlock stops its command. A
//! lock taken with [`crate::EtcdLock::cancelling`]:
//!
//! 1. **Asks**, once it has to wait: it puts the key
//!    `<lock prefix without its '/'>~cancel/<lease in hex>` with its own
//!    lease, so the key goes when the request does. (`~` is in no lock
//!    name, so no lock's line ever holds these keys, and `etcdctl lock`
//!    on the lock's prefix never sees them.)
//! 2. **Hears**, once granted: a thread watches that prefix from the
//!    revision of its own key in line (no polling; the watch is opened
//!    again every [`crate::etcd::waiting::RECHECK`]). A put counts if
//!    the key is attached to the lease its name says and the key in line
//!    of that lease, `<lock prefix><lease in hex>`, exists and is newer
//!    than this holder's. The holder then is cancelled ([`Cancelled`],
//!    naming the request from its record in line).
//! 3. **Gives way**: a request just granted that finds such a newer
//!    request asking revokes its lease and gives up
//!    ([`crate::Error::Superseded`]), as an older waiter does with
//!    `--supersede`.
//!
//! Who can cancel whom: any etcd user who may write the lock's keys
//! (its line and the `~cancel/` keys beside it), that is who could take
//! the lock, can cancel a holder that opted in; one who may not write
//! them cannot. A holder that did not opt in never watches.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::cancelled::Cancelled;
use crate::etcd::client::{Client, b64, int, prefix_end, unb64};
use crate::etcd::error::EtcdError;
use crate::etcd::lease::Lease;
use crate::etcd::line::{self, Entry};
use crate::etcd::waiting::RECHECK;

/// What a lock's line prefix becomes for its cancelling requests' keys.
const CANCEL_SPACE: &str = "~cancel";

/// Where the cancelling requests for the lock whose line is under
/// `lock_prefix` (ending in '/') put their keys.
pub(crate) fn prefix(lock_prefix: &str) -> String {
    format!("{}{CANCEL_SPACE}/", lock_prefix.trim_end_matches('/'))
}

/// True for the part of a key before its last '/' that is a cancelling
/// request's space rather than a lock (listings skip it).
pub(crate) fn is_cancel_space(lock: &str) -> bool {
    lock.ends_with(CANCEL_SPACE)
}

/// Step 1: asks the holders of the lock under `lock_prefix` to stop.
pub(crate) fn ask(client: &Client, lock_prefix: &str, lease: &Lease) -> Result<(), EtcdError> {
    let key = format!("{}{:x}", prefix(lock_prefix), lease.id());
    let put = json!({"key": b64(&key), "value": b64(""), "lease": lease.id().to_string()});
    client
        .call("/v3/kv/put", &put, "asking the holders to stop")
        .map(drop)
}

/// The request in line that a put of the cancel key `kv` speaks for, if
/// it is newer than `own_revision` and the key is its own.
fn newer_request(
    client: &Client,
    lock_prefix: &str,
    kv: &Value,
    own_revision: i64,
) -> Option<Entry> {
    let key = String::from_utf8(unb64(&kv["key"])).ok()?;
    let hex = key.strip_prefix(&prefix(lock_prefix))?;
    let lease = i64::from_str_radix(hex, 16).ok()?;
    if int(&kv["lease"]) != lease {
        return None;
    }
    let line_key = format!("{lock_prefix}{hex}");
    let range = json!({"key": b64(&line_key)});
    let found = client
        .call("/v3/kv/range", &range, "checking a cancelling request")
        .ok()?;
    line::entries(&found)
        .into_iter()
        .find(|e| e.lease == lease && e.create_revision > own_revision)
}

fn cancelled(lock: &str, entry: &Entry) -> Cancelled {
    let holders = line::holders(std::slice::from_ref(entry));
    let by = holders
        .holders
        .into_iter()
        .chain(holders.waiters)
        .next()
        .unwrap_or_else(|| crate::Holder::of_pid(0, crate::Mode::Exclusive));
    let host = by.host.clone().unwrap_or_else(|| "an unknown host".into());
    Cancelled {
        lock: lock.to_owned(),
        by,
        host,
    }
}

/// Step 3: a newer cancelling request already asking, for a request
/// just granted whose key in line was created at `own_revision`.
pub(crate) fn newer_asking(
    client: &Client,
    lock_prefix: &str,
    lock: &str,
    own_revision: i64,
) -> Result<Option<Cancelled>, EtcdError> {
    let cancels = prefix(lock_prefix);
    let range = json!({"key": b64(&cancels), "range_end": prefix_end(&cancels)});
    let found = client.call("/v3/kv/range", &range, "reading the cancelling requests")?;
    Ok(found["kvs"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|kv| newer_request(client, lock_prefix, kv, own_revision))
        .map(|entry| cancelled(lock, &entry)))
}

/// A holder's watch for cancelling requests (step 2); ends when dropped
/// (within [`RECHECK`], without waiting for it).
pub(crate) struct Watch {
    stop: Arc<AtomicBool>,
}

impl Watch {
    /// Starts watching for requests newer than `own_revision`; calls
    /// `on_cancel` once, from its thread, for the first that passes.
    pub(crate) fn start(
        client: Arc<Client>,
        lock_prefix: String,
        lock: String,
        own_revision: i64,
        on_cancel: Box<dyn FnOnce(Cancelled) + Send>,
    ) -> std::io::Result<Watch> {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("withlock-etcd-cancel".into())
            .spawn(move || {
                let found = watch(&client, &lock_prefix, own_revision, &stopped);
                if let (Some(entry), false) = (found, stopped.load(Ordering::SeqCst)) {
                    on_cancel(cancelled(&lock, &entry));
                }
            })?;
        Ok(Watch { stop })
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Watches the cancel keys from `own_revision` on until a newer request
/// asks (its entry in line) or `stop` is set (None).
fn watch(
    client: &Client,
    lock_prefix: &str,
    own_revision: i64,
    stop: &AtomicBool,
) -> Option<Entry> {
    let cancels = prefix(lock_prefix);
    let mut from = own_revision + 1;
    while !stop.load(Ordering::SeqCst) {
        let body = json!({"create_request": {
            "key": b64(&cancels),
            "range_end": prefix_end(&cancels),
            "start_revision": from.to_string(),
            "filters": ["NODELETE"],
        }});
        let Ok(mut stream) = client.stream("/v3/watch", &body, RECHECK) else {
            // No member answers now: the lease decides whether the lock is
            // lost; try again shortly.
            std::thread::sleep(RECHECK.min(Duration::from_secs(1)));
            continue;
        };
        while let Some(Ok(message)) = stream.next_message() {
            if stop.load(Ordering::SeqCst) {
                return None;
            }
            let result = &message["result"];
            if result["canceled"] == json!(true) {
                break;
            }
            for event in result["events"].as_array().into_iter().flatten() {
                let kv = &event["kv"];
                from = from.max(int(&kv["mod_revision"]) + 1);
                if let Some(entry) = newer_request(client, lock_prefix, kv, own_revision) {
                    return Some(entry);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_keys_sit_beside_the_line_never_in_it() {
        assert_eq!(prefix("deploy/"), "deploy~cancel/");
        assert_eq!(prefix("ci/deploy/"), "ci/deploy~cancel/");
        assert!(!prefix("deploy/").starts_with("deploy/"));
        assert!(is_cancel_space("ci/deploy~cancel") && !is_cancel_space("ci/deploy"));
    }
}
