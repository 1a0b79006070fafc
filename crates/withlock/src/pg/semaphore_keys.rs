//! The advisory keys of a `--max N` lock besides the name's own: its gate
//! and its slots, in the two-int4 key space. Their definition, and why it
//! never meets a name's bigint key, is in [`crate::pg::semaphore`]; they
//! live here so that the semaphore and the reading of its line
//! ([`crate::pg::semaphore_line`]) share them without needing each other.

use crate::pg::key::advisory_key;

/// The largest N: the head of the queue opens N + 1 sessions while it
/// waits, and servers allow 100 by default.
pub const MAX_SLOTS: u32 = 32;

/// A two-int4 advisory key, as `pg_advisory_lock(int4, int4)` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntPair(pub i32, pub i32);

impl IntPair {
    fn of(key: i64) -> IntPair {
        IntPair((key >> 32) as i32, key as i32)
    }
}

/// The semaphore gate of lock `name`.
pub fn gate_key(name: &str) -> IntPair {
    IntPair::of(advisory_key(&format!("{name}#gate")))
}

/// Slot `i` (from 1) of lock `name`.
pub fn slot_key(name: &str, i: u32) -> IntPair {
    IntPair::of(advisory_key(&format!("{name}#{i}")))
}
