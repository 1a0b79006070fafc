//! Who is where in the line of a `--max N` lock (see
//! [`crate::pg::semaphore`]), as `pg_locks` shows it, for a request asking
//! who is in its way and for `--list`.
//!
//! Every request of a semaphore holds the name's key shared from the
//! moment it arrives, so on that key alone the holders of a place and the
//! requests still in line look alike: all granted, shared. The two-int4
//! keys tell them apart:
//!
//! - **holders** hold a slot key; they are marked [`PgHolder::max`], with
//!   the slot's index as [`PgHolder::slot`], and keep their own grant time
//!   as "since";
//! - the **head** of the line holds the gate; its helper sessions wait on
//!   the slots, and the earliest helper's `waitstart` is when the head
//!   began waiting for a place;
//! - the **others in line** wait for the gate, since their `waitstart`,
//!   in that order (the server's FIFO queue of the gate).
//!
//! Waiters come head first, then the gate's queue, then requests waiting
//! for the name itself (an exclusive request behind the holders, or
//! anything behind an exclusive holder). An exclusive holder of the name is
//! a holder; a plain shared holder (`-s`, which the semaphore does not
//! count) is listed as a holder, and left out of "who is in the way".
//!
//! The name's key and the two-int4 keys are read in two queries, the
//! latter second, so they are not one snapshot: a request that arrives in
//! between is not seen, one that takes a place in between is seen as a
//! holder, and one that leaves in between (or has taken the name but not
//! yet reached the gate) shows for that moment as a plain shared holder.

use std::time::SystemTime;

use postgres::Client;
use postgres::types::Type;

use crate::Mode;
use crate::pg::holders::PgHolder;
use crate::pg::semaphore_keys::{IntPair, MAX_SLOTS, gate_key, slot_key};

/// Sessions on the two-int4 advisory keys `$1`/`$2` (the halves as
/// `pg_locks` shows them: oids, here as bigints) in the current database.
const PAIR_LOCKS: &str = "\
SELECT pid, granted, waitstart, classid::bigint, objid::bigint
  FROM pg_locks
 WHERE locktype = 'advisory' AND objsubid = 2 AND pid IS NOT NULL
   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND (classid::bigint, objid::bigint) IN (SELECT * FROM unnest($1::int8[], $2::int8[]))";

/// One session on a two-int4 key.
#[derive(Debug, Clone)]
pub(crate) struct PairLock {
    pid: i32,
    granted: bool,
    waitstart: Option<SystemTime>,
    key: IntPair,
}

/// The gate and the first `slots` slot keys of the lock `name`.
pub(crate) fn keys(name: &str, slots: u32) -> Vec<IntPair> {
    std::iter::once(gate_key(name))
        .chain((1..=slots).map(|i| slot_key(name, i)))
        .collect()
}

/// The gate and every slot key a semaphore of `name` can have, for a
/// listing, which does not know N.
pub(crate) fn all_keys(name: &str) -> Vec<IntPair> {
    keys(name, MAX_SLOTS)
}

/// Every session on `keys`.
pub(crate) fn pair_locks(
    client: &mut Client,
    keys: &[IntPair],
) -> Result<Vec<PairLock>, postgres::Error> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    // pg_locks shows each int4 as the oid of the same bits.
    let (high, low): (Vec<i64>, Vec<i64>) = keys
        .iter()
        .map(|k| (i64::from(k.0 as u32), i64::from(k.1 as u32)))
        .unzip();
    let rows = client.query_typed(
        PAIR_LOCKS,
        &[(&high, Type::INT8_ARRAY), (&low, Type::INT8_ARRAY)],
    )?;
    Ok(rows
        .iter()
        .map(|row| PairLock {
            pid: row.get(0),
            granted: row.get(1),
            waitstart: row.get(2),
            key: IntPair(
                row.get::<_, i64>(3) as u32 as i32,
                row.get::<_, i64>(4) as u32 as i32,
            ),
        })
        .collect())
}

/// What the listing or the request wants of plain shared holders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shared {
    /// Listed as holders.
    Keep,
    /// Left out: they are not in a `--max` request's way.
    Drop,
}

/// The sessions on the name of the semaphore `name` with up to `slots`
/// places, arranged as the module docs say (a waiter has `granted` false);
/// with nobody holding a place or in line, just the holders (as `shared`
/// says) and then the waiters in waiting order.
pub(crate) fn arrange(
    name: &str,
    slots: u32,
    on_name: Vec<PgHolder>,
    pairs: &[PairLock],
    shared: Shared,
) -> Vec<PgHolder> {
    let gate = gate_key(name);
    let slot_keys = keys(name, slots);
    let slot_keys = &slot_keys[1..];
    let on = |p: &&PairLock, key: IntPair| p.key == key;
    // Each holder with its place: the index of the slot key it holds.
    let slot_holders: Vec<(i32, u32)> = pairs
        .iter()
        .filter(|p| p.granted)
        .filter_map(|p| {
            let index = slot_keys.iter().position(|k| on(&p, *k))?;
            Some((p.pid, index as u32))
        })
        .collect();
    let gate_holder = pairs
        .iter()
        .find(|p| p.granted && on(p, gate))
        .map(|p| p.pid);
    let head_since = pairs
        .iter()
        .filter(|p| !p.granted && slot_keys.iter().any(|k| on(p, *k)))
        .filter_map(|p| p.waitstart)
        .min();
    let mut gate_waiters: Vec<(i32, Option<SystemTime>)> = pairs
        .iter()
        .filter(|p| !p.granted && on(p, gate))
        .map(|p| (p.pid, p.waitstart))
        .collect();
    gate_waiters.sort_by_key(|(_, since)| *since);
    let mut holders = Vec::new();
    let mut head = Vec::new();
    let mut queued = Vec::new();
    let mut waiters = Vec::new();
    for mut session in on_name {
        let pid = session.backend_pid;
        if let Some((_, slot)) = slot_holders.iter().find(|(p, _)| *p == pid) {
            session.max = true;
            session.slot = Some(*slot);
            holders.push(session);
        } else if !session.granted {
            waiters.push(session);
        } else if gate_holder == Some(pid) {
            session.granted = false;
            session.max = true;
            session.since = head_since;
            head.push(session);
        } else if let Some((_, since)) = gate_waiters.iter().find(|(p, _)| *p == pid) {
            session.granted = false;
            session.max = true;
            session.since = *since;
            queued.push(session);
        } else if session.mode == Mode::Exclusive || shared == Shared::Keep {
            holders.push(session);
        }
    }
    queued.sort_by_key(|s| s.since);
    waiters.sort_by_key(|s| s.since);
    holders.extend(head);
    holders.extend(queued);
    holders.extend(waiters);
    holders
}
