//! `--max N` on the server (`withlock::pg::semaphore`): never more than N
//! holders, each on one slot; waiters served in arrival order; a place
//! freed by any holder goes to the next; plain holders of the name mix as
//! with local locks; a request that gives up leaves nothing behind.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use postgres::Client;
use withlock::pg::semaphore::{IntPair, MAX_SLOTS, gate_key, slot_key};
use withlock::pg::{PgLock, advisory_key};
use withlock::{Error, Lock, Mode};

use withlock_pg_testing::TestServer;

const BOUND: Duration = Duration::from_secs(30);
const NAME: &str = "pool";

fn semaphore(server: &TestServer, max: u32) -> PgLock {
    PgLock::new(&server.url(), NAME)
        .unwrap()
        .with_max(max)
        .unwrap()
}

/// Advisory locks on the two-int4 key `key` (pg_locks: objsubid 2):
/// (granted, waiting).
fn on_pair(client: &mut Client, key: IntPair) -> (i64, i64) {
    withlock_pg_testing::on_pair(client, (key.0, key.1))
}

/// Requests in the semaphore's line: the gate's holder and its waiters.
fn in_line(client: &mut Client) -> i64 {
    let (held, waiting) = on_pair(client, gate_key(NAME));
    held + waiting
}

/// Helper sessions waiting for slot 1..=max.
fn helpers_waiting(client: &mut Client, max: u32) -> i64 {
    (1..=max)
        .map(|i| on_pair(client, slot_key(NAME, i)).1)
        .sum()
}

/// Waiting advisory requests of any kind, and withlock sessions.
fn leftovers(client: &mut Client) -> (i64, i64) {
    let row = client
        .query_one(
            "SELECT (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted),
                    (SELECT count(*) FROM pg_stat_activity
                      WHERE application_name LIKE 'withlock %')",
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

#[test]
fn the_keys_are_the_documented_function() {
    let server = TestServer::start();
    let mut admin = server.client();
    let sql = "SELECT (k >> 32)::int4, (k << 32 >> 32)::int4 FROM (
                 SELECT ('x' || encode(substring(sha256(convert_to('withlock:' || $1, 'UTF8'))
                         FROM 1 FOR 8), 'hex'))::bit(64)::bigint
                        | (-9223372036854775808)::bigint AS k) AS key";
    for (suffix, key) in [
        ("pool#gate", gate_key(NAME)),
        ("pool#1", slot_key(NAME, 1)),
        ("pool#32", slot_key(NAME, 32)),
    ] {
        let row = admin.query_one(sql, &[&suffix]).unwrap();
        assert_eq!(IntPair(row.get(0), row.get(1)), key, "{suffix}");
    }
    assert_eq!(
        IntPair(
            (advisory_key("pool#1") >> 32) as i32,
            advisory_key("pool#1") as i32
        ),
        slot_key(NAME, 1)
    );
}

/// What lets slots live beside names: a bigint key and the two int4 keys
/// of its own halves are different locks.
#[test]
fn two_int4_keys_never_meet_bigint_keys() {
    let server = TestServer::start();
    let (mut a, mut b) = (server.client(), server.client());
    let key = advisory_key(NAME);
    let halves = IntPair((key >> 32) as i32, key as i32);
    let bigint: bool = a
        .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
        .unwrap()
        .get(0);
    let pair: bool = b
        .query_one(
            "SELECT pg_try_advisory_lock($1, $2)",
            &[&halves.0, &halves.1],
        )
        .unwrap()
        .get(0);
    assert!(bigint && pair, "both are free to take");
    assert_eq!(on_pair(&mut a, halves), (1, 0), "shown with objsubid 2");
}

#[test]
fn at_most_n_hold_at_once_each_on_one_slot() {
    let server = TestServer::start();
    let lock = semaphore(&server, 3);
    assert_eq!(lock.mode(), Mode::Shared);
    let mut admin = server.client();
    let mut guards: Vec<_> = (0..3).map(|_| lock.try_acquire().unwrap()).collect();
    for i in 1..=3 {
        assert_eq!(on_pair(&mut admin, slot_key(NAME, i)), (1, 0), "slot {i}");
    }
    assert_eq!(
        on_pair(&mut admin, gate_key(NAME)),
        (0, 0),
        "the gate is let go"
    );
    match lock.try_acquire() {
        Err(Error::Busy { holders, .. }) => {
            assert_eq!(holders.holders.len(), 3, "{holders:?}");
            assert!(holders.waiters.is_empty(), "{holders:?}");
        }
        other => panic!("a fourth got {other:?}"),
    }
    assert_eq!(lock.holders().unwrap().holders.len(), 3);
    guards.pop().unwrap().release().unwrap();
    let fourth = lock.try_acquire().expect("a place is free");
    assert_eq!(on_pair(&mut admin, slot_key(NAME, 3)), (1, 0));
    drop(fourth);
}

/// Also the arrival-order finding: printed with --nocapture.
#[test]
fn waiters_are_granted_in_arrival_order() {
    let server = TestServer::start();
    let lock = semaphore(&server, 2);
    let kept = lock.acquire().unwrap();
    let freed = lock.acquire().unwrap();
    let granted = Arc::new(Mutex::new(Vec::new()));
    let mut admin = server.client();
    let mut waiters = Vec::new();
    for i in 0..8 {
        let (lock, granted) = (lock.clone(), granted.clone());
        waiters.push(std::thread::spawn(move || {
            let guard = lock.acquire_timeout(BOUND).expect("granted");
            granted.lock().unwrap().push(i);
            guard.release().unwrap();
        }));
        // The next one arrives only once this one is in line: the first
        // with its helpers waiting on both slots, the others on the gate.
        server.wait_until(&format!("waiter {i} in line"), BOUND, || {
            in_line(&mut admin) == i + 1 && helpers_waiting(&mut admin, 2) == 2
        });
    }
    // One place, handed from each waiter to the next: the grant order.
    freed.release().unwrap();
    for waiter in waiters {
        waiter.join().unwrap();
    }
    let order = granted.lock().unwrap().clone();
    eprintln!("--max 2, 8 waiters arriving 0..7, granted in the order {order:?}");
    assert_eq!(order, (0..8).collect::<Vec<_>>());
    kept.release().unwrap();
}

/// The younger of two holders leaves first: the waiter gets its place at
/// once, while the older one still holds.
#[test]
fn a_place_freed_by_any_holder_goes_to_the_next_waiter() {
    let server = TestServer::start();
    let lock = semaphore(&server, 2);
    let older = lock.acquire().unwrap();
    let younger = lock.acquire().unwrap();
    let waiter = {
        let lock = lock.clone();
        std::thread::spawn(move || lock.acquire_timeout(BOUND).map(|g| g.backend_pid()))
    };
    let mut admin = server.client();
    server.wait_until("the waiter's helpers", BOUND, || {
        helpers_waiting(&mut admin, 2) == 2
    });
    younger.release().unwrap();
    waiter
        .join()
        .unwrap()
        .expect("granted while the older holds");
    server.wait_until("the helpers gone", BOUND, || {
        helpers_waiting(&mut admin, 2) == 0 && leftovers(&mut admin) == (0, 1)
    });
    older.release().unwrap();
}

#[test]
fn giving_up_leaves_nothing_waiting_and_holds_nothing() {
    let server = TestServer::start();
    let lock = semaphore(&server, 2);
    let _holders = [lock.acquire().unwrap(), lock.acquire().unwrap()];
    let mut admin = server.client();
    match lock.try_acquire() {
        Err(Error::Busy { holders, .. }) => assert_eq!(holders.holders.len(), 2),
        other => panic!("{other:?}"),
    }
    // One times out at the head of the line (with helpers), one behind it
    // on the gate.
    let head = {
        let lock = lock.clone();
        std::thread::spawn(move || lock.acquire_timeout(Duration::from_secs(10)))
    };
    server.wait_until("the head's helpers", BOUND, || {
        helpers_waiting(&mut admin, 2) == 2
    });
    match lock.acquire_timeout(Duration::from_millis(200)) {
        Err(Error::TimedOut { holders, .. }) => {
            assert_eq!(holders.holders.len(), 2, "{holders:?}");
            assert_eq!(holders.waiters.len(), 1, "the head: {holders:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(head.join().unwrap(), Err(Error::TimedOut { .. })));
    server.wait_until("only the two holders left", BOUND, || {
        leftovers(&mut admin) == (0, 2)
    });
    assert_eq!(on_pair(&mut admin, gate_key(NAME)), (0, 0));
    assert_eq!(lock.holders().unwrap().holders.len(), 2);
}

#[test]
fn semaphore_holders_and_an_exclusive_holder_exclude_each_other() {
    let server = TestServer::start();
    let sem = semaphore(&server, 3);
    let plain = PgLock::new(&server.url(), NAME).unwrap();
    let exclusive = plain.try_acquire().unwrap();
    assert!(matches!(sem.try_acquire(), Err(Error::Busy { .. })));
    exclusive.release().unwrap();
    let held = sem.try_acquire().unwrap();
    assert!(matches!(plain.try_acquire(), Err(Error::Busy { .. })));
    // Shared holders are neither counted nor kept out.
    let shared = plain.clone().with_mode(Mode::Shared);
    let _readers = [shared.try_acquire().unwrap(), shared.try_acquire().unwrap()];
    let _more = [sem.try_acquire().unwrap(), sem.try_acquire().unwrap()];
    assert!(matches!(sem.try_acquire(), Err(Error::Busy { .. })));
    drop(held);
}

#[test]
fn a_newcomer_does_not_pass_a_queued_exclusive_request() {
    let server = TestServer::start();
    let sem = semaphore(&server, 2);
    let holder = sem.acquire().unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let spawn = |lock: PgLock, tag: &'static str| {
        let order = order.clone();
        std::thread::spawn(move || {
            let guard = lock.acquire_timeout(BOUND).expect("granted");
            order.lock().unwrap().push(tag);
            guard.release().unwrap();
        })
    };
    let mut admin = server.client();
    let key = advisory_key(NAME);
    let writer = spawn(PgLock::new(&server.url(), NAME).unwrap(), "writer");
    server.wait_until("the writer waiting", BOUND, || {
        server.waiting_for(&mut admin, key) == 1
    });
    // One of two places is free, but the writer came first.
    assert!(matches!(sem.try_acquire(), Err(Error::Busy { .. })));
    let newcomer = spawn(sem.clone(), "newcomer");
    server.wait_until("the newcomer waiting", BOUND, || {
        server.waiting_for(&mut admin, key) == 2
    });
    holder.release().unwrap();
    writer.join().unwrap();
    newcomer.join().unwrap();
    assert_eq!(*order.lock().unwrap(), ["writer", "newcomer"]);
}

#[test]
fn max_is_capped() {
    let server = TestServer::start();
    let lock = PgLock::new(&server.url(), NAME).unwrap();
    assert!(lock.clone().with_max(MAX_SLOTS).is_ok());
    match lock.with_max(MAX_SLOTS + 1) {
        Err(e @ Error::Unsupported { .. }) => {
            assert!(e.to_string().contains(&MAX_SLOTS.to_string()), "{e}")
        }
        other => panic!("{other:?}"),
    }
}
