//! Findings about the server's lock queue, kept as tests so that they stay
//! true: waiters are granted in arrival order, and neither a try nor a new
//! shared request barges past a queued exclusive one.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use withlock::pg::PgLock;
use withlock::{Error, Lock, Mode};

use withlock_pg_testing::TestServer;

const BOUND: Duration = Duration::from_secs(30);

#[test]
fn exclusive_waiters_are_granted_in_arrival_order() {
    let server = TestServer::start();
    let lock = PgLock::new(&server.url(), "deploy").unwrap();
    let guard = lock.acquire().unwrap();
    let granted = Arc::new(Mutex::new(Vec::new()));
    let mut admin = server.client();
    let mut waiters = Vec::new();
    let key = lock.key();
    for i in 0..8 {
        let (lock, granted) = (lock.clone(), granted.clone());
        waiters.push(std::thread::spawn(move || {
            let guard = lock.acquire_timeout(BOUND).expect("granted");
            granted.lock().unwrap().push(i);
            guard.release().unwrap();
        }));
        // The next one arrives only once this one waits in the server.
        server.wait_until(&format!("waiter {i} in pg_locks"), BOUND, || {
            server.waiting_for(&mut admin, key) == i + 1
        });
    }
    guard.release().unwrap();
    for waiter in waiters {
        waiter.join().unwrap();
    }
    assert_eq!(*granted.lock().unwrap(), (0..8).collect::<Vec<_>>());
}

#[test]
fn a_shared_request_does_not_barge_past_a_queued_exclusive_one() {
    let server = TestServer::start();
    let shared = PgLock::new(&server.url(), "deploy")
        .unwrap()
        .with_mode(Mode::Shared);
    let _reader = shared.acquire().unwrap();
    let writer = {
        let exclusive = shared.clone().with_mode(Mode::Exclusive);
        std::thread::spawn(move || exclusive.acquire_timeout(BOUND).map(|g| g.backend_pid()))
    };
    let mut admin = server.client();
    server.wait_until("the writer in pg_locks", BOUND, || {
        server.waiting_for(&mut admin, shared.key()) == 1
    });
    // The lock is held shared only, yet a new shared try is refused: the
    // server queues it behind the waiting writer.
    assert!(matches!(shared.try_acquire(), Err(Error::Busy { .. })));
    drop(_reader);
    writer.join().unwrap().expect("the writer is granted");
}
