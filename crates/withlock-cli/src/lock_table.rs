//! `withlock --list`: the locks in a directory, for people (an aligned
//! table) and for scripts (JSON).
//!
//! The JSON is an array with one object per lock:
//! `{"name", "path", "state": "free"|"held"|"obstructed", "mode": "exclusive"|"shared"|"max"|null,
//! "holders": [..], "waiters": [..], "hidden": bool, "obstruction": string|null}`,
//! where `obstructed` is a lock nobody holds whose queue a foreign record
//! lock obstructs, and `obstruction` says what it is and who holds it (set
//! whether or not the lock is held); each holder and
//! waiter is `{"pid", "user", "command", "since"}`: `user` and `command` are
//! null when this user may not see them, `command` is the list of arguments
//! (unescaped), and `since` is the RFC 3339 UTC time the lock was taken (for
//! a waiter, when it began waiting), or null when the process did not say
//! (flock(1) does not). `hidden` is true when some holder or waiter could
//! not be seen in full. Waiters come in the order the kernel queues them.
//! A socket lock named after `--list` has its socket file as `path` (the
//! spec itself for `tcp:` and `abstract:`), and no waiters; a held TCP lock
//! has no holders that can be named: its `holders` is empty, its `mode`
//! `"exclusive"`, and `"unidentified"` says why (the table shows `?`);
//! `"unidentified"` is null for every other lock.
//!
//! Every lock also has `"server"`: null for a lock on this machine, and
//! `"host:port/dbname"` for a lock on a PostgreSQL server (`--url`), whose
//! `path` is then null. Every holder and waiter also has `"host"`: null on
//! this machine, the client's host name for a server lock (whose `user` is
//! the client's user, and `pid` its pid on that host); a server lock's
//! waiters come in the order they began waiting (`pg_locks.waitstart`).
//! The table shows a server lock's USER as `user@host`.
//!
//! Every lock also has `"exists"`: false when nothing is at its path (a
//! name never used here, or whose file was removed; the table says so in
//! COMMAND), null where there is no file to look for (`tcp:`, `abstract:`,
//! a server lock). A `*.lock` entry withlock would not lock (a symbolic
//! link, a directory, a FIFO...) has `"state": "skipped"` and `"skipped"`
//! saying what it is; it is not looked into, so it has no holders.
//!
//! A server lock's `pid`, `user`, `host` and `command` are only what the
//! session declares in its `application_name`, which any role can set.
//! Beside them each holder and waiter has what the server vouches for:
//! `"role"` (the role it logged in as) and `"client_addr"` (its IP
//! address, `"local"` for a Unix socket, null when this role may not see
//! it); both are null for a lock on this machine. The table then has ROLE
//! and CLIENT columns, and a note saying which columns are declared.
//!
//! A declared command has little room (63 bytes with the rest): it is
//! recorded as whole arguments and read back exactly, but may be cut.
//! `"command_truncated": true` says so (its last argument may be cut short
//! and more may have followed); the table ends such a command with `…`.
//!
//! Each holder and waiter also has `"mode"`: `"exclusive"`, `"shared"`,
//! or `"max"` for a place of a counting semaphore (`--max N`), also in the
//! table's MODE column; a lock held by `--max` holders has `"mode": "max"`.
//!
//! Each holder also has `"slot"`: which of the N places of `--max N` it
//! holds, 0 to N-1, null for any other holder and for waiters; and `"deadline"`: the RFC 3339 UTC time
//! its `--time-limit` runs out, null without one (a server lock's is on
//! the server's clock). The table has SLOT and DEADLINE columns when some
//! holder has one.
//!
//! A holder that is a hold (`withlock hold NAME... --until-exit PID`) has
//! `"follows": PID`, read from its command line (the table shows that
//! command); every other holder and waiter has `"follows": null`. A hold
//! of a server lock declares `hold --until-exit PID NAME...`, which the
//! server may cut short (63 bytes with the pid, user, host and grant
//! time): with very long user or host names its `follows` is null.

use std::io::Write;
use std::time::SystemTime;

use anstyle::{AnsiColor, Style};
use serde_json::{Value, json};
use withlock::{Found, Holder, LockStatus, human_duration};

const HELD: Style = AnsiColor::Yellow.on_default().bold();
const FREE: Style = AnsiColor::Green.on_default();
const HEADER: Style = Style::new().bold();

/// The JSON document for `locks`.
pub(crate) fn json(locks: &[LockStatus]) -> Value {
    Value::Array(locks.iter().map(lock_json).collect())
}

fn lock_json(lock: &LockStatus) -> Value {
    let mut doc = json!({
        "name": lock.name,
        "path": lock.server.is_none().then_some(&lock.path),
        "server": lock.server,
        "state": lock.state(),
        "exists": lock.exists(),
        "mode": lock.mode_label(),
        "holders": lock.holders.holders.iter().map(process_json).collect::<Vec<_>>(),
        "unidentified": lock.holders.unidentified,
        "waiters": lock.holders.waiters.iter().map(process_json).collect::<Vec<_>>(),
        "hidden": lock.holders.any_hidden(),
        "obstruction": lock.obstruction,
    });
    if let Found::Skipped(what) = &lock.found {
        doc["skipped"] = what.as_str().into();
    }
    doc
}

fn process_json(process: &Holder) -> Value {
    let command = process.command.as_ref().map(|args| {
        args.iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
    });
    let session = process.session.as_ref();
    json!({
        "pid": process.pid,
        "mode": process.mode_label(),
        "user": process.user,
        "host": process.host,
        "command": command,
        "command_truncated": process.command_truncated,
        "since": process.since.map(rfc3339),
        "slot": process.slot,
        "deadline": process.deadline.map(rfc3339),
        "role": session.and_then(|s| s.role.as_deref()),
        "client_addr": session.and_then(|s| s.client.as_json()),
        "follows": follows(process),
    })
}

/// The pid a hold follows, from its command line: `withlock [OPTIONS]
/// hold NAME... --until-exit PID`, or as a server lock's hold declares
/// it, `hold --until-exit PID NAME...`.
fn follows(process: &Holder) -> Option<i32> {
    let args = process.command.as_ref()?;
    if !args.iter().any(|a| a == b"hold") {
        return None;
    }
    let at = args.iter().position(|a| a == b"--until-exit")?;
    std::str::from_utf8(args.get(at + 1)?).ok()?.parse().ok()
}

/// `alice`, or for a process on another machine `alice@ci-3`.
fn user_cell(process: &Holder) -> String {
    let user = process
        .user
        .as_deref()
        .map_or_else(|| "?".to_owned(), withlock::escape::text);
    match &process.host {
        Some(host) => format!("{user}@{}", withlock::escape::text(host)),
        None => user,
    }
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_micros(time).to_string()
}

/// `2024-06-10T12:03:04Z (in 5m00s)`, or `(5.0s ago)` once past.
fn deadline_cell(deadline: SystemTime) -> String {
    let when = humantime::format_rfc3339_seconds(deadline);
    match deadline.duration_since(SystemTime::now()) {
        Ok(left) => format!("{when} (in {})", human_duration(left)),
        Err(past) => format!("{when} ({} ago)", human_duration(past.duration())),
    }
}

/// The server's view of a server lock's process: ROLE and CLIENT.
fn session_cells(process: &Holder) -> [String; 2] {
    let Some(session) = &process.session else {
        return Default::default();
    };
    let role = session
        .role
        .as_deref()
        .map_or_else(|| "?".to_owned(), withlock::escape::text);
    let client = session.client.as_json().unwrap_or("?");
    [role, withlock::escape::text(client)]
}

/// One line of the table, before alignment.
#[derive(Default)]
struct Row {
    name: String,
    state: &'static str,
    mode: String,
    pid: String,
    user: String,
    since: String,
    /// SLOT and DEADLINE, shown when some row has one.
    job: [String; 2],
    /// ROLE and CLIENT, for a server lock.
    session: [String; 2],
    command: String,
}

const HEADINGS: [&str; 6] = ["NAME", "STATE", "MODE", "PID", "USER", "SINCE"];
/// Added when some holder has a `--max` slot or a `--time-limit`.
const JOB_HEADINGS: [&str; 2] = ["SLOT", "DEADLINE"];
/// Added for server locks: what the server vouches for.
const SERVER_HEADINGS: [&str; 2] = ["ROLE", "CLIENT"];

/// Writes the table for `locks`; colour only where `out` allows it.
pub(crate) fn table(locks: &[LockStatus], out: &mut impl Write) -> std::io::Result<()> {
    let rows: Vec<Row> = locks.iter().flat_map(rows_of).collect();
    let on_server = locks.iter().any(|l| l.server.is_some());
    let job: Vec<usize> = (0..JOB_HEADINGS.len())
        .filter(|&i| rows.iter().any(|row| !row.job[i].is_empty()))
        .collect();
    let mut headings = HEADINGS.to_vec();
    headings.extend(job.iter().map(|&i| JOB_HEADINGS[i]));
    if on_server {
        headings.extend(SERVER_HEADINGS);
    }
    let cells = |row: &Row| {
        let mut cells = vec![
            row.name.clone(),
            row.state.to_owned(),
            row.mode.clone(),
            row.pid.clone(),
            row.user.clone(),
            row.since.clone(),
        ];
        cells.extend(job.iter().map(|&i| row.job[i].clone()));
        if on_server {
            cells.extend(row.session.iter().cloned());
        }
        cells
    };
    let mut widths: Vec<usize> = headings.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(cells(row)) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let heading: Vec<String> = headings
        .iter()
        .zip(&widths)
        .map(|(h, w)| format!("{h:<w$}"))
        .collect();
    writeln!(out, "{HEADER}{}  COMMAND{HEADER:#}", heading.join("  "))?;
    for row in &rows {
        let style = match row.state {
            "free" => FREE,
            "held" | "waiting" => HELD,
            _ => Style::new(),
        };
        let mut line = String::new();
        for (i, (cell, &width)) in cells(row).iter().zip(&widths).enumerate() {
            let padded = format!("{cell:<width$}  ");
            if i == 1 {
                line.push_str(&format!("{style}{padded}{style:#}"));
            } else {
                line.push_str(&padded);
            }
        }
        line.push_str(&row.command);
        writeln!(out, "{}", line.trim_end())?;
    }
    let declared = |l: &LockStatus| {
        let processes = l.holders.holders.iter().chain(&l.holders.waiters);
        l.server.is_some() && processes.count() > 0
    };
    if locks.iter().any(declared) {
        writeln!(
            out,
            "PID, USER, COMMAND and a holder's SINCE are what each session declares (any role \
             can set them); ROLE and CLIENT are the server's own record (? when hidden from \
             this role)"
        )?;
    }
    if locks.iter().any(|l| l.holders.any_hidden()) {
        writeln!(
            out,
            "some holders' user or command are hidden from this user (/proc mounted with \
             hidepid, or another PID namespace); run as root to see them"
        )?;
    }
    Ok(())
}

fn rows_of(lock: &LockStatus) -> Vec<Row> {
    let mut rows = process_rows(lock);
    if let Some(what) = &lock.obstruction {
        // A foreign lock on the queue: requests are served unordered.
        if lock.holders.is_empty() && lock.holders.waiters.is_empty() {
            rows.clear();
        }
        rows.push(Row {
            name: withlock::escape::text(&lock.name),
            state: "obstructed",
            command: format!("(its queue, by {})", withlock::escape::text(what)),
            ..Row::default()
        });
    }
    rows
}

fn process_rows(lock: &LockStatus) -> Vec<Row> {
    let name = withlock::escape::text(&lock.name);
    if lock.holders.is_empty() && lock.holders.waiters.is_empty() {
        let path = withlock::escape::text(&lock.path.to_string_lossy());
        let command = match &lock.found {
            Found::Nothing => format!("(nothing at {path}: never used, or removed)"),
            Found::Skipped(what) => format!("({path}: {what})"),
            Found::File | Found::NoFile => String::new(),
        };
        return vec![Row {
            name,
            state: lock.state(),
            command,
            ..Row::default()
        }];
    }
    if let (None, Some(reason)) = (lock.holders.holders.first(), &lock.holders.unidentified) {
        // Held, by whom the mechanism cannot tell (a TCP port).
        return vec![Row {
            name,
            state: "held",
            mode: "exclusive".into(),
            pid: "?".into(),
            user: "?".into(),
            command: format!("({})", withlock::escape::text(reason)),
            ..Row::default()
        }];
    }
    let holders = lock.holders.holders.iter().map(|h| ("held", h));
    let waiters = lock.holders.waiters.iter().map(|w| ("waiting", w));
    holders
        .chain(waiters)
        .map(|(state, process)| Row {
            name: name.clone(),
            state,
            mode: process.mode_label().to_owned(),
            pid: process.pid.to_string(),
            user: user_cell(process),
            since: process.since.map_or_else(String::new, |since| {
                let ago = SystemTime::now().duration_since(since).unwrap_or_default();
                format!(
                    "{} ({} ago)",
                    humantime::format_rfc3339_seconds(since),
                    human_duration(ago)
                )
            }),
            job: [
                process
                    .slot
                    .map_or_else(String::new, |slot| slot.to_string()),
                process.deadline.map_or_else(String::new, deadline_cell),
            ],
            session: session_cells(process),
            command: process.command_line().unwrap_or_else(|| {
                if process.running {
                    "?".into()
                } else {
                    "(exited)".into()
                }
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use withlock::{FileLock, Lock};

    #[test]
    fn json_has_the_documented_fields() {
        let dir = tempfile::tempdir().unwrap();
        let lock = FileLock::named("a", Some(dir.path())).unwrap();
        let _held = lock.try_acquire().unwrap();
        let locks = withlock::list(dir.path(), &[]).unwrap();
        let doc = json(&locks);
        let a = &doc[0];
        assert_eq!(a["name"], "a");
        assert_eq!(a["state"], "held");
        assert_eq!(a["mode"], "exclusive");
        assert_eq!(a["holders"][0]["pid"], std::process::id());
        assert!(a["holders"][0]["since"].as_str().unwrap().ends_with('Z'));
        assert_eq!(a["waiters"], json!([]));
        // On this machine nothing is declared: no server, no role, no cut.
        let held = &a["holders"][0];
        assert_eq!(held["mode"], "exclusive");
        assert_eq!(held["command_truncated"], false);
        assert_eq!(
            (&held["role"], &held["client_addr"]),
            (&Value::Null, &Value::Null)
        );
    }

    #[test]
    fn the_table_is_aligned_and_plain_without_a_terminal() {
        let dir = tempfile::tempdir().unwrap();
        drop(
            FileLock::named("idle", Some(dir.path()))
                .unwrap()
                .try_acquire()
                .unwrap(),
        );
        let lock = FileLock::named("b", Some(dir.path())).unwrap();
        let _held = lock.try_acquire().unwrap();
        let locks = withlock::list(dir.path(), &[]).unwrap();
        let mut out = anstream::StripStream::new(Vec::new());
        table(&locks, &mut out).unwrap();
        let text = String::from_utf8(out.into_inner()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NAME"), "{text}");
        let state_column = lines[0].find("STATE").unwrap();
        assert_eq!(lines[1].find("held"), Some(state_column), "{text}");
        assert_eq!(lines[2].find("free"), Some(state_column), "{text}");
        assert!(!text.contains('\x1b'));
    }
}
