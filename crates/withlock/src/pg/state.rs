//! withlock's state on a server: the fencing tokens ([`crate::pg::fence`])
//! and the grant records of the hand-over ([`crate::pg::handover`]), kept
//! in one fixed schema, `withlock`, so that every role that takes a lock
//! shares them, whatever its `search_path`:
//!
//! - `withlock.tokens`, a sequence: every grant of every name draws the
//!   next value. It starts at the server clock in microseconds when the
//!   state is created, so a state created again (after `DROP SCHEMA`)
//!   still hands out tokens above every earlier one, unless the server's
//!   clock went back or more than a million grants a second were drawn.
//!   A sequence is not emptied by deleting rows, and a value drawn in a
//!   committed transaction is durable.
//! - `withlock.fence (key, name, token, granted_at)`: each name's last
//!   token and grant, readable by every role (`--list` names locks from it).
//! - `withlock.holds (key, token, backend_pid, grace_ms, exclusive,
//!   seen_ended_at)`: the grants not yet released in order.
//! - `withlock.record_grant(key, name, grace_ms, exclusive)` and
//!   `withlock.forget_grants(key, tokens)`: the only way other roles
//!   write the state. They are `SECURITY DEFINER` with a fixed
//!   `search_path = pg_catalog, pg_temp`, executable by every role, and
//!   refuse a session that does not hold the lock's key. Other roles get
//!   no privilege on the tables but `SELECT` on `withlock.fence`: only the
//!   state's owner (the role that created it) and superusers can empty,
//!   change or drop it.
//!
//! The state is created, in one transaction, by the first grant on a
//! database that finds no schema `withlock`; that needs `CREATE` on the
//! database (its owner has it). A role without it gets
//! [`PgError::FenceTable`] and [`CREATE_STATE`] for an administrator.
//! A schema that exists with an object missing, or a token that would not
//! be above the name's last one, is [`PgError::StateDamaged`]: withlock
//! refuses rather than start the tokens or the hand-over records over.
//! So is a schema `withlock` that is not trusted (not owned by the
//! database's owner or a superuser): the grant never calls its functions,
//! which another role with `CREATE` on the database could have written to
//! run with the caller's privileges.

use std::sync::LazyLock;

use postgres::error::SqlState;
use postgres::{Client, Error};

use crate::pg::error::PgError;
use crate::pg::handover::{MAX_GRACE, SETTLE_MARGIN};
use crate::pg::heartbeat::DETECTION_BOUND;

/// The SQLSTATE `withlock.record_grant` raises when the new token would
/// not be above the name's last one.
const TOKEN_WENT_BACK: &str = "WL002";

/// Everything the state is, as one script an administrator can run (one
/// line, one transaction when sent as one query).
pub static CREATE_STATE: LazyLock<String> = LazyLock::new(|| {
    // When a record's command has surely been stopped: its session ended
    // at the latest when a grant first saw it so (see pg::handover).
    let bound = |h: &str| {
        format!(
            "{h}.seen_ended_at + ({} + least(greatest({h}.grace_ms, 0), {}) + {}) \
             * interval '1 millisecond'",
            DETECTION_BOUND.as_millis(),
            MAX_GRACE.as_millis(),
            SETTLE_MARGIN.as_millis()
        )
    };
    let holds = "SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted \
AND l.objsubid = 1 AND l.pid = PID AND (l.classid::bigint << 32 | l.objid::bigint) = p_key";
    let holding = |pid: &str| holds.replace("PID", pid);
    format!(
        "BEGIN; SET LOCAL search_path = pg_catalog, pg_temp; \
CREATE SCHEMA withlock; \
GRANT USAGE ON SCHEMA withlock TO PUBLIC; \
CREATE SEQUENCE withlock.tokens AS bigint; \
SELECT setval('withlock.tokens', (date_part('epoch', clock_timestamp()) * 1000000)::bigint); \
CREATE TABLE withlock.fence (key bigint PRIMARY KEY, name text NOT NULL, token bigint NOT NULL, \
granted_at timestamptz NOT NULL); \
GRANT SELECT ON withlock.fence TO PUBLIC; \
CREATE TABLE withlock.holds (key bigint NOT NULL, token bigint NOT NULL, backend_pid integer NOT NULL, \
grace_ms bigint NOT NULL, exclusive boolean NOT NULL, seen_ended_at timestamptz, PRIMARY KEY (key, token)); \
CREATE FUNCTION withlock.record_grant(p_key bigint, p_name text, p_grace_ms bigint, p_exclusive boolean, \
OUT o_token bigint, OUT o_granted_at timestamptz, OUT o_granted_ms bigint, OUT o_unreleased bigint[], \
OUT o_pause_ms bigint) LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$ \
DECLARE last bigint; BEGIN \
IF NOT EXISTS ({mine}) THEN RAISE EXCEPTION 'this session does not hold the lock %', p_name \
USING ERRCODE = 'WL001'; END IF; \
INSERT INTO withlock.fence (key, name, token, granted_at) VALUES (p_key, p_name, 0, clock_timestamp()) \
ON CONFLICT (key) DO NOTHING; \
SELECT f.token INTO last FROM withlock.fence f WHERE f.key = p_key FOR UPDATE; \
o_token := nextval('withlock.tokens'); o_granted_at := clock_timestamp(); \
o_granted_ms := floor(date_part('epoch', o_granted_at) * 1000)::bigint; \
IF last >= o_token THEN RAISE EXCEPTION 'the token counter went back: % after %', o_token, last \
USING ERRCODE = '{TOKEN_WENT_BACK}'; END IF; \
UPDATE withlock.fence f SET token = o_token, name = p_name, granted_at = o_granted_at WHERE f.key = p_key; \
WITH ended AS (UPDATE withlock.holds h SET seen_ended_at = coalesce(h.seen_ended_at, o_granted_at) \
WHERE h.key = p_key AND (h.exclusive OR p_exclusive) \
AND (h.backend_pid = pg_backend_pid() OR NOT EXISTS ({theirs})) \
RETURNING h.token, {usable_at} AS usable_at) \
SELECT coalesce(array_agg(e.token), '{{}}'), \
greatest(coalesce(ceil(date_part('epoch', max(e.usable_at) - o_granted_at) * 1000), 0), 0)::bigint \
INTO o_unreleased, o_pause_ms FROM ended e; \
INSERT INTO withlock.holds (key, token, backend_pid, grace_ms, exclusive) \
VALUES (p_key, o_token, pg_backend_pid(), least(greatest(p_grace_ms, 0), {max_grace}), p_exclusive); \
END $f$; \
CREATE FUNCTION withlock.forget_grants(p_key bigint, p_tokens bigint[]) RETURNS void \
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $f$ \
DELETE FROM withlock.holds h WHERE h.key = p_key AND h.token = ANY(p_tokens) AND EXISTS ({mine}) \
AND ((h.backend_pid = pg_backend_pid() AND h.seen_ended_at IS NULL) OR {usable_at} <= clock_timestamp()) \
$f$; \
GRANT EXECUTE ON FUNCTION withlock.record_grant(bigint, text, bigint, boolean) TO PUBLIC; \
GRANT EXECUTE ON FUNCTION withlock.forget_grants(bigint, bigint[]) TO PUBLIC; COMMIT;",
        mine = holding("pg_backend_pid()"),
        theirs = holding("h.backend_pid"),
        usable_at = bound("h"),
        max_grace = MAX_GRACE.as_millis(),
    )
});

/// Whether the schema `withlock` is trusted: owned by the database's owner
/// or a superuser (another role with `CREATE` on the database could have
/// made one first), with `record_grant` running as its owner, never with
/// the caller's privileges.
pub(crate) const TRUSTED: &str = "EXISTS (SELECT 1 FROM pg_catalog.pg_namespace n \
JOIN pg_catalog.pg_proc p ON p.pronamespace = n.oid \
WHERE n.nspname = 'withlock' AND p.proname = 'record_grant' AND p.prosecdef AND p.proowner = n.nspowner \
AND (n.nspowner = (SELECT d.datdba FROM pg_catalog.pg_database d \
WHERE d.datname = pg_catalog.current_database()) \
OR (SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.oid = n.nspowner)))";

/// The refusal of a schema `withlock` that is not [`TRUSTED`].
pub(crate) fn untrusted(client: &mut Client, server: &str) -> PgError {
    let owner: String = client
        .query_one(
            "SELECT pg_catalog.quote_ident(n.nspowner::pg_catalog.regrole::text) \
             FROM pg_catalog.pg_namespace n WHERE n.nspname = 'withlock'",
            &[],
        )
        .map(|row| row.get(0))
        .unwrap_or_else(|_| "<unknown>".to_owned());
    PgError::StateDamaged {
        server: server.to_owned(),
        what: format!(
            "it belongs to the role {owner}, and is trusted only from the database's owner or a \
             superuser, with withlock.record_grant as SECURITY DEFINER; nothing of it was run"
        ),
    }
}

/// The objects a complete state has, as `to_regclass`/`to_regprocedure`
/// find them.
const OBJECTS: [(&str, &str); 5] = [
    ("to_regclass", "withlock.tokens"),
    ("to_regclass", "withlock.fence"),
    ("to_regclass", "withlock.holds"),
    (
        "to_regprocedure",
        "withlock.record_grant(bigint, text, bigint, boolean)",
    ),
    (
        "to_regprocedure",
        "withlock.forget_grants(bigint, bigint[])",
    ),
];

/// What a failed use of the state means.
pub(crate) enum Failure {
    /// The schema is missing: the state was never created (or was dropped
    /// whole), and may be created.
    Absent,
    /// Not what withlock can go on with.
    Refused(PgError),
}

/// Reads `cause`, an error from using the state on `client`.
pub(crate) fn diagnose(client: &mut Client, cause: Error, server: &str) -> Failure {
    let code = cause.code().cloned();
    match code {
        // Missing whole, or complete now that another client's creation
        // committed (creating it again then finds that one's).
        Some(SqlState::INVALID_SCHEMA_NAME)
            if [0, OBJECTS.len()].contains(&missing(client).len()) =>
        {
            Failure::Absent
        }
        Some(SqlState::INSUFFICIENT_PRIVILEGE) => Failure::Refused(PgError::FenceTable {
            server: server.to_owned(),
            privilege: "USAGE on the schema withlock and EXECUTE on its functions",
            fix: "grant them with",
            sql: grant_sql(client),
        }),
        Some(ref c) if c.code() == TOKEN_WENT_BACK => Failure::Refused(PgError::StateDamaged {
            server: server.to_owned(),
            what: "the sequence withlock.tokens was set back below a name's last token".into(),
        }),
        Some(SqlState::INVALID_SCHEMA_NAME)
        | Some(SqlState::UNDEFINED_TABLE)
        | Some(SqlState::UNDEFINED_FUNCTION)
        | Some(SqlState::UNDEFINED_COLUMN) => {
            let missing = missing(client);
            Failure::Refused(PgError::StateDamaged {
                server: server.to_owned(),
                what: if missing.is_empty() {
                    crate::pg::error::with_causes(&cause)
                } else {
                    format!("{} missing", missing.join(", "))
                },
            })
        }
        _ => Failure::Refused(PgError::Query {
            context: "drawing the fencing token",
            server: server.to_owned(),
            cause,
        }),
    }
}

/// The state's objects that the server cannot find, looked up in one
/// statement, so that another client's creation committing meanwhile is
/// seen whole or not at all.
fn missing(client: &mut Client) -> Vec<String> {
    let lookups: Vec<String> = OBJECTS
        .iter()
        .map(|(lookup, name)| {
            format!("CASE WHEN pg_catalog.{lookup}('{name}') IS NULL THEN '{name}' END")
        })
        .collect();
    let sql = format!(
        "SELECT pg_catalog.array_remove(ARRAY[{}]::text[], NULL)",
        lookups.join(", ")
    );
    client
        .query_one(&sql, &[])
        .map(|row| row.get(0))
        .unwrap_or_default()
}

/// Creates the state in one transaction. Another client creating it at
/// the same moment is success: its state is then there to use.
pub(crate) fn create(client: &mut Client, server: &str) -> Result<(), PgError> {
    match client.batch_execute(&CREATE_STATE) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK");
            // Two creations racing: the loser fails on the catalog's unique
            // index, or finds the winner's schema, once the winner committed.
            let raced = [SqlState::UNIQUE_VIOLATION, SqlState::DUPLICATE_SCHEMA]
                .iter()
                .any(|code| e.code() == Some(code));
            if raced {
                return Ok(());
            }
            if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
                return Err(PgError::FenceTable {
                    server: server.to_owned(),
                    privilege: "CREATE on the database, to create the schema withlock once",
                    fix: "create it once, as the database's owner or a superuser, with",
                    sql: CREATE_STATE.clone(),
                });
            }
            Err(PgError::Query {
                context: "creating withlock's state (schema withlock)",
                server: server.to_owned(),
                cause: e,
            })
        }
    }
}

/// What an administrator runs so that this role may use the state.
fn grant_sql(client: &mut Client) -> String {
    // quote_ident: the role name goes into SQL that people paste.
    let role: String = client
        .query_one("SELECT pg_catalog.quote_ident(current_user::text)", &[])
        .map(|row| row.get(0))
        .unwrap_or_else(|_| "<role>".to_owned());
    format!(
        "GRANT USAGE ON SCHEMA withlock TO {role}; \
         GRANT EXECUTE ON FUNCTION withlock.record_grant(bigint, text, bigint, boolean), \
         withlock.forget_grants(bigint, bigint[]) TO {role};"
    )
}
