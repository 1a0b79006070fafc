//! Listing the locks on an etcd cluster without taking them (`withlock
//! --url etcd://... --list`), read in one range.
//!
//! - With names: those locks, in the order given; a name without keys is
//!   free.
//! - Without: every lock under the URL's prefix (the whole key space
//!   without one: give a prefix on a shared cluster), sorted by name. A
//!   lock is a key `NAME/<hex>` whose hex is its own lease's id: the
//!   layout of withlock and of `etcdctl lock`, so etcdctl's locks are
//!   listed too.
//! - Holders and waiters follow the line's turns (`line.rs`); a
//!   key that is not withlock's is named by its key and lease.

use std::collections::BTreeMap;

use serde_json::json;

use crate::etcd::cancel;
use crate::etcd::client::{Client, b64, prefix_end};
use crate::etcd::etcd_lock::EtcdLock;
use crate::etcd::line::{self, Entry};
use crate::etcd::target::Target;
use crate::{Found, LockName, LockStatus, Result};

/// The locks `names` on the cluster `url`, or every lock under its prefix
/// when `names` is empty (see the module docs).
pub fn list(url: &str, names: &[String]) -> Result<Vec<LockStatus>> {
    let names = names
        .iter()
        .map(|name| LockName::new(name).map(|n| n.as_str().to_owned()))
        .collect::<Result<Vec<String>>>()?;
    let target = Target::parse(url)?;
    let client = Client::connect(&target)?;
    if !names.is_empty() {
        let mut found = Vec::with_capacity(names.len());
        for name in names {
            let lock = EtcdLock::new(url, &name)?;
            let (entries, _) = lock.line(&client)?;
            found.push(status_of(name, &entries, &target));
        }
        return Ok(found);
    }
    let space = target.key_space();
    let (start, end) = if space.is_empty() {
        // Every key: from "\0" to the end of the key space.
        (b64([0]), b64([0]))
    } else {
        (b64(&space), prefix_end(&space))
    };
    let range = client.call(
        "/v3/kv/range",
        &json!({"key": start, "range_end": end, "sort_order": "ASCEND", "sort_target": "CREATE"}),
        "listing the locks",
    )?;
    let mut by_name: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    for entry in line::entries(&range) {
        if let Some(name) = lock_name(&entry, &space) {
            by_name.entry(name).or_default().push(entry);
        }
    }
    Ok(by_name
        .into_iter()
        .map(|(name, entries)| status_of(name, &entries, &target))
        .collect())
}

/// The status of `lock`, as [`list`] gives it for its name.
pub(crate) fn status(lock: &EtcdLock) -> Result<LockStatus> {
    let client = Client::connect(lock.target())?;
    let (entries, _) = lock.line(&client)?;
    Ok(status_of(lock.name().to_owned(), &entries, lock.target()))
}

/// The lock a key is in line for: `SPACE NAME/<its lease in hex>`.
fn lock_name(entry: &Entry, space: &str) -> Option<String> {
    let key = std::str::from_utf8(&entry.key).ok()?;
    let (lock, lease) = key.strip_prefix(space)?.rsplit_once('/')?;
    // A cancelling request's key beside a line is no lock (etcd/cancel.rs).
    if cancel::is_cancel_space(lock) {
        return None;
    }
    (entry.lease != 0 && !lock.is_empty() && lease == format!("{:x}", entry.lease))
        .then(|| lock.to_owned())
}

fn status_of(name: String, entries: &[Entry], target: &Target) -> LockStatus {
    LockStatus {
        name,
        path: Default::default(),
        server: Some(target.cluster().to_owned()),
        found: Found::NoFile,
        holders: line::holders(entries),
        obstruction: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lock_key_ends_in_its_own_lease() {
        let entry = |key: &str, lease| Entry {
            key: key.as_bytes().to_vec(),
            create_revision: 1,
            mod_revision: 1,
            lease,
            record: None,
        };
        assert_eq!(
            lock_name(&entry("ci/a/2a", 42), "ci/").as_deref(),
            Some("a")
        );
        assert_eq!(lock_name(&entry("a/b/2a", 42), "").as_deref(), Some("a/b"));
        assert_eq!(lock_name(&entry("ci/a/2a", 0), "ci/"), None);
        assert_eq!(lock_name(&entry("ci/a/2b", 42), "ci/"), None);
        assert_eq!(lock_name(&entry("ci/2a", 42), "ci/"), None);
    }
}
