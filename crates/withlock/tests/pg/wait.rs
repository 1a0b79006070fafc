//! One request, one answer, as for file and socket locks: against a held
//! lock, `Wait::NoWait` and `Wait::For` zero are busy, a `Wait::For` that
//! runs out is timed out, and `Wait::Forever` waits in the server and gets
//! the lock when it is released; for a plain lock and a semaphore alike.
//! A set whose deadline passed before its PostgreSQL lock is timed out too.
//! A wait cancelled from another thread ends on the server.

use std::time::Duration;

use withlock::pg::PgLock;
use withlock::pg::semaphore::slot_key;
use withlock::{AnyLock, Error, FileLock, Lock, LockSet, Wait, WaitCancel};

use withlock_pg_testing::{TestServer, on_pair};

const BOUND: Duration = Duration::from_secs(30);

/// The three refusals, then a wait without end that `waiting` sees in
/// `pg_locks` before the holder lets go.
fn answers_the_same(server: &TestServer, lock: &PgLock, waiting: impl FnMut() -> bool) {
    let held = lock.acquire().unwrap();
    for wait in [Wait::NoWait, Wait::For(Duration::ZERO)] {
        match lock.acquire_with(wait, &mut withlock::NoHooks) {
            Err(Error::Busy { holders, .. }) => assert_eq!(holders.holders.len(), 1),
            other => panic!("{wait:?}: expected Busy, got {other:?}"),
        }
    }
    match lock.acquire_timeout(Duration::from_millis(100)) {
        Err(Error::TimedOut { holders, .. }) => assert_eq!(holders.holders.len(), 1),
        other => panic!("expected TimedOut, got {other:?}"),
    }
    let waiter = {
        let lock = lock.clone();
        std::thread::spawn(move || lock.acquire().map(|guard| guard.backend_pid()))
    };
    server.wait_until("the waiter in pg_locks", BOUND, waiting);
    assert!(!waiter.is_finished());
    held.release().unwrap();
    waiter.join().unwrap().expect("the waiter takes the lock");
}

#[test]
fn every_wait_gets_the_answer_file_and_socket_locks_give() {
    let server = TestServer::start();
    let mut admin = server.client();

    let plain = PgLock::new(&server.url(), "deploy").unwrap();
    answers_the_same(&server, &plain, || {
        server.waiting_for(&mut admin, plain.key()) == 1
    });

    let pool = PgLock::new(&server.url(), "pool")
        .unwrap()
        .with_max(1)
        .unwrap();
    let slot = slot_key("pool", 1);
    answers_the_same(&server, &pool, || {
        on_pair(&mut admin, (slot.0, slot.1)).1 == 1
    });

    // A set: its file lock is free and taken, but by then the set's
    // deadline has passed, so the held PostgreSQL lock is timed out, as a
    // held file or socket lock would be.
    let _held = plain.acquire().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = FileLock::named("local", Some(dir.path())).unwrap();
    let set = LockSet::new([AnyLock::File(file), AnyLock::Pg(Box::new(plain.clone()))]).unwrap();
    match set.acquire_with(Wait::For(Duration::from_nanos(1)), &mut withlock::NoHooks) {
        Err(Error::TimedOut { lock, .. }) => assert!(lock.contains("deploy"), "{lock}"),
        other => panic!("expected TimedOut, got {other:?}"),
    }
}

/// A wait ended from another thread ([`WaitCancel`], as an asyncio task's
/// cancel does) stops at once, through the server's cancel request sent
/// with the session's TLS settings: it fails as interrupted, and by then
/// `pg_locks` lists no waiter of it; a bounded wait and an endless one.
#[test]
fn a_cancelled_wait_ends_on_the_server_leaving_no_waiter() {
    let server = TestServer::start_tls();
    let mut admin = server.client();
    let lock = PgLock::new(&server.url(), "deploy").unwrap();
    let held = lock.acquire().unwrap();
    for wait in [Wait::Forever, Wait::For(Duration::from_secs(600))] {
        let cancel = WaitCancel::new();
        let (tx, outcome) = std::sync::mpsc::channel();
        {
            let (lock, cancel) = (lock.clone(), cancel.clone());
            std::thread::spawn(move || {
                let mut inner = withlock::NoHooks;
                let waited = cancel
                    .hooks(&mut inner)
                    .and_then(|mut hooks| lock.acquire_with(wait, &mut hooks).map(drop));
                tx.send(waited).unwrap();
            });
        }
        server.wait_until("the waiter in pg_locks", BOUND, || {
            server.waiting_for(&mut admin, lock.key()) == 1
        });
        cancel.cancel();
        // Bounded: a wait the cancel does not reach would go on as long as
        // the lock is held, which is to the end of the test.
        match outcome
            .recv_timeout(BOUND)
            .expect("the cancelled wait ends")
        {
            Err(Error::Interrupted { lock }) => assert!(lock.contains("deploy"), "{lock}"),
            other => panic!("{wait:?}: expected Interrupted, got {other:?}"),
        }
        assert_eq!(server.waiting_for(&mut admin, lock.key()), 0, "{wait:?}");
    }
    held.release().unwrap();
    lock.acquire_with(Wait::NoWait, &mut withlock::NoHooks)
        .expect("nothing of the cancelled waits was kept");
}
