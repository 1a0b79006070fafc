//! The record of a lock's last successful run on etcd, for `--once-per`:
//! the key `[PREFIX/]NAME@last-success`, beside the lock's line (lock
//! names hold no `@`, and a listing skips it), put with a lease of its
//! own whose TTL is what is left of the window.
//!
//! etcd has no clock to read, but it times leases: the record lives until
//! the window that began when its run took the lock has passed, as the
//! cluster counts it, and is gone after. Its value,
//! `{"withlock":1,"ran_for_ms":N}`, says how long after taking the lock
//! the run was recorded, so how long ago the run took the lock is that
//! plus how much of its lease has passed (`grantedTTL - TTL`, from
//! `LeaseTimeToLive`): the clients' clocks never matter. Lease TTLs are
//! whole seconds (at least etcd's minimum, about 2 s by default), and a
//! new leader renews every lease: a window may then last longer, never
//! shorter, so a job never runs twice in one. Use one window for every
//! run of a job: a record lasts as long as the window of the run that
//! wrote it.
//!
//! The record is written only while the lock's key is still there (one
//! transaction). etcd grants permissions on key ranges: an etcd user that
//! may write the lock's keys may write or delete this key too, as it may
//! delete the line's keys and so break the lock itself; one that may not,
//! cannot.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use crate::etcd::client::{Client, b64, int, unb64};
use crate::etcd::error::EtcdError;
use crate::run_record::LastSuccess;

/// The record's key for the lock whose line key is `line_key`
/// (`[PREFIX/]NAME/<lease in hex>`).
pub(crate) fn record_key(line_key: &str) -> String {
    let lock = line_key.rsplit_once('/').map_or(line_key, |(lock, _)| lock);
    format!("{lock}@last-success")
}

/// The last successful run under the lock of `line_key`, if its window
/// has not yet passed.
pub(crate) fn last_success(
    client: &Client,
    line_key: &str,
) -> Result<Option<LastSuccess>, EtcdError> {
    let what = "reading the record of runs";
    let range = client.call(
        "/v3/kv/range",
        &json!({"key": b64(record_key(line_key))}),
        what,
    )?;
    let Some(kv) = range["kvs"].as_array().and_then(|kvs| kvs.first()) else {
        return Ok(None);
    };
    let ran_for = serde_json::from_slice::<Value>(&unb64(&kv["value"]))
        .ok()
        .and_then(|v| v.get("ran_for_ms").and_then(Value::as_u64))
        .map_or(Duration::ZERO, Duration::from_millis);
    let lease = int(&kv["lease"]);
    let alive = client.call(
        "/v3/lease/timetolive",
        &json!({"ID": lease.to_string()}),
        what,
    )?;
    let (left, granted) = (int(&alive["TTL"]), int(&alive["grantedTTL"]));
    if lease == 0 || left <= 0 {
        // No lease (written by hand) or one just run out: no window.
        return Ok(None);
    }
    let ago = ran_for + Duration::from_secs((granted - left).max(0) as u64);
    Ok(Some(LastSuccess {
        at: SystemTime::now()
            .checked_sub(ago)
            .unwrap_or(SystemTime::UNIX_EPOCH),
        ago,
    }))
}

/// Records that the run under the lock of `line_key`, which took it
/// `ran_for` ago, succeeded, for a window of `window`.
pub(crate) fn record_success(
    client: &Client,
    line_key: &str,
    window: Duration,
    ran_for: Duration,
) -> Result<(), EtcdError> {
    let what = "recording the run";
    let left = window.saturating_sub(ran_for);
    if left.is_zero() {
        // The window has passed already: nothing to keep.
        return Ok(());
    }
    let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    let granted = client.call(
        "/v3/lease/grant",
        &json!({"TTL": seconds.to_string()}),
        what,
    )?;
    let lease = int(&granted["ID"]);
    let value = json!({"withlock": 1, "ran_for_ms": ran_for.as_millis() as u64}).to_string();
    let txn = json!({
        "compare": [{"key": b64(line_key), "target": "VERSION", "result": "GREATER",
                     "version": "0"}],
        "success": [{"request_put": {"key": b64(record_key(line_key)), "value": b64(value),
                                     "lease": lease.to_string()}}],
        "failure": [],
    });
    let reply = client.call("/v3/kv/txn", &txn, what)?;
    if reply["succeeded"] != json!(true) {
        let _ = client.call("/v3/lease/revoke", &json!({"ID": lease.to_string()}), what);
        return Err(EtcdError::NotHeld {
            cluster: client.cluster().to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_is_beside_the_line_not_in_it() {
        assert_eq!(record_key("ci/nightly/694d8b"), "ci/nightly@last-success");
        assert_eq!(record_key("nightly/2a"), "nightly@last-success");
    }
}
