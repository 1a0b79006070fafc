//! The line of an etcd lock: every key under its prefix, in create
//! revision order, and whose turn it is.
//!
//! etcd's own lock (`etcdctl lock`, the Go client's `concurrency.Mutex`)
//! puts a key `NAME/<lease id in hex>` with the session's lease, and its
//! holder is the key with the lowest create revision; each waiter waits
//! for the deletion of the key just before it. withlock uses the same
//! layout and adds, in the key's value ([`Record`]), how it takes the
//! lock, so that readers can run together:
//!
//! - an exclusive request has its turn when no key is before it;
//! - a shared one when none before it is exclusive (a key without a
//!   withlock record, such as etcdctl's, counts as exclusive), so a
//!   waiting writer is never passed by later readers;
//! - a `--max N` one when none before it is exclusive and fewer than N
//!   before it are `--max` requests.
//!
//! So an `etcdctl lock` holder and waiter and withlock exclude each other
//! both ways: etcdctl waits for every key before its own.

use crate::etcd::client::{int, unb64};
use crate::etcd::record::Record;
use crate::holder::Holders;
use crate::request::Mode;
use serde_json::Value;

/// One key in a lock's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) key: Vec<u8>,
    pub(crate) create_revision: i64,
    /// Changes with every write of the key (a claimed place).
    pub(crate) mod_revision: i64,
    pub(crate) lease: i64,
    /// None for a key that is not withlock's (etcdctl's).
    pub(crate) record: Option<Record>,
}

impl Entry {
    /// A key-value from a range answer.
    pub(crate) fn from_kv(kv: &Value) -> Entry {
        Entry {
            key: unb64(&kv["key"]),
            create_revision: int(&kv["create_revision"]),
            mod_revision: int(&kv["mod_revision"]),
            lease: int(&kv["lease"]),
            record: Record::parse(&unb64(&kv["value"])),
        }
    }

    fn is_exclusive(&self) -> bool {
        self.record
            .as_ref()
            .is_none_or(|r| r.mode == Mode::Exclusive && r.max.is_none())
    }

    fn is_max(&self) -> bool {
        self.record.as_ref().is_some_and(|r| r.max.is_some())
    }
}

/// Every entry of a range answer's key-values.
pub(crate) fn entries(range: &Value) -> Vec<Entry> {
    range["kvs"]
        .as_array()
        .map(|kvs| kvs.iter().map(Entry::from_kv).collect())
        .unwrap_or_default()
}

/// Whose turn: a request is granted, or waits for one of some keys to go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Turn {
    Granted,
    /// The deletion of any of these keys may make it the request's turn.
    WaitFor(Vec<Vec<u8>>),
}

/// The turn of a request taken in `mode` (`max` for `--max N`), with
/// `ahead` the keys created before its own, in create order.
pub(crate) fn turn(ahead: &[Entry], mode: Mode, max: Option<u32>) -> Turn {
    if mode == Mode::Exclusive && max.is_none() {
        return match ahead.last() {
            None => Turn::Granted,
            Some(last) => Turn::WaitFor(vec![last.key.clone()]),
        };
    }
    if let Some(writer) = ahead.iter().rev().find(|e| e.is_exclusive()) {
        return Turn::WaitFor(vec![writer.key.clone()]);
    }
    match max {
        None => Turn::Granted,
        Some(max) => {
            let places: Vec<Vec<u8>> = ahead
                .iter()
                .filter(|e| e.is_max())
                .map(|e| e.key.clone())
                .collect();
            if places.len() < max as usize {
                Turn::Granted
            } else {
                Turn::WaitFor(places)
            }
        }
    }
}

/// The entries of `line` that hold the lock now, as [`turn`] serves it.
pub(crate) fn holding(line: &[Entry]) -> Vec<&Entry> {
    line.iter()
        .enumerate()
        .filter(|(i, entry)| {
            let (mode, max) = entry
                .record
                .as_ref()
                .map_or((Mode::Exclusive, None), |r| (r.mode, r.max));
            turn(&line[..*i], mode, max) == Turn::Granted
        })
        .map(|(_, entry)| entry)
        .collect()
}

/// The lowest place of `0..max` no entry of `others` has claimed.
pub(crate) fn free_slot(others: &[&Entry], max: u32) -> u32 {
    (0..max)
        .find(|slot| {
            !others
                .iter()
                .any(|e| e.record.as_ref().is_some_and(|r| r.slot == Some(*slot)))
        })
        .unwrap_or(max.saturating_sub(1))
}

/// Holders and waiters of a whole line, as [`turn`] serves it.
pub(crate) fn holders(line: &[Entry]) -> Holders {
    let mut found = Holders::default();
    let mut foreign = Vec::new();
    for (i, entry) in line.iter().enumerate() {
        let (mode, max) = entry
            .record
            .as_ref()
            .map_or((Mode::Exclusive, None), |r| (r.mode, r.max));
        let holding = turn(&line[..i], mode, max) == Turn::Granted;
        match &entry.record {
            Some(record) if holding => found.holders.push(record.to_holder()),
            Some(record) => found.waiters.push(record.to_holder()),
            None => foreign.push(format!(
                "{} key {}",
                if holding { "holding" } else { "waiting" },
                crate::escape::text(&String::from_utf8_lossy(&entry.key)),
            )),
        }
    }
    if !foreign.is_empty() {
        found.unidentified = Some(format!(
            "an etcd client that is not withlock (etcdctl lock?), {}",
            foreign.join(", ")
        ));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn entry(key: &str, how: Option<(Mode, Option<u32>)>) -> Entry {
        Entry {
            key: key.as_bytes().to_vec(),
            create_revision: 0,
            mod_revision: 0,
            lease: 0x2a,
            record: how.map(|(mode, max)| Record {
                pid: 1,
                user: "u".into(),
                host: "h".into(),
                since: SystemTime::UNIX_EPOCH,
                command: vec![],
                mode,
                max,
                deadline: None,
                slot: None,
            }),
        }
    }

    const X: Option<(Mode, Option<u32>)> = Some((Mode::Exclusive, None));
    const S: Option<(Mode, Option<u32>)> = Some((Mode::Shared, None));
    const M2: Option<(Mode, Option<u32>)> = Some((Mode::Shared, Some(2)));

    fn keys(names: &[&str]) -> Turn {
        Turn::WaitFor(names.iter().map(|n| n.as_bytes().to_vec()).collect())
    }

    #[test]
    fn exclusive_waits_for_the_key_just_before_it() {
        assert_eq!(turn(&[], Mode::Exclusive, None), Turn::Granted);
        let ahead = [entry("a", S), entry("b", S)];
        assert_eq!(turn(&ahead, Mode::Exclusive, None), keys(&["b"]));
    }

    #[test]
    fn readers_share_but_never_pass_a_waiting_writer() {
        assert_eq!(
            turn(&[entry("a", S), entry("b", M2)], Mode::Shared, None),
            Turn::Granted
        );
        let ahead = [entry("a", S), entry("w", X), entry("b", S)];
        assert_eq!(turn(&ahead, Mode::Shared, None), keys(&["w"]));
        // etcdctl's key has no record: exclusive.
        assert_eq!(turn(&[entry("e", None)], Mode::Shared, None), keys(&["e"]));
    }

    #[test]
    fn max_counts_places_ahead() {
        assert_eq!(
            turn(&[entry("a", M2)], Mode::Shared, Some(2)),
            Turn::Granted
        );
        let full = [entry("a", M2), entry("s", S), entry("b", M2)];
        assert_eq!(turn(&full, Mode::Shared, Some(2)), keys(&["a", "b"]));
        assert_eq!(
            turn(&[entry("e", None)], Mode::Shared, Some(2)),
            keys(&["e"])
        );
    }

    #[test]
    fn holders_and_waiters_follow_the_turns() {
        let line = [
            entry("a", S),
            entry("b", S),
            entry("w", X),
            entry("e", None),
        ];
        let found = holders(&line);
        assert_eq!((found.holders.len(), found.waiters.len()), (2, 1));
        let unnamed = found.unidentified.unwrap();
        assert!(
            unnamed.ends_with("(etcdctl lock?), waiting key e"),
            "{unnamed}"
        );
    }
}
