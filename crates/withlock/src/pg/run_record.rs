//! The record of a lock's last successful run on the server, for
//! `--once-per`: a row of `withlock.runs (key, name, succeeded_at)` in
//! withlock's state ([`crate::pg::state`]), on the server's clock.
//!
//! - **Reading** is a plain `SELECT`: every role may read the table, as
//!   it may read `withlock.fence`, and how long ago a run succeeded is
//!   computed by the server (`clock_timestamp()`), so the clients' clocks
//!   never matter.
//! - **Writing** goes only through `withlock.record_run(key)`, `SECURITY
//!   DEFINER` with a fixed `search_path`, executable by every role, which
//!   refuses a session that does not hold the lock's key exclusively and
//!   takes the time from the grant it recorded itself
//!   (`withlock.fence.granted_at`): a role can record only a run it could
//!   have made itself, only while holding the lock, and only at its grant
//!   time. A record never goes back (`greatest`). No role but the state's
//!   owner can change or erase a row: no other privilege is granted on the
//!   table.
//! - The table and function are added to a state made before them on
//!   first use, by a role with `CREATE` on the schema `withlock` (its
//!   owner); another role gets [`PgError::FenceTable`] with the SQL for an
//!   administrator, before its command runs. They are used only if they
//!   belong to the schema's owner.

use std::time::{Duration, SystemTime};

use postgres::error::SqlState;
use postgres::types::Type;
use postgres::{Client, Error};

use crate::pg::error::PgError;
use crate::pg::state;
use crate::run_record::LastSuccess;

/// The table and the function, as one script an administrator can run.
pub const CREATE_RUNS: &str = "BEGIN; SET LOCAL search_path = pg_catalog, pg_temp; \
CREATE TABLE withlock.runs (key bigint PRIMARY KEY, name text NOT NULL, \
succeeded_at timestamptz NOT NULL); \
GRANT SELECT ON withlock.runs TO PUBLIC; \
CREATE FUNCTION withlock.record_run(p_key bigint) RETURNS timestamptz \
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$ \
DECLARE started timestamptz; run_name text; BEGIN \
IF NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted \
AND l.mode = 'ExclusiveLock' AND l.objsubid = 1 AND l.pid = pg_backend_pid() \
AND (l.classid::bigint << 32 | l.objid::bigint) = p_key) THEN \
RAISE EXCEPTION 'this session does not hold the lock exclusively' USING ERRCODE = 'WL001'; END IF; \
SELECT f.granted_at, f.name INTO started, run_name FROM withlock.fence f WHERE f.key = p_key; \
IF started IS NULL THEN RAISE EXCEPTION 'no grant of this lock is recorded' \
USING ERRCODE = 'WL001'; END IF; \
INSERT INTO withlock.runs AS r (key, name, succeeded_at) VALUES (p_key, run_name, started) \
ON CONFLICT (key) DO UPDATE SET name = EXCLUDED.name, \
succeeded_at = greatest(r.succeeded_at, EXCLUDED.succeeded_at); \
RETURN started; END $f$; \
REVOKE ALL ON FUNCTION withlock.record_run(bigint) FROM PUBLIC; \
GRANT EXECUTE ON FUNCTION withlock.record_run(bigint) TO PUBLIC; COMMIT;";

/// The table and function belong to the schema's owner, the function runs
/// as its owner: what a trusted state made them ([`state::TRUSTED`]).
const TRUSTED_RUNS: &str = "EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n \
JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = 'runs' \
JOIN pg_catalog.pg_proc p ON p.pronamespace = n.oid AND p.proname = 'record_run' \
WHERE n.nspname = 'withlock' AND c.relowner = n.nspowner AND p.proowner = n.nspowner \
AND p.prosecdef)";

/// When a run under the lock of key `$1` last succeeded, and how long ago
/// on the server's clock; no row if none did. An untrusted table is read
/// as a refusal (`trusted` false).
fn last_query() -> String {
    format!(
        "SELECT {} AND {}, r.succeeded_at, \
         pg_catalog.floor(pg_catalog.date_part('epoch', \
         pg_catalog.clock_timestamp() - r.succeeded_at) * 1000)::pg_catalog.int8 \
         FROM (SELECT 1) one LEFT JOIN withlock.runs r ON r.key = $1",
        state::TRUSTED,
        TRUSTED_RUNS
    )
}

/// The last successful run under the lock of key `key`, held by `client`;
/// creates the record's table and function if the state has none yet.
pub(crate) fn last_success(
    client: &mut Client,
    key: i64,
    server: &str,
) -> Result<Option<LastSuccess>, PgError> {
    let read = |client: &mut Client| client.query_typed(&last_query(), &[(&key, Type::INT8)]);
    let rows = match read(client) {
        Ok(rows) => rows,
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => {
            create(client, server)?;
            read(client).map_err(|cause| query_error(cause, server))?
        }
        Err(cause) => return Err(diagnose(cause, server)),
    };
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    if !row.get::<_, bool>(0) {
        return Err(untrusted(server));
    }
    let at: Option<SystemTime> = row.get(1);
    let ago_ms: Option<i64> = row.get(2);
    Ok(at.map(|at| LastSuccess {
        at,
        // A record from the future (the server's clock went back) counts
        // as just made.
        ago: Duration::from_millis(ago_ms.unwrap_or(0).max(0) as u64),
    }))
}

/// Records that the run under the lock of key `key`, held exclusively by
/// `client`, succeeded.
pub(crate) fn record_success(client: &mut Client, key: i64, server: &str) -> Result<(), PgError> {
    let sql = format!(
        "SELECT withlock.record_run(k.key) FROM (SELECT $1::pg_catalog.int8 AS key WHERE {} AND {}) k",
        state::TRUSTED,
        TRUSTED_RUNS
    );
    let rows = client
        .query_typed(&sql, &[(&key, Type::INT8)])
        .map_err(|cause| diagnose(cause, server))?;
    match rows.is_empty() {
        true => Err(untrusted(server)),
        false => Ok(()),
    }
}

/// Adds the table and function to the state, once.
fn create(client: &mut Client, server: &str) -> Result<(), PgError> {
    match client.batch_execute(CREATE_RUNS) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK");
            // Another client added them at the same moment.
            let raced = [SqlState::UNIQUE_VIOLATION, SqlState::DUPLICATE_TABLE]
                .iter()
                .any(|code| e.code() == Some(code));
            if raced {
                return Ok(());
            }
            Err(diagnose(e, server))
        }
    }
}

fn diagnose(cause: Error, server: &str) -> PgError {
    if cause.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
        return PgError::FenceTable {
            server: server.to_owned(),
            privilege: "CREATE on the schema withlock, to add the record of runs (--once-per) \
                        once",
            fix: "add it once, as the schema's owner or a superuser, with",
            sql: CREATE_RUNS.to_owned(),
        };
    }
    query_error(cause, server)
}

fn query_error(cause: Error, server: &str) -> PgError {
    PgError::Query {
        context: "reading or writing the record of runs (withlock.runs)",
        server: server.to_owned(),
        cause,
    }
}

fn untrusted(server: &str) -> PgError {
    PgError::StateDamaged {
        server: server.to_owned(),
        what: "withlock.runs or withlock.record_run does not belong to the schema's owner, or \
               the schema is not trusted; nothing of it was used"
            .into(),
    }
}
