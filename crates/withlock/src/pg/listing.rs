//! Listing the locks on a server without taking them (`withlock --url URL
//! --list`), all read in one session.
//!
//! - With names: those locks, in the order given; a name nobody holds or
//!   waits for is free.
//! - Without: every withlock lock the server knows, sorted by name: each
//!   advisory key in `pg_locks` (current database) that is withlock's —
//!   named in the fence table, or held or awaited by a withlock session —
//!   and each name in the fence table that is free now. A key the fence
//!   table has no name for (waiters for a lock never granted yet, or a
//!   role that may not read the table) is shown as `0x` and its key in
//!   16 hex digits.
//! - Each [`LockStatus`] has an empty `path` and the server as `server`.
//!   Holders and waiters are as [`PgLock::pg_holders`] gives them; an
//!   exclusive holder whose `application_name` was cut before its grant
//!   time gets the fence table's `granted_at` as "since".
//! - A `--max N` lock's holders are the sessions holding one of its places
//!   (any N up to the cap), marked as such; the requests in its line, which
//!   hold the name shared too, are its waiters, in arrival order (see
//!   `semaphore_line`).
//!
//! [`PgLock::pg_holders`]: crate::pg::PgLock::pg_holders

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;
use std::time::SystemTime;

use postgres::Client;
use postgres::types::Type;

use crate::pg::connection::Target;
use crate::pg::error::PgError;
use crate::pg::holders::{self, PgHolder};
use crate::pg::identity::Identity;
use crate::pg::key::advisory_key;
use crate::pg::semaphore_keys::MAX_SLOTS;
use crate::pg::semaphore_line::{self, Shared};
use crate::{Found, LockName, LockStatus, Mode, Result};

/// Whether the fence table exists, this role may read it, and withlock's
/// state is trusted (see [`crate::pg::state`]).
static FENCE_READABLE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT coalesce(has_table_privilege(pg_catalog.to_regclass('withlock.fence'), 'SELECT'), \
         false) AND {}",
        crate::pg::state::TRUSTED
    )
});

/// The fence table's names and grant times, for keys `$1` (NULL: all).
const FENCE_ROWS: &str = "SELECT key, name, granted_at FROM withlock.fence \
WHERE $1::bigint[] IS NULL OR key = ANY($1)";

/// A name and grant time from the fence table.
type Named = (String, SystemTime);

/// The locks `names` on the server `url`, or every withlock lock there
/// when `names` is empty (see the module docs).
pub fn list(url: &str, names: &[String]) -> Result<Vec<LockStatus>> {
    let names = names
        .iter()
        .map(|name| LockName::new(name).map(|n| n.as_str().to_owned()))
        .collect::<Result<Vec<String>>>()?;
    list_on(&Target::parse(url)?, names)
}

/// The status of `lock`, as [`list`] gives it for its name on its server.
pub(crate) fn status(lock: &crate::pg::PgLock) -> Result<LockStatus> {
    let mut found = list_on(lock.target(), vec![lock.name().to_owned()])?;
    Ok(found.remove(0))
}

fn list_on(target: &Target, names: Vec<String>) -> Result<Vec<LockStatus>> {
    let identity = Identity::running(&["(listing)"]);
    let mut client = target.connect(&identity)?;
    let server = target.server().to_owned();
    let failed = |cause| PgError::Query {
        context: "listing the locks",
        server: server.clone(),
        cause,
    };
    let keys: Option<Vec<i64>> =
        (!names.is_empty()).then(|| names.iter().map(|n| advisory_key(n)).collect());
    let sessions = holders::query_keys(&mut client, keys.as_deref()).map_err(failed)?;
    let fence = fence_rows(&mut client, keys.as_deref()).map_err(failed)?;
    let mut by_key: HashMap<i64, Vec<PgHolder>> = HashMap::new();
    for (key, session) in sessions {
        by_key.entry(key).or_default().push(session);
    }
    // Who holds a place of a `--max` lock, and who is in its line: only a
    // name held shared can be one.
    let held_shared = |key: &i64| {
        by_key
            .get(key)
            .is_some_and(|s| s.iter().any(|s| s.granted && s.mode == Mode::Shared))
    };
    let known_names = names
        .iter()
        .map(|name| (advisory_key(name), name))
        .chain(fence.iter().map(|(key, (name, _))| (*key, name)));
    let line_keys: Vec<_> = known_names
        .filter(|(key, _)| held_shared(key))
        .flat_map(|(_, name)| semaphore_line::all_keys(name))
        .collect();
    let pairs = semaphore_line::pair_locks(&mut client, &line_keys).map_err(failed)?;
    let status = |name: String, key: i64| {
        let sessions = by_key.get(&key).cloned().unwrap_or_default();
        let sessions = semaphore_line::arrange(&name, MAX_SLOTS, sessions, &pairs, Shared::Keep);
        lock_status(name, sessions, fence.get(&key), &server)
    };
    if !names.is_empty() {
        return Ok(names
            .into_iter()
            .map(|name| {
                let key = advisory_key(&name);
                status(name, key)
            })
            .collect());
    }
    let mut all: BTreeMap<String, i64> = fence
        .iter()
        .map(|(key, (name, _))| (name.clone(), *key))
        .collect();
    for (key, sessions) in &by_key {
        let withlocks = sessions.iter().any(|s| s.identity.is_some());
        if !fence.contains_key(key) && *key < 0 && withlocks {
            all.insert(format!("0x{:016x}", *key as u64), *key);
        }
    }
    Ok(all
        .into_iter()
        .map(|(name, key)| status(name, key))
        .collect())
}

/// The fence table's rows for `keys`, or none when it is missing or this
/// role may not read it: the listing then shows keys, not names.
fn fence_rows(
    client: &mut Client,
    keys: Option<&[i64]>,
) -> std::result::Result<HashMap<i64, Named>, postgres::Error> {
    let readable: bool = client.query_typed(&FENCE_READABLE, &[])?[0].get(0);
    if !readable {
        return Ok(HashMap::new());
    }
    let rows = client.query_typed(FENCE_ROWS, &[(&keys, Type::INT8_ARRAY)])?;
    Ok(rows
        .iter()
        .map(|row| (row.get(0), (row.get(1), row.get(2))))
        .collect())
}

fn lock_status(
    name: String,
    mut sessions: Vec<PgHolder>,
    fence: Option<&Named>,
    server: &str,
) -> LockStatus {
    if let Some((_, granted_at)) = fence {
        // The table's grant time is the last grant's: an exclusive
        // holder's own, but not every shared holder's.
        for session in &mut sessions {
            if session.granted && session.mode == Mode::Exclusive && session.since.is_none() {
                session.since = Some(*granted_at);
            }
        }
    }
    LockStatus {
        name,
        path: Default::default(),
        server: Some(server.to_owned()),
        found: Found::NoFile,
        holders: holders::to_holders(&sessions),
        obstruction: None,
    }
}
