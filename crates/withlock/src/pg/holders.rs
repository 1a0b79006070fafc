//! Who holds and who waits for an advisory lock: `pg_locks` joined to
//! `pg_stat_activity`, the holder's identity read back from the session's
//! `application_name`.

use std::time::SystemTime;

use crate::{Holder, Holders, Mode};
use postgres::Client;

use crate::pg::identity::Identity;
use crate::pg::key::LockKeyParts;

/// Granted sessions first, then waiters in the order they began waiting
/// (`waitstart`, PostgreSQL 14+). A holder's "since" is when its session
/// last changed state, which for an idle lock session is when the lock
/// call returned.
const QUERY: &str = "\
SELECT l.pid, l.mode, l.granted, l.waitstart, a.application_name, a.usename::text,
       host(a.client_addr), a.state, a.state_change
  FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
 WHERE l.locktype = 'advisory'
   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 1
 ORDER BY l.granted DESC, l.waitstart NULLS LAST, l.pid";

/// One session holding or waiting for the lock, as the server shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgHolder {
    /// The server backend's pid (for `pg_terminate_backend`).
    pub backend_pid: i32,
    /// Exclusive or shared.
    pub mode: Mode,
    /// True for a holder, false for a waiter.
    pub granted: bool,
    /// For a waiter, when it began waiting; for a holder, when its session
    /// last changed state (when the lock was granted, for withlock).
    pub since: Option<SystemTime>,
    /// The database role.
    pub role: Option<String>,
    /// The client address as the server sees it (`None` over a Unix socket,
    /// or when this role may not see it).
    pub client_addr: Option<String>,
    /// The identity the session announced, if it is withlock's.
    pub identity: Option<Identity>,
    /// The raw `application_name`, for sessions that are not withlock's.
    pub application_name: Option<String>,
}

impl PgHolder {
    /// As a generic [`Holder`]: the client pid when withlock announced it
    /// (else the backend pid), `user@host` as the user, the command.
    pub fn to_holder(&self) -> Holder {
        let (pid, user, command) = match &self.identity {
            Some(id) => (
                id.pid as i32,
                format!("{}@{}", id.user, id.host),
                id.command.clone(),
            ),
            None => (
                self.backend_pid,
                format!(
                    "{}@{}",
                    self.role.as_deref().unwrap_or("?"),
                    self.client_addr.as_deref().unwrap_or("local")
                ),
                self.application_name.clone().unwrap_or_default(),
            ),
        };
        Holder {
            pid,
            mode: self.mode,
            uid: None,
            user: Some(user),
            command: Some(command.split(' ').map(|a| a.as_bytes().to_vec()).collect()),
            since: self.since,
            started: None,
            running: true,
        }
    }
}

/// Every session holding or waiting for advisory key `key` in the current
/// database, holders first, waiters in waiting order.
pub fn query(client: &mut Client, key: i64) -> Result<Vec<PgHolder>, postgres::Error> {
    let parts = LockKeyParts::of(key);
    let rows = client.query(QUERY, &[&parts.classid, &parts.objid])?;
    Ok(rows
        .iter()
        .map(|row| {
            let granted: bool = row.get(2);
            let mode: &str = row.get(1);
            let application_name: Option<String> = row.get(4);
            let state_change: Option<SystemTime> = row.get(8);
            PgHolder {
                backend_pid: row.get(0),
                mode: if mode == "ShareLock" {
                    Mode::Shared
                } else {
                    Mode::Exclusive
                },
                granted,
                since: if granted { state_change } else { row.get(3) },
                role: row.get(5),
                client_addr: row.get(6),
                identity: application_name.as_deref().and_then(Identity::parse),
                application_name,
            }
        })
        .collect())
}

/// The generic view of `sessions`: holders and waiters.
pub fn to_holders(sessions: &[PgHolder]) -> Holders {
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
