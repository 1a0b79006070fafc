//! The place each `--max N` (or `--slots`) lock gave the command, for its
//! environment.
//!
//! - One such lock: `WITHLOCK_SLOT` (the place's name with `--slots`,
//!   else its index) and `WITHLOCK_SLOT_INDEX` (0 to N-1).
//! - Several: `WITHLOCK_SLOTS="<lock>=<slot> ..."`, in the order the locks
//!   were taken (lock names and slot names hold no spaces and no `=`), and
//!   neither of the others, since one value cannot name several places.
//!
//! Either way the other variables are removed, so a value inherited from
//! an outer withlock cannot be mistaken for this one's. With no place
//! held they all pass through unchanged: they still belong to that outer
//! lock.

use std::ffi::OsString;

use withlock::{AnyLock, LockSet, SetGuard};

use crate::cli::SlotNames;
use crate::fence_env::EnvChanges;

/// The changes for the locks held; with `--slots`, each place by its name.
/// A `--max` lock that has no place (a lock file this user can only
/// read) gets none; with `--slots` that is refused, since the command
/// was promised a name.
pub(crate) fn of(
    set: &LockSet,
    guard: &SetGuard,
    names: Option<&SlotNames>,
) -> Result<EnvChanges, withlock::Error> {
    let mut slots: Vec<(&str, u32)> = Vec::new();
    for (lock, held) in set.locks().zip(guard.guards()) {
        match held.slot() {
            Some(slot) => slots.push((lock.label(), slot)),
            None if names.is_some() && lock.max().is_some() => return Err(no_slot(lock)),
            None => {}
        }
    }
    let name = |slot: u32| match names.and_then(|names| names.name(slot)) {
        Some(name) => name.to_owned(),
        None => slot.to_string(),
    };
    let (one, index, several) = match slots.as_slice() {
        [] => return Ok(Vec::new()),
        [(_, slot)] => (Some(name(*slot)), Some(slot.to_string()), None),
        several => {
            let all: Vec<String> = several
                .iter()
                .map(|(lock, slot)| format!("{lock}={}", name(*slot)))
                .collect();
            (None, None, Some(all.join(" ")))
        }
    };
    Ok(vec![
        ("WITHLOCK_SLOT".into(), one.map(OsString::from)),
        ("WITHLOCK_SLOT_INDEX".into(), index.map(OsString::from)),
        ("WITHLOCK_SLOTS".into(), several.map(OsString::from)),
    ])
}

fn no_slot(lock: &AnyLock) -> withlock::Error {
    withlock::Error::Unsupported {
        lock: lock.label().to_owned(),
        reason: "no place could be claimed for --slots: the lock file is read-only for this \
                 user, or on a network file system; ask its owner to make it writable \
                 (chmod a+rw), or use --url"
            .into(),
    }
}
