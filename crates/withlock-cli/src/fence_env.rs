//! The fencing tokens of the PostgreSQL locks held, for the command's
//! environment (see `withlock::pg::fence` for what a token is).
//!
//! - One PostgreSQL lock: `WITHLOCK_FENCE=<token>`, the one number a
//!   storage system compares.
//! - Several: `WITHLOCK_FENCES="<name>=<token> ..."`, in the order the locks
//!   were taken (lock names hold no spaces and no `=`), and no
//!   `WITHLOCK_FENCE`, since one number cannot fence several locks.
//!
//! Either way the other variable is removed, so a value inherited from an
//! outer withlock cannot be mistaken for this one's. Local locks have no
//! token: with none held on the server, both pass through unchanged, and
//! they still belong to that outer lock.

use std::ffi::OsString;

use withlock::{LockSet, SetGuard};

/// Changes to the command's environment: each variable with its value, or
/// `None` to remove it.
pub(crate) type EnvChanges = Vec<(OsString, Option<OsString>)>;

/// The changes for the locks held.
pub(crate) fn of(set: &LockSet, guard: &SetGuard) -> EnvChanges {
    let tokens: Vec<(&str, i64)> = set
        .locks()
        .zip(guard.guards())
        .filter_map(|(lock, guard)| Some((lock.label(), guard.fence()?)))
        .collect();
    let (fence, fences) = match tokens.as_slice() {
        [] => return Vec::new(),
        [(_, token)] => (Some(token.to_string()), None),
        several => {
            let all: Vec<String> = several
                .iter()
                .map(|(name, token)| format!("{name}={token}"))
                .collect();
            (None, Some(all.join(" ")))
        }
    };
    vec![
        ("WITHLOCK_FENCE".into(), fence.map(OsString::from)),
        ("WITHLOCK_FENCES".into(), fences.map(OsString::from)),
    ]
}
