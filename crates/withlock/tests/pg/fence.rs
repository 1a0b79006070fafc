//! Fencing tokens: every grant of a name, exclusive or shared, draws a
//! higher token from withlock's state (schema `withlock`), which is
//! durable, starts at the server clock, is safe to create from several
//! clients at once, and is refused with the SQL to fix it when the role may
//! not create or use it. Also the server-wide listing, which takes its
//! names from `withlock.fence`.

use std::sync::{Arc, Barrier};
use std::time::{SystemTime, UNIX_EPOCH};

use withlock::pg::{PgError, PgLock, fence};
use withlock::{Lock, Mode};

use withlock_pg_testing::TestServer;

const BOUND: std::time::Duration = std::time::Duration::from_secs(30);

/// The token of one exclusive grant of `name`, released at once.
fn one_grant(server: &TestServer, name: &str) -> i64 {
    let guard = PgLock::new(&server.url(), name)
        .unwrap()
        .try_acquire()
        .unwrap();
    let token = guard.fence();
    guard.release().unwrap();
    token
}

/// `url` with another role.
fn as_role(server: &TestServer, role: &str) -> String {
    server
        .url()
        .replace("postgres://postgres@", &format!("postgres://{role}@"))
}

/// The clock now, in microseconds since the epoch: what the token
/// sequence starts from when the state is created.
pub(crate) fn micros_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

#[test]
fn every_grant_exclusive_or_shared_draws_a_higher_token() {
    let server = TestServer::start();
    let before = micros_now();
    let first = one_grant(&server, "deploy");
    let after = micros_now();
    // The server runs on this machine, with this clock.
    assert!(
        (before..=after).contains(&first),
        "the first token {first} comes from the clock at the state's creation ({before}..{after})"
    );
    let second = one_grant(&server, "deploy");
    assert!(second > first, "{first} then {second}");
    let shared = PgLock::new(&server.url(), "deploy")
        .unwrap()
        .with_mode(Mode::Shared);
    let a = shared.try_acquire().unwrap();
    let b = shared.try_acquire().unwrap();
    assert!(a.fence() > second, "{second} then {}", a.fence());
    assert!(b.fence() > a.fence(), "each sharer its own token");
    let b_token = b.fence();
    drop((a, b));
    let third = one_grant(&server, "deploy");
    assert!(third > b_token, "{b_token} then {third}");
    // One sequence for every name: another name's token is higher too.
    assert!(one_grant(&server, "other") > third);
}

#[test]
fn tokens_keep_growing_across_a_server_restart() {
    let server = TestServer::start();
    one_grant(&server, "deploy");
    let before = one_grant(&server, "deploy");
    server.restart();
    let after = one_grant(&server, "deploy");
    assert!(after > before, "{before} before the restart, {after} after");
}

#[test]
fn tokens_keep_growing_across_a_server_crash() {
    let server = TestServer::start();
    let lock = PgLock::new(&server.url(), "deploy")
        .unwrap()
        .with_grace(std::time::Duration::ZERO);
    let mut before = 0;
    // More grants than a sequence logs ahead (32), so that recovery must
    // replay a logged value, not just the first one. The test server
    // commits asynchronously: the grant's statement must not.
    for _ in 0..40 {
        let guard = lock.try_acquire().unwrap();
        before = guard.fence();
        guard.release().unwrap();
    }
    server.crash_and_recover();
    // An asynchronous release may be lost in the crash, which costs a
    // pause, never a token.
    let after = lock.acquire_timeout(BOUND).unwrap().fence();
    assert!(after > before, "{before} before the crash, {after} after");
}

#[test]
fn several_clients_creating_the_table_at_once_all_get_distinct_tokens() {
    let server = TestServer::start();
    let clients = 8;
    let start = Arc::new(Barrier::new(clients));
    let lock = PgLock::new(&server.url(), "deploy")
        .unwrap()
        .with_mode(Mode::Shared);
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (lock, start) = (lock.clone(), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                lock.try_acquire().map(|guard| guard.fence())
            })
        })
        .collect();
    let mut tokens: Vec<i64> = threads
        .into_iter()
        .map(|t| t.join().unwrap().expect("every sharer gets a token"))
        .collect();
    tokens.sort();
    // Distinct, and drawn one after another from the one sequence.
    let first = tokens[0];
    assert_eq!(tokens, (first..first + clients as i64).collect::<Vec<_>>());
}

#[test]
fn a_role_that_may_not_create_or_use_the_state_is_told_the_sql_to_fix_it() {
    let server = TestServer::start();
    let mut admin = server.client();
    // Like every role but the database's owner: no CREATE on the database.
    admin.batch_execute("CREATE ROLE bob LOGIN").unwrap();
    let as_bob = PgLock::new(&as_role(&server, "bob"), "deploy").unwrap();
    let refusal = |lock: &PgLock| match lock.try_acquire() {
        Err(err)
            if matches!(
                err.downcast_ref::<PgError>(),
                Some(PgError::FenceTable { .. })
            ) =>
        {
            err.to_string()
        }
        other => panic!("expected FenceTable, got {other:?}"),
    };
    let no_state = refusal(&as_bob);
    assert!(no_state.contains("CREATE on the database"), "{no_state}");
    assert!(no_state.contains("CREATE SCHEMA withlock;"), "{no_state}");
    assert_eq!(no_state.lines().count(), 1, "{no_state}");
    // The lock was given back, and nothing was created.
    assert!(as_bob.pg_holders().unwrap().is_empty());
    let created: bool = admin
        .query_one("SELECT to_regnamespace('withlock') IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert!(!created);

    // What the message says an administrator runs, run as it says.
    let sql = no_state
        .split("as the database's owner or a superuser, with: ")
        .nth(1)
        .unwrap();
    admin.batch_execute(sql).unwrap();
    let first = as_bob.try_acquire().unwrap().fence();

    // An administrator who took the schema's USAGE back from every role.
    admin
        .batch_execute("REVOKE USAGE ON SCHEMA withlock FROM PUBLIC")
        .unwrap();
    let no_usage = refusal(&as_bob);
    assert!(
        no_usage.contains("USAGE on the schema withlock"),
        "{no_usage}"
    );
    assert!(as_bob.pg_holders().unwrap().is_empty());
    let sql = no_usage.split("can grant them with: ").nth(1).unwrap();
    admin.batch_execute(sql).unwrap();
    assert!(as_bob.try_acquire().unwrap().fence() > first);
}

#[test]
fn the_table_is_what_the_docs_say() {
    let server = TestServer::start();
    let token = one_grant(&server, "deploy");
    let mut admin = server.client();
    let row = admin
        .query_one(
            &format!("SELECT key, name, token FROM {}", fence::FENCE_TABLE),
            &[],
        )
        .unwrap();
    let (key, name, last): (i64, String, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        (key, name.as_str(), last),
        (withlock::pg::advisory_key("deploy"), "deploy", token)
    );
}

#[test]
fn the_server_listing_names_held_waited_for_and_free_locks() {
    let server = TestServer::start();
    one_grant(&server, "idle");
    let held = PgLock::new(&server.url(), "busy").unwrap();
    let guard = held.try_acquire().unwrap();
    let busy_token = guard.fence();
    // A withlock waiter for a name never granted (another program holds
    // its key), so the table has no name for it: shown by its key.
    let never = PgLock::new(&server.url(), "never").unwrap();
    let mut admin = server.client();
    admin
        .execute("SELECT pg_advisory_lock($1)", &[&never.key()])
        .unwrap();
    let waiter = std::thread::spawn(move || never.acquire().map(|g| g.fence()));
    let key = withlock::pg::advisory_key("never");
    server.wait_until("the waiter in pg_locks", BOUND, || {
        server.waiting_for(&mut admin, key) == 1
    });
    let listed = withlock::pg::list(&server.url(), &[]).unwrap();
    let names: Vec<&str> = listed.iter().map(|l| l.name.as_str()).collect();
    let hex = format!("0x{:016x}", key as u64);
    assert_eq!(names, [hex.as_str(), "busy", "idle"]);
    let unnamed = &listed[0].holders;
    assert_eq!((unnamed.holders.len(), unnamed.waiters.len()), (1, 1));
    assert_eq!(unnamed.waiters[0].pid, std::process::id() as i32);
    let listed = &listed[1..];
    assert!(listed.iter().all(|l| l.server.is_some()));
    assert!(listed[1].holders.is_empty(), "idle is free");
    let holder = &listed[0].holders.holders[0];
    assert_eq!(holder.pid, std::process::id() as i32);
    assert!(holder.host.is_some() && holder.since.is_some());
    assert!(!holder.is_hidden());
    // By name, in the order given, free or not.
    let by_name = withlock::pg::list(&server.url(), &["nothing".into(), "busy".into()]).unwrap();
    assert!(by_name[0].holders.is_empty());
    assert_eq!(by_name[1].holders.holders.len(), 1);
    guard.release().unwrap();
    admin
        .execute("SELECT pg_advisory_unlock($1)", &[&key])
        .unwrap();
    assert!(waiter.join().unwrap().unwrap() > busy_token);
}
