//! The fencing tokens of the PostgreSQL locks held, for the command's
//! environment (see `withlock::pg::fence` for what a token is).
//!
//! - `WITHLOCK_FENCE=<token>` when exactly one PostgreSQL lock is held:
//!   the one number a storage system compares.
//! - `WITHLOCK_FENCES="<name>=<token> ..."` whenever any is held, in the
//!   order the locks were taken (lock names hold no spaces and no `=`),
//!   so a command under several locks can pick each one's token.
//! - With several PostgreSQL locks `WITHLOCK_FENCE` is not set, since one
//!   number cannot fence several locks; local locks have no token. In both
//!   cases a value inherited from an outer withlock passes through
//!   unchanged, and it still belongs to that outer lock.

use std::ffi::OsString;

use withlock::{AnyGuard, LockSet, SetGuard};

/// The variables to add to the command's environment.
pub fn of(set: &LockSet, guard: &SetGuard) -> Vec<(OsString, OsString)> {
    let tokens: Vec<(&str, i64)> = set
        .locks()
        .zip(guard.guards())
        .filter_map(|(lock, guard)| match guard {
            AnyGuard::Pg(pg) => Some((lock.label(), pg.fence())),
            _ => None,
        })
        .collect();
    let mut env = Vec::new();
    if let [(_, token)] = tokens.as_slice() {
        env.push(("WITHLOCK_FENCE".into(), token.to_string().into()));
    }
    if !tokens.is_empty() {
        let all: Vec<String> = tokens
            .iter()
            .map(|(name, token)| format!("{name}={token}"))
            .collect();
        env.push(("WITHLOCK_FENCES".into(), all.join(" ").into()));
    }
    env
}
