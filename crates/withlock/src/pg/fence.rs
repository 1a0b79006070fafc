//! Fencing tokens: a number that grows with every grant of a lock name,
//! so that a storage system can refuse the writes of a holder that has
//! lost its lock (paused, partitioned) once a newer holder has written.
//!
//! The token lives in one table, in the first schema of the session's
//! `search_path` (usually `public`), created on first use:
//!
//! ```sql
//! CREATE TABLE IF NOT EXISTS withlock_fence (
//!     key        bigint PRIMARY KEY,   -- the advisory key of the name
//!     name       text NOT NULL,        -- the lock name, for --list
//!     token      bigint NOT NULL,      -- the last token granted
//!     granted_at timestamptz NOT NULL  -- when it was granted (server clock)
//! );
//! ```
//!
//! - **When.** Right after the grant, on the holding session, in
//!   autocommit: `INSERT .. ON CONFLICT (key) DO UPDATE SET token =
//!   token + 1 .. RETURNING token`. The first grant of a name gets 1.
//!   The statement commits (with `synchronous_commit` on) before its reply
//!   is read, so a token handed out is durable: it keeps growing across
//!   server restarts and crashes.
//! - **Every grant**, shared ones too: each shared holder gets its own
//!   token, higher than every token granted before it. An exclusive
//!   holder's token is higher than every earlier holder's, so a store that
//!   keeps the highest token it has seen and refuses lower ones refuses
//!   every stale holder. Concurrent shared holders' tokens differ, so such
//!   a store would also refuse an older sharer once a newer one wrote:
//!   fence shared holders only where that is wanted.
//! - **Privileges.** The first grant on a database needs `CREATE` on that
//!   schema (PostgreSQL 15 no longer gives it to everyone on `public`);
//!   every grant needs `SELECT, INSERT, UPDATE` on the table, and
//!   `SELECT, INSERT, DELETE` on `withlock_holds`, created beside it
//!   (see [`crate::pg::handover`]). Without
//!   them the lock is released and [`PgError::FenceTable`] says which
//!   privilege is missing and the SQL an administrator can run to create
//!   the table and grant it.
//! - Two clients creating the table at once is fine: the loser of the race
//!   meets a duplicate (a unique violation on `pg_type`, or "type" or
//!   "relation already exists") and goes on with the winner's table.
//!
//! The same statement writes the grant time into the session's
//! `application_name` (see [`crate::pg::Identity`]), which is where other
//! sessions read each holder's "since"; the table's `granted_at` serves
//! `--list` for an exclusive holder whose name was cut too short to keep
//! it.

use std::sync::LazyLock;
use std::time::SystemTime;

use postgres::Client;
use postgres::error::SqlState;
use postgres::types::Type;

use crate::pg::error::PgError;
use crate::pg::handover::{self, Holding, Unreleased};
use crate::pg::identity::Identity;

/// The table's name, unqualified: found through `search_path`.
pub const FENCE_TABLE: &str = "withlock_fence";

/// The table, created on first use.
pub const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS withlock_fence \
(key bigint PRIMARY KEY, name text NOT NULL, token bigint NOT NULL, granted_at timestamptz NOT NULL)";

/// The next token for `$1` (key) named `$2`; also writes the grant time
/// into `application_name` (`$3` || ms || `$4`, cut to 63 bytes), records
/// the grant for [`handover`] (grace `$5` ms, exclusive `$6`) and returns
/// the earlier records to pause for, and makes the commit synchronous, all
/// in one round trip.
static NEXT_TOKEN: LazyLock<String> = LazyLock::new(|| {
    format!(
        "\
WITH granted AS (
  INSERT INTO withlock_fence AS f (key, name, token, granted_at)
  VALUES ($1, $2, 1, clock_timestamp())
  ON CONFLICT (key) DO UPDATE
     SET token = f.token + 1, name = excluded.name, granted_at = excluded.granted_at
  RETURNING token, granted_at),
{}
SELECT token, granted_at,
       set_config('application_name',
                  left($3 || floor(extract(epoch FROM granted_at) * 1000)::bigint::text || $4, 63),
                  false),
       set_config('synchronous_commit', 'on', true),
       {}
  FROM granted",
        handover::RECORD_MINE,
        handover::UNRELEASED.replace("UNRELEASED_WHERE", handover::UNRELEASED_WHERE)
    )
});

/// A grant's token and time, and the earlier holders it must pause for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The fencing token.
    pub token: i64,
    /// When it was granted, on the server's clock.
    pub granted_at: SystemTime,
    /// Earlier holders that conflict with it and ended without releasing.
    pub unreleased: Unreleased,
}

/// Draws the next token for the lock `name` (advisory key `key`) just
/// granted to the session `client`, announced as `identity`, and records
/// the grant as `holding` (see [`handover`]); creates the tables if they
/// are missing. `server` names the server in errors.
pub fn next(
    client: &mut Client,
    key: i64,
    name: &str,
    identity: &Identity,
    holding: Holding,
    server: &str,
) -> Result<Grant, PgError> {
    let grant = match draw(client, key, name, identity, holding) {
        Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => {
            create(client).map_err(|cause| refusal(client, cause, server, Step::Create))?;
            draw(client, key, name, identity, holding)
        }
        other => other,
    };
    grant.map_err(|cause| refusal(client, cause, server, Step::Draw))
}

fn draw(
    client: &mut Client,
    key: i64,
    name: &str,
    identity: &Identity,
    holding: Holding,
) -> Result<Grant, postgres::Error> {
    let (head, tail) = identity.granted_parts();
    let grace_ms = holding.grace_ms();
    // query_typed: no separate prepare round trip. Its rows are read up to
    // ReadyForQuery, so the implicit transaction has committed when this
    // returns.
    let rows = client.query_typed(
        &NEXT_TOKEN,
        &[
            (&key, Type::INT8),
            (&name, Type::TEXT),
            (&head, Type::TEXT),
            (&tail, Type::TEXT),
            (&grace_ms, Type::INT8),
            (&holding.exclusive, Type::BOOL),
        ],
    )?;
    let row = rows.first().expect("an upsert returns its row");
    Ok(Grant {
        token: row.get(0),
        granted_at: row.get(1),
        unreleased: Unreleased::new(row.get(4), row.get(5)),
    })
}

/// Creates the tables (this one and [`handover::CREATE_TABLE`]); a
/// concurrent creation by another client is success.
pub(crate) fn create(client: &mut Client) -> Result<(), postgres::Error> {
    create_one(client, CREATE_TABLE)?;
    create_one(client, handover::CREATE_TABLE)
}

fn create_one(client: &mut Client, sql: &str) -> Result<(), postgres::Error> {
    match client.batch_execute(sql) {
        // Two `IF NOT EXISTS` creations racing: the loser fails on the
        // catalog's unique index, or finds the winner's row type or table,
        // and the winner's table is there to use.
        Err(e)
            if [
                SqlState::UNIQUE_VIOLATION,
                SqlState::DUPLICATE_OBJECT,
                SqlState::DUPLICATE_TABLE,
            ]
            .iter()
            .any(|code| e.code() == Some(code)) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// What was being done when the table refused.
#[derive(Clone, Copy)]
pub(crate) enum Step {
    /// Creating the tables.
    Create,
    /// Drawing a token or recording a grant.
    Draw,
}

/// The error for a failed `step`: a missing privilege becomes
/// [`PgError::FenceTable`] with the SQL to fix it.
pub(crate) fn refusal(
    client: &mut Client,
    cause: postgres::Error,
    server: &str,
    step: Step,
) -> PgError {
    let refused = cause.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE)
        || cause.code() == Some(&SqlState::INVALID_SCHEMA_NAME);
    if !refused {
        return PgError::Query {
            context: "drawing the fencing token",
            server: server.to_owned(),
            cause,
        };
    }
    let privilege = match step {
        Step::Create => "CREATE on a schema in its search_path, to create the table",
        Step::Draw => {
            "SELECT, INSERT and UPDATE on withlock_fence, and SELECT, INSERT and DELETE on withlock_holds"
        }
    };
    PgError::FenceTable {
        server: server.to_owned(),
        privilege,
        sql: admin_sql(client),
    }
}

/// What an administrator runs to create the table for this role.
fn admin_sql(client: &mut Client) -> String {
    // quote_ident: the role name goes into SQL that people paste.
    let role: String = client
        .query_one("SELECT quote_ident(current_user::text)", &[])
        .map(|row| row.get(0))
        .unwrap_or_else(|_| "<role>".to_owned());
    format!(
        "{CREATE_TABLE}; {}; GRANT SELECT, INSERT, UPDATE ON withlock_fence TO {role}; \
         GRANT SELECT, INSERT, DELETE ON withlock_holds TO {role};",
        handover::CREATE_TABLE
    )
}
