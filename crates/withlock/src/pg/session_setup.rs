//! The settings a lock session is given as it opens, so that the server
//! never ends it on its own (`statement_timeout`, `lock_timeout`,
//! `idle_in_transaction_session_timeout` and, from PostgreSQL 14,
//! `idle_session_timeout` set to 0 with `set_config`, which poolers do not
//! refuse as they refuse startup options), and what the pooler check
//! reads of the session meanwhile (see `pooler.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use postgres::{Client, SimpleQueryMessage};

use crate::pg::pooler::{self, Observation};

/// Per-process counter making session tokens unique.
static SESSIONS: AtomicU64 = AtomicU64::new(0);

/// A token no other session carries: this process, a count, the time.
fn session_token() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let count = SESSIONS.fetch_add(1, Ordering::Relaxed);
    format!("{}.{count}.{nanos}", std::process::id())
}

/// The session settings and the pooler check's first look, in one round
/// trip (a simple query: no separate prepare). Target list entries are
/// evaluated in order, so the marker is read before it is set.
/// `idle_session_timeout` exists from PostgreSQL 14 on: on older servers
/// the subquery finds no row and sets nothing.
fn settings_sql(token: &str) -> String {
    format!(
        "SELECT pg_backend_pid(), \
                current_setting('{marker}', true), \
                set_config('{marker}', '{token}', false), \
                (SELECT source FROM pg_settings WHERE name = 'application_name'), \
                set_config('statement_timeout', '0', false), \
                set_config('lock_timeout', '0', false), \
                set_config('idle_in_transaction_session_timeout', '0', false), \
                (SELECT set_config(name, '0', false) FROM pg_settings \
                 WHERE name = 'idle_session_timeout')",
        marker = pooler::MARKER
    )
}

/// The values of the SQL expressions run with the second look, as text
/// (None for NULL), in the order given.
pub(crate) type Values = Vec<Option<String>>;

/// Sets the session up and looks at it twice, in two round trips; with
/// the second look, in the same statement, also evaluates the SQL
/// expressions `then` (evaluated in order), but only in a session that
/// the first look found direct (a client-set `application_name`, no
/// inherited marker) and that is still the same server session with its
/// marker: never in a session a pooler may hand to another client. Returns
/// their values as text, or None if they were not run: the first look
/// called for a closer look (the pooler check decides), or the server
/// refused them with an error that leaves the session usable (then the
/// second look is made again without them).
pub(crate) fn set_up_then(
    client: &mut Client,
    then: &[String],
) -> Result<(Observation, Option<Values>), postgres::Error> {
    let token = session_token();
    let row = first_row(client.simple_query(&settings_sql(&token))?);
    let pid: i32 = column(&row, 0).unwrap_or_default().parse().unwrap_or(0);
    let inherited = column(&row, 1).map(str::to_owned);
    let application_name_source = column(&row, 3).map(str::to_owned);
    let direct = inherited.as_deref().is_none_or(str::is_empty)
        && application_name_source.as_deref() == Some("client");
    let (later, done) = match direct && !then.is_empty() {
        true => match read_session_then(client, pid, &token, then) {
            Ok((later, done)) => (later, Some(done)),
            Err(e) if e.as_db_error().is_some_and(|db| db.severity() == "ERROR") => {
                (read_session(client)?, None)
            }
            Err(e) => return Err(e),
        },
        false => (read_session(client)?, None),
    };
    let observation = Observation {
        pid,
        inherited,
        application_name_source,
        token,
        later,
    };
    // A value only if the guard held, which is only if the check passes.
    let done = done.filter(|values| values.iter().any(Option::is_some));
    Ok((observation, done))
}

/// [`read_session`] that also evaluates `then` if this is still the
/// server session `pid` carrying `token`.
fn read_session_then(
    client: &mut Client,
    pid: i32,
    token: &str,
    then: &[String],
) -> Result<(pooler::Seen, Values), postgres::Error> {
    let guarded: Vec<String> = then
        .iter()
        .map(|expression| {
            format!(
                "CASE WHEN pg_catalog.pg_backend_pid() = {pid} AND \
                 pg_catalog.current_setting('{marker}', true) = '{token}' \
                 THEN ({expression})::text END",
                marker = pooler::MARKER
            )
        })
        .collect();
    let sql = format!(
        "SELECT pg_catalog.pg_backend_pid(), pg_catalog.current_setting('{}', true), {}",
        pooler::MARKER,
        guarded.join(", ")
    );
    let row = first_row(client.simple_query(&sql)?);
    let seen = pooler::Seen {
        pid: column(&row, 0).unwrap_or_default().parse().unwrap_or(0),
        marker: column(&row, 1).map(str::to_owned),
    };
    let values = (0..then.len())
        .map(|i| column(&row, i + 2).map(str::to_owned))
        .collect();
    Ok((seen, values))
}

/// This session's backend pid and marker.
pub(crate) fn read_session(client: &mut Client) -> Result<pooler::Seen, postgres::Error> {
    let sql = format!(
        "SELECT pg_backend_pid(), current_setting('{}', true)",
        pooler::MARKER
    );
    let row = first_row(client.simple_query(&sql)?);
    Ok(pooler::Seen {
        pid: column(&row, 0).unwrap_or_default().parse().unwrap_or(0),
        marker: column(&row, 1).map(str::to_owned),
    })
}

fn first_row(messages: Vec<SimpleQueryMessage>) -> Vec<Option<String>> {
    messages
        .into_iter()
        .find_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .unwrap_or_default()
}

fn column(row: &[Option<String>], i: usize) -> Option<&str> {
    row.get(i).and_then(|value| value.as_deref())
}
