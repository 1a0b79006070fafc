//! Who holds and who waits for an advisory lock: `pg_locks` joined to
//! `pg_stat_activity`, the holder's identity read back from the session's
//! `application_name`.
//!
//! That identity is only declared: any role can set any
//! `application_name`. Beside it every session carries what the server
//! vouches for ([`ServerSession`]): its role (`usename`, visible to every
//! role) and its client address (`client_addr`, with `client_port` -1 for
//! a Unix socket; both NULL when this role may not see them, which
//! without `pg_read_all_stats` is every other role's session).
//!
//! "Since": a waiter's is `pg_locks.waitstart` (visible to every role); a
//! withlock holder's is the grant time it wrote into its
//! `application_name` with its fencing token (see [`crate::pg::Identity`]),
//! so each shared holder has its own and other roles see it.
//! `pg_stat_activity.state_change` is not used for withlock sessions: it
//! is NULL for other roles' sessions (without `pg_read_all_stats`) and
//! moves with every heartbeat query; it is the best guess only for a
//! session that is not withlock's (`psql` calling `pg_advisory_lock`).

use std::time::SystemTime;

use crate::{ClientAddress, Holder, Holders, Mode, ServerSession};
use postgres::types::Type;
use postgres::{Client, Row};

use crate::pg::identity::Identity;

/// Sessions on the 64-bit advisory keys `$1` (NULL: every key; withlock's
/// are negative), per key granted sessions first, then waiters in the order
/// they began waiting (`waitstart`, PostgreSQL 14+).
const QUERY: &str = "\
SELECT k.key, l.pid, l.mode, l.granted, l.waitstart, a.application_name, a.usename::text,
       host(a.client_addr), a.state_change, a.client_port
  FROM pg_locks l
 CROSS JOIN LATERAL (SELECT (l.classid::bigint << 32) | l.objid::bigint AS key) k
  LEFT JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory' AND l.objsubid = 1
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND ($1::bigint[] IS NULL OR k.key = ANY($1))
 ORDER BY k.key, l.granted DESC, l.waitstart NULLS LAST, l.pid";

/// One session holding or waiting for the lock, as the server shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgHolder {
    /// The server backend's pid (for `pg_terminate_backend`).
    pub backend_pid: i32,
    /// Exclusive or shared.
    pub mode: Mode,
    /// True for a holder, false for a waiter.
    pub granted: bool,
    /// For a waiter, when it began waiting; for a withlock holder, when
    /// the lock was granted (see the module docs).
    pub since: Option<SystemTime>,
    /// The database role.
    pub role: Option<String>,
    /// The client address as the server sees it.
    pub client: ClientAddress,
    /// The identity the session announced, if it is withlock's.
    pub identity: Option<Identity>,
    /// The raw `application_name`, for sessions that are not withlock's.
    pub application_name: Option<String>,
    /// True when it holds, or waits for, one of the places of a `--max N`
    /// lock (see [`crate::pg::semaphore`]), rather than the name alone.
    pub max: bool,
    /// Which of the places of a `--max N` lock it holds (0 to N-1).
    pub slot: Option<u32>,
}

impl PgHolder {
    /// As a generic [`Holder`] on a remote host, with the server's view
    /// as its `session`: for a withlock session the pid, user, host and
    /// command it declares; for another session the backend pid, the
    /// role, the client address (`?` when not an IP address) and its
    /// `application_name` as the command.
    pub fn to_holder(&self) -> Holder {
        let (pid, user, host, command) = match &self.identity {
            Some(id) => (
                id.pid as i32,
                id.user.clone(),
                id.host.clone(),
                id.command.clone(),
            ),
            None => (
                self.backend_pid,
                self.role.clone().unwrap_or_else(|| "?".to_owned()),
                self.client.as_json().unwrap_or("?").to_owned(),
                self.application_name.iter().cloned().collect(),
            ),
        };
        Holder {
            pid,
            mode: self.mode,
            uid: None,
            user: Some(user),
            host: Some(host),
            command: Some(command.into_iter().map(String::into_bytes).collect()),
            command_truncated: self
                .identity
                .as_ref()
                .is_some_and(|id| id.command_truncated),
            session: Some(ServerSession {
                backend_pid: self.backend_pid,
                role: self.role.clone(),
                client: self.client.clone(),
                declared: self.identity.is_some(),
            }),
            max: self.max,
            slot: self.slot,
            deadline: self.identity.as_ref().and_then(|id| id.deadline),
            since: self.since,
            started: None,
            running: true,
        }
    }
}

/// Every session holding or waiting for advisory key `key` in the current
/// database, holders first, waiters in waiting order.
pub(crate) fn query(client: &mut Client, key: i64) -> Result<Vec<PgHolder>, postgres::Error> {
    let sessions = query_keys(client, Some(&[key]))?;
    Ok(sessions.into_iter().map(|(_, session)| session).collect())
}

/// Every session holding or waiting for one of `keys` (all advisory keys
/// when `None`) in the current database, with its key; ordered by key,
/// then as [`query`] orders them.
pub(crate) fn query_keys(
    client: &mut Client,
    keys: Option<&[i64]>,
) -> Result<Vec<(i64, PgHolder)>, postgres::Error> {
    let rows = client.query_typed(QUERY, &[(&keys, Type::INT8_ARRAY)])?;
    Ok(rows.iter().map(|row| (row.get(0), session(row))).collect())
}

fn session(row: &Row) -> PgHolder {
    let mode: &str = row.get(2);
    let granted: bool = row.get(3);
    let application_name: Option<String> = row.get(5);
    let identity = application_name.as_deref().and_then(Identity::parse);
    let since = match (&identity, granted) {
        (_, false) => row.get(4),
        (Some(identity), true) => identity.granted_at,
        (None, true) => row.get(8),
    };
    PgHolder {
        backend_pid: row.get(1),
        mode: if mode == "ShareLock" {
            Mode::Shared
        } else {
            Mode::Exclusive
        },
        granted,
        since,
        role: row.get(6),
        client: client(row.get(7), row.get(9)),
        identity,
        application_name,
        max: false,
        slot: None,
    }
}

/// Where a session connected from: `client_port` is -1 over a Unix
/// socket, and NULL (with the address) when this role may not see it.
fn client(addr: Option<String>, port: Option<i32>) -> ClientAddress {
    match (addr, port) {
        (Some(addr), _) => ClientAddress::Ip(addr),
        (None, Some(-1)) => ClientAddress::LocalSocket,
        _ => ClientAddress::Hidden,
    }
}

/// The generic view of `sessions`: holders and waiters.
pub(crate) fn to_holders(sessions: &[PgHolder]) -> Holders {
    Holders {
        holders: sessions
            .iter()
            .filter(|s| s.granted)
            .map(PgHolder::to_holder)
            .collect(),
        waiters: sessions
            .iter()
            .filter(|s| !s.granted)
            .map(PgHolder::to_holder)
            .collect(),
        unidentified: None,
    }
}
