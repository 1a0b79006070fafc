//! withlock's state on a server (schema `withlock`): one for every role,
//! whatever its `search_path`; written by other roles only through its
//! functions; refused when damaged rather than started over; and a
//! hand-over pause bounded whatever a record says, counted against `-n`
//! and `-w`.

use std::time::Duration;

use postgres::{Client, NoTls};
use withlock::pg::handover::{MAX_GRACE, MAX_PAUSE};
use withlock::pg::{PgError, PgLock, advisory_key};
use withlock::{Error, Holders, Lock, human_duration};

use withlock_pg_testing::TestServer;

const BOUND: Duration = Duration::from_secs(30);

/// The URL of database `db` as `role`.
fn url(server: &TestServer, role: &str, db: &str) -> String {
    format!("postgres://{role}@127.0.0.1:{}/{db}", server.port())
}

/// The token of one grant of `lock`, released at once.
fn one_grant(lock: &PgLock) -> i64 {
    let guard = lock.try_acquire().unwrap();
    let token = guard.fence();
    guard.release().unwrap();
    token
}

/// Terminates the session `pid` and waits until it is gone.
fn terminate(server: &TestServer, admin: &mut Client, pid: i32) {
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    server.wait_until("the terminated session to end", BOUND, || {
        let left: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                &[&pid],
            )
            .unwrap()
            .get(0);
        left == 0
    });
}
/// The message of a grant refused because withlock's state is damaged or
/// untrusted; any other outcome fails the test.
fn refused_as_damaged<T: std::fmt::Debug>(outcome: withlock::Result<T>) -> String {
    match outcome {
        Err(err)
            if matches!(
                err.downcast_ref::<PgError>(),
                Some(PgError::StateDamaged { .. })
            ) =>
        {
            err.to_string()
        }
        other => panic!("expected StateDamaged, got {other:?}"),
    }
}

/// Why a grant that would pause was refused.
fn handing_over(holders: &Holders) -> &str {
    holders
        .unidentified
        .as_deref()
        .filter(|why| why.contains("ended without releasing"))
        .unwrap_or_else(|| panic!("not a hand-over: {holders:?}"))
}

#[test]
fn roles_with_schemas_of_their_own_share_tokens_and_hand_over_records() {
    let server = TestServer::start();
    let mut admin = server.client();
    admin
        .batch_execute("CREATE ROLE ci LOGIN; CREATE ROLE ops LOGIN")
        .unwrap();
    admin.batch_execute("CREATE DATABASE app OWNER ci").unwrap();
    // What PostgreSQL's documentation recommends: a schema per user, first
    // in the default search_path ("$user", public).
    let mut app = Client::connect(&url(&server, "postgres", "app"), NoTls).unwrap();
    app.batch_execute("CREATE SCHEMA AUTHORIZATION ci; CREATE SCHEMA AUTHORIZATION ops")
        .unwrap();
    let ci = PgLock::new(&url(&server, "ci", "app"), "x")
        .unwrap()
        .with_grace(Duration::ZERO);
    let ops = PgLock::new(&url(&server, "ops", "app"), "x").unwrap();

    let by_ci = one_grant(&ci);
    let by_ops = one_grant(&ops);
    assert!(by_ops > by_ci, "ci got {by_ci}, then ops {by_ops}");
    let private: i64 = app
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relname LIKE 'withlock%' AND n.nspname <> 'withlock'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(private, 0, "no copy of the state in a role's own schema");

    // ci's session ends without releasing while its command may still run:
    // ops must not start at once.
    let held = ci.try_acquire().unwrap();
    terminate(&server, &mut app, held.backend_pid());
    match ops.try_acquire() {
        Err(Error::Busy { holders, .. }) => {
            let why = handing_over(&holders);
            assert!(why.contains("usable in"), "{why}");
        }
        other => panic!("ops started while ci's command may still run: {other:?}"),
    }
    // Then, the pause over, ops holds it, with a higher token, and the old
    // record is gone.
    let guard = ops.acquire_timeout(BOUND).unwrap();
    assert!(guard.fence() > held.fence());
    let records: i64 = app
        .query_one("SELECT count(*) FROM withlock.holds", &[])
        .unwrap()
        .get(0);
    assert_eq!(records, 1, "only ops's own record is left");
    drop(held);
}

#[test]
fn a_state_with_a_table_dropped_is_refused_not_started_over() {
    let server = TestServer::start();
    let x = PgLock::new(&server.url(), "x").unwrap();
    let y = PgLock::new(&server.url(), "y").unwrap();
    let before = one_grant(&x);
    let held = x.try_acquire().unwrap();
    let mut admin = server.client();
    admin.batch_execute("DROP TABLE withlock.holds").unwrap();
    let text = refused_as_damaged(y.try_acquire());
    assert!(text.contains("withlock.holds missing"), "{text}");
    assert!(text.contains("DROP SCHEMA withlock CASCADE"), "{text}");
    // Given back, and nothing recreated.
    assert!(y.pg_holders().unwrap().is_empty());
    let recreated: bool = admin
        .query_one("SELECT to_regclass('withlock.holds') IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert!(!recreated);
    drop(held);

    // What the message says an administrator does: the state comes back
    // with tokens above every earlier one.
    admin.batch_execute("DROP SCHEMA withlock CASCADE").unwrap();
    let after = one_grant(&x);
    assert!(after > before, "{before} before, {after} after");
}

#[test]
fn a_token_sequence_set_back_is_refused() {
    let server = TestServer::start();
    let x = PgLock::new(&server.url(), "x").unwrap();
    one_grant(&x);
    let mut admin = server.client();
    admin
        .batch_execute("SELECT setval('withlock.tokens', 1)")
        .unwrap();
    let text = refused_as_damaged(x.try_acquire());
    assert!(text.contains("set back"), "{text}");
    assert!(x.pg_holders().unwrap().is_empty());
}

#[test]
fn only_the_states_owner_can_empty_it_and_tokens_survive_emptying() {
    let server = TestServer::start();
    let mut admin = server.client();
    admin.batch_execute("CREATE ROLE bob LOGIN").unwrap();
    let x = PgLock::new(&server.url(), "x").unwrap();
    let before = one_grant(&x);
    let held = x.try_acquire().unwrap();
    let mut bob = Client::connect(&url(&server, "bob", "postgres"), NoTls).unwrap();
    for sql in [
        "DELETE FROM withlock.holds",
        "DELETE FROM withlock.fence",
        "UPDATE withlock.fence SET token = 0",
        "INSERT INTO withlock.holds VALUES (1, 1, 1, 1, true)",
        "SELECT setval('withlock.tokens', 1)",
        "DROP TABLE withlock.holds",
        "DROP SCHEMA withlock CASCADE",
    ] {
        let err = bob.batch_execute(sql).expect_err(sql);
        assert_eq!(
            err.code(),
            Some(&postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {err}"
        );
    }
    // The functions erase nothing for a session that does not hold the
    // lock.
    bob.execute(
        "SELECT withlock.forget_grants($1, $2)",
        &[&advisory_key("x"), &vec![held.fence()]],
    )
    .unwrap();
    let records: i64 = admin
        .query_one("SELECT count(*) FROM withlock.holds", &[])
        .unwrap()
        .get(0);
    assert_eq!(records, 1, "the holder's record is still there");
    held.release().unwrap();

    // The owner (here a superuser) can empty the tables; the tokens still
    // grow, since they come from the sequence.
    admin
        .batch_execute("DELETE FROM withlock.fence; DELETE FROM withlock.holds")
        .unwrap();
    assert!(one_grant(&x) > before);
}

#[test]
fn a_poisoned_grace_is_bounded_and_counted_against_no_wait_and_a_limit() {
    let server = TestServer::start();
    let x = PgLock::new(&server.url(), "x").unwrap();
    one_grant(&x);
    // A grace beyond the maximum is recorded as the maximum.
    let huge = x.clone().with_grace(Duration::from_secs(1_000_000_000));
    let held = huge.try_acquire().unwrap();
    let mut admin = server.client();
    let recorded: i64 = admin
        .query_one("SELECT grace_ms FROM withlock.holds", &[])
        .unwrap()
        .get(0);
    assert_eq!(recorded, MAX_GRACE.as_millis() as i64);
    held.release().unwrap();

    // A record that says more (written by the state's owner) counts as the
    // maximum too; a session that ended without releasing.
    admin
        .execute(
            "INSERT INTO withlock.holds (key, token, backend_pid, grace_ms, exclusive) \
             VALUES ($1, 1, 0, 1000000000000, true)",
            &[&x.key()],
        )
        .unwrap();
    match x.try_acquire() {
        Err(Error::Busy { holders, .. }) => {
            let why = handing_over(&holders);
            assert!(
                why.ends_with(&format!("usable in {}", human_duration(MAX_PAUSE))),
                "{why}"
            );
        }
        other => panic!("-n must fail at once: {other:?}"),
    }
    match x.acquire_timeout(Duration::from_secs(2)) {
        Err(Error::TimedOut { holders, .. }) => {
            handing_over(&holders);
        }
        other => panic!("-w must count the pause: {other:?}"),
    }
    // Nothing was left held, and the refusals left no record of their own.
    assert!(x.pg_holders().unwrap().is_empty());
    let records: i64 = admin
        .query_one("SELECT count(*) FROM withlock.holds", &[])
        .unwrap()
        .get(0);
    assert_eq!(records, 1);
}

#[test]
fn a_schema_withlock_made_by_another_role_is_refused_and_never_run() {
    let server = TestServer::start();
    let mut admin = server.client();
    admin
        .batch_execute("CREATE ROLE mallory LOGIN; GRANT CREATE ON DATABASE postgres TO mallory")
        .unwrap();
    // mallory makes the state first, with a function that would run with
    // the privileges of whoever calls it.
    let mut mallory = Client::connect(&url(&server, "mallory", "postgres"), NoTls).unwrap();
    mallory
        .batch_execute(
            "CREATE SCHEMA withlock; GRANT USAGE ON SCHEMA withlock TO PUBLIC; \
             CREATE TABLE withlock.ran (who text); GRANT INSERT ON withlock.ran TO PUBLIC; \
             CREATE FUNCTION withlock.record_grant(p_key bigint, p_name text, p_grace_ms bigint, \
             p_exclusive boolean, OUT o_token bigint, OUT o_granted_at timestamptz, \
             OUT o_granted_ms bigint, OUT o_unreleased bigint[], OUT o_pause_ms bigint) \
             LANGUAGE sql AS $$ INSERT INTO withlock.ran VALUES (current_user) \
             RETURNING 1::bigint, now(), 0::bigint, '{}'::bigint[], 0::bigint $$",
        )
        .unwrap();
    let x = PgLock::new(&server.url(), "x").unwrap();
    let text = refused_as_damaged(x.try_acquire());
    assert!(text.contains("role mallory"), "{text}");
    let ran: i64 = admin
        .query_one("SELECT count(*) FROM withlock.ran", &[])
        .unwrap()
        .get(0);
    assert_eq!(ran, 0, "mallory's function never ran");
    assert!(x.pg_holders().unwrap().is_empty());
    // The listing does not read mallory's tables either.
    assert!(withlock::pg::list(&server.url(), &[]).unwrap().is_empty());
}

#[test]
fn records_of_holders_stopped_long_ago_are_erased_without_a_pause() {
    let server = TestServer::start();
    let x = PgLock::new(&server.url(), "x").unwrap();
    one_grant(&x);
    // A holder that ended without releasing, first seen so an hour and a
    // half ago (by a request that would not wait): surely stopped by now.
    let mut admin = server.client();
    admin
        .execute(
            "INSERT INTO withlock.holds (key, token, backend_pid, grace_ms, exclusive, seen_ended_at) \
             VALUES ($1, 1, 0, 10000, true, now() - interval '90 minutes')",
            &[&x.key()],
        )
        .unwrap();
    let guard = x.try_acquire().expect("no pause for it");
    let records: Vec<i64> = admin
        .query("SELECT token FROM withlock.holds", &[])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(records, [guard.fence()], "only the holder's own record");
}
