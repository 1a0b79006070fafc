//! Fencing tokens: a number that grows with every grant of a lock name,
//! so that a storage system can refuse the writes of a holder that has
//! lost its lock (paused, partitioned) once a newer holder has written.
//!
//! Tokens come from the sequence `withlock.tokens` of withlock's state
//! ([`crate::pg::state`]: one fixed schema, shared by every role whatever
//! its `search_path`, created on first use), and each name's last token
//! and grant time are kept in `withlock.fence (key, name, token,
//! granted_at)`.
//!
//! - **When.** Right after the grant, on the holding session, in
//!   autocommit, through `withlock.record_grant`. The statement commits
//!   (with `synchronous_commit` on) before its reply is read, so a token
//!   handed out is durable: it keeps growing across server restarts and
//!   crashes.
//! - **Values.** One sequence for every name, started at the server clock
//!   in microseconds when the state was created: a name's tokens grow, but
//!   not by one, and its first is not 1. Deleting rows does not set the
//!   sequence back; a state dropped whole and created again starts from
//!   the clock again, above every earlier token. A token that would not be
//!   above the name's last one (the sequence set back by its owner) is
//!   refused: [`PgError::StateDamaged`].
//! - **Every grant**, shared ones too: each shared holder gets its own
//!   token, higher than every token granted before it. An exclusive
//!   holder's token is higher than every earlier holder's, so a store that
//!   keeps the highest token it has seen and refuses lower ones refuses
//!   every stale holder. Concurrent shared holders' tokens differ, so such
//!   a store would also refuse an older sharer once a newer one wrote:
//!   fence shared holders only where that is wanted.
//! - **Privileges.** The first grant on a database creates the state and
//!   needs `CREATE` on the database; later grants need only what every
//!   role has (`USAGE` on the schema, `EXECUTE` on its functions). Without
//!   them the lock is released and [`PgError::FenceTable`] says which
//!   privilege is missing and the SQL an administrator can run.
//!
//! The same statement writes the grant time into the session's
//! `application_name` (see [`crate::pg::Identity`]), which is where other
//! sessions read each holder's "since"; the table's `granted_at` serves
//! `--list` for an exclusive holder whose name was cut too short to keep
//! it. Every function and operator in it is named with its schema: the
//! session's `search_path` chooses none of them.

use std::sync::LazyLock;
use std::time::SystemTime;

use postgres::Client;
use postgres::types::Type;

use crate::pg::error::PgError;
use crate::pg::handover::{Holding, Unreleased};
use crate::pg::identity::Identity;
use crate::pg::state::{self, Failure};

/// The table of each name's last token, as other sessions read it.
pub const FENCE_TABLE: &str = "withlock.fence";

/// Records the grant of `$1` (key) named `$2` (grace `$5` ms, exclusive
/// `$6`), drawing its token and returning the earlier records to pause
/// for (see [`crate::pg::handover`]); also writes the grant time into
/// `application_name` (`$3` || ms || `$4`, cut to 63 bytes) and makes the
/// commit synchronous, all in one round trip. The function is called only
/// if the state is trusted ([`state::TRUSTED`]): the lateral call runs once
/// per row of `trusted`, which has none otherwise.
static NEXT_TOKEN: LazyLock<String> = LazyLock::new(|| {
    format!(
        "\
SELECT g.o_token, g.o_granted_at,
       pg_catalog.set_config('application_name',
                             pg_catalog.\"left\"(pg_catalog.concat($3, g.o_granted_ms, $4), 63),
                             false),
       pg_catalog.set_config('synchronous_commit', 'on', true),
       g.o_unreleased, g.o_pause_ms
  FROM (SELECT $1::pg_catalog.int8 AS key WHERE {}) trusted,
       LATERAL withlock.record_grant(trusted.key, $2, $5, $6) g",
        state::TRUSTED
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
/// the grant as `holding` (see [`crate::pg::handover`]); creates withlock's state if
/// it was never there. `server` names the server in errors.
pub fn next(
    client: &mut Client,
    key: i64,
    name: &str,
    identity: &Identity,
    holding: Holding,
    server: &str,
) -> Result<Grant, PgError> {
    let failed = match draw(client, key, name, identity, holding) {
        Ok(Some(grant)) => return Ok(grant),
        Ok(None) => return Err(state::untrusted(client, server)),
        Err(cause) => state::diagnose(client, cause, server),
    };
    match failed {
        Failure::Absent => state::create(client, server)?,
        Failure::Refused(err) => return Err(err),
    }
    match draw(client, key, name, identity, holding) {
        Ok(Some(grant)) => Ok(grant),
        Ok(None) => Err(state::untrusted(client, server)),
        Err(cause) => Err(match state::diagnose(client, cause, server) {
            Failure::Refused(err) => err,
            Failure::Absent => PgError::StateDamaged {
                server: server.to_owned(),
                what: "the schema withlock vanished as it was created".into(),
            },
        }),
    }
}

fn draw(
    client: &mut Client,
    key: i64,
    name: &str,
    identity: &Identity,
    holding: Holding,
) -> Result<Option<Grant>, postgres::Error> {
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
    Ok(rows.first().map(|row| Grant {
        token: row.get(0),
        granted_at: row.get(1),
        unreleased: Unreleased::new(row.get(4), row.get(5)),
    }))
}
