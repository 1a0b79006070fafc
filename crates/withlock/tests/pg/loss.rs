//! Losing a held lock: after the holder's session is terminated, the
//! server restarts or the connection is severed or frozen (a partition),
//! `PgGuard::check` and the heartbeat watch (`PgGuard::watch`) report it
//! within `DETECTION_BOUND`; in a partition the server keeps the lock at
//! least until then, and frees it within its own bound.

use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::time::{Duration, Instant};

use withlock::Lock;
use withlock::pg::heartbeat::{DETECTION_BOUND, server_bound};
use withlock::pg::{LockLost, LossCause, PgGuard, PgLock};

use withlock_pg_testing::Proxy;
use withlock_pg_testing::TestServer;

const BOUND: Duration = Duration::from_secs(30);

#[test]
fn check_reports_a_held_lock() {
    let server = TestServer::start();
    let lock = PgLock::new(&server.url(), "deploy")
        .unwrap()
        .with_grace(Duration::ZERO);
    let mut guard = lock.acquire().unwrap();
    assert!(guard.check(BOUND).unwrap());
}

#[test]
fn a_terminated_session_loses_the_lock_and_check_says_so() {
    let server = TestServer::start();
    let lock = PgLock::new(&server.url(), "deploy")
        .unwrap()
        .with_grace(Duration::ZERO);
    let mut guard = lock.acquire().unwrap();
    let mut admin = server.client();
    let terminated: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&guard.backend_pid()])
        .unwrap()
        .get(0);
    assert!(terminated);
    // The lock is free for another session at once...
    let other = lock.acquire_timeout(BOUND).expect("free after termination");
    // ...and the old holder learns that its session is gone.
    assert!(guard.check(BOUND).is_err());
    drop(other);
}

#[test]
fn a_server_restart_loses_the_lock_and_check_says_so() {
    let server = TestServer::start();
    let lock = PgLock::new(&server.url(), "deploy")
        .unwrap()
        .with_grace(Duration::ZERO);
    let mut guard = lock.acquire().unwrap();
    server.restart();
    assert!(guard.check(BOUND).is_err());
    free_after_the_pause(&lock);
}

/// The lock of a holder whose session ended without releasing: not usable
/// at once (`-n` says when), but after the hand-over pause.
fn free_after_the_pause(lock: &PgLock) {
    match lock.try_acquire() {
        Err(withlock::Error::Busy { holders, .. }) => {
            let why = holders.unidentified.unwrap_or_default();
            assert!(why.contains("usable in"), "{why}");
        }
        other => panic!("usable at once after a lost holder: {other:?}"),
    }
    lock.acquire_timeout(BOUND).expect("free after the pause");
}

#[test]
fn a_partition_is_seen_by_check_while_the_server_still_holds_the_lock() {
    let server = TestServer::start();
    let proxy = Proxy::start(server.port());
    let lock = PgLock::new(&proxy.url(), "deploy")
        .unwrap()
        .with_grace(Duration::ZERO);
    let mut guard = lock.acquire().unwrap();
    assert!(guard.check(BOUND).unwrap());
    proxy.freeze();
    // The holder cannot reach the server: check fails within its timeout.
    assert!(guard.check(Duration::from_millis(500)).is_err());
    // Meanwhile the server still sees a live session holding the lock, and
    // keeps it until it notices the client is gone (its own keepalives:
    // the lock session sets them: see pg::heartbeat), so nobody else may take it yet.
    let direct = PgLock::new(&server.url(), "deploy")
        .unwrap()
        .with_grace(Duration::ZERO);
    assert!(matches!(
        direct.try_acquire(),
        Err(withlock::Error::Busy { .. })
    ));
    // Once the connection really closes, the server frees the lock.
    proxy.sever();
    direct
        .acquire_timeout(BOUND)
        .expect("free once the session ends");
}

/// Beyond a bound under test: scheduling on a loaded test machine.
const SLACK: Duration = Duration::from_secs(10);

/// `guard` watched, its losses sent to the receiver with when they came.
fn watched(mut guard: PgGuard) -> (PgGuard, Receiver<(LockLost, Instant)>) {
    let (tx, rx) = mpsc::channel();
    guard
        .watch(Box::new(move |lost| {
            tx.send((lost, Instant::now())).unwrap()
        }))
        .unwrap();
    (guard, rx)
}

/// The loss, which must come within the detection bound of `since`.
fn loss_within_bound(rx: &Receiver<(LockLost, Instant)>, since: Instant, fault: &str) -> LockLost {
    let (lost, at) = rx
        .recv_timeout(DETECTION_BOUND + SLACK)
        .unwrap_or_else(|e| panic!("{fault}: no loss reported within the bound: {e}"));
    eprintln!("{fault}: noticed after {:?}: {lost}", at - since);
    assert!(at - since <= DETECTION_BOUND + SLACK);
    assert_eq!(lost.lock, "deploy");
    lost
}

#[test]
fn a_watch_reports_a_terminated_session() {
    let server = TestServer::start();
    let lock = PgLock::new(&server.url(), "deploy")
        .unwrap()
        .with_grace(Duration::ZERO);
    let (mut guard, rx) = watched(lock.acquire().unwrap());
    let since = Instant::now();
    let terminated: bool = server
        .client()
        .query_one("SELECT pg_terminate_backend($1)", &[&guard.backend_pid()])
        .unwrap()
        .get(0);
    assert!(terminated);
    let lost = loss_within_bound(&rx, since, "terminate");
    // Told, not timed out. (The driver surfaces the server's FATAL
    // message rarely; mostly it reports the connection closed.)
    assert!(!matches!(lost.cause, LossCause::NoAnswer { .. }), "{lost}");
    assert_eq!(guard.lost(), Some(lost));
    assert!(guard.check(BOUND).is_err());
    assert!(matches!(
        guard.release(),
        Err(withlock::pg::PgError::NotHeld { .. })
    ));
}

#[test]
fn a_watch_reports_a_server_restart() {
    let server = TestServer::start();
    let lock = PgLock::new(&server.url(), "deploy")
        .unwrap()
        .with_grace(Duration::ZERO);
    let (_guard, rx) = watched(lock.acquire().unwrap());
    let since = Instant::now();
    server.restart();
    let lost = loss_within_bound(&rx, since, "restart");
    assert!(
        !matches!(lost.cause, LossCause::NoAnswer { .. }),
        "a restart is told, not timed out: {lost}"
    );
    free_after_the_pause(&lock);
}

#[test]
fn a_watch_reports_a_severed_connection() {
    let server = TestServer::start();
    let proxy = Proxy::start(server.port());
    let lock = PgLock::new(&proxy.url(), "deploy")
        .unwrap()
        .with_grace(Duration::ZERO);
    let (_guard, rx) = watched(lock.acquire().unwrap());
    let since = Instant::now();
    proxy.sever();
    let lost = loss_within_bound(&rx, since, "sever");
    assert!(
        matches!(lost.cause, LossCause::ConnectionLost { .. }),
        "{lost}"
    );
}

#[test]
fn a_partition_is_reported_while_the_server_still_holds_the_lock_then_freed_within_its_bound() {
    let server = TestServer::start();
    let proxy = Proxy::start(server.port());
    let grace = Duration::from_secs(1);
    let lock = PgLock::new(&proxy.url(), "deploy")
        .unwrap()
        .with_grace(grace);
    let (_guard, rx) = watched(lock.acquire().unwrap());
    let since = Instant::now();
    proxy.freeze();
    let lost = loss_within_bound(&rx, since, "freeze");
    assert!(matches!(lost.cause, LossCause::NoAnswer { .. }), "{lost}");
    // The holder knows; the server must not have handed the lock on yet
    // (the proxy still answers TCP, so only the session's own
    // idle_session_timeout can end it).
    let direct = PgLock::new(&server.url(), "deploy")
        .unwrap()
        .with_grace(Duration::ZERO);
    assert!(matches!(
        direct.try_acquire(),
        Err(withlock::Error::Busy { .. })
    ));
    let freed = direct
        .acquire_timeout(server_bound(grace) + SLACK)
        .expect("freed within the server's bound");
    eprintln!(
        "freeze: the server freed the lock after {:?}",
        since.elapsed()
    );
    drop(freed);
}

#[test]
fn a_released_or_dropped_watched_lock_reports_no_loss() {
    let server = TestServer::start();
    let lock = PgLock::new(&server.url(), "deploy")
        .unwrap()
        .with_grace(Duration::ZERO);
    let (mut guard, rx) = watched(lock.acquire().unwrap());
    assert!(guard.check(BOUND).unwrap());
    guard.release().expect("an orderly release");
    // The heartbeat thread has ended and dropped the callback unused.
    assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Disconnected);
    lock.try_acquire().expect("released");

    let (guard, rx) = watched(lock.acquire().unwrap());
    drop(guard);
    assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Disconnected);
    lock.try_acquire().expect("released by the drop");
}

/// Hooks that keep the notices they are given.
#[derive(Default)]
struct Notices(Vec<String>);

impl withlock::WaitHooks for Notices {
    fn notice(&mut self, message: &str) {
        self.0.push(message.to_owned());
    }
}

#[test]
fn after_a_holder_that_did_not_release_the_next_grant_pauses_and_says_so() {
    let server = TestServer::start();
    let lock = PgLock::new(&server.url(), "deploy")
        .unwrap()
        .with_grace(Duration::ZERO);
    // Released in order (by drop): the next grant does not pause.
    drop(lock.acquire().unwrap());
    let mut notices = Notices::default();
    let guard = lock
        .acquire_with(withlock::Wait::Forever, &mut notices)
        .unwrap();
    assert!(notices.0.is_empty(), "{:?}", notices.0);
    // Its session ended by the server: the next grant pauses for it.
    let mut admin = server.client();
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&guard.backend_pid()])
        .unwrap();
    let started = Instant::now();
    let _next = lock
        .acquire_with(withlock::Wait::Forever, &mut notices)
        .unwrap();
    assert_eq!(notices.0.len(), 1, "{:?}", notices.0);
    assert!(
        notices.0[0].contains("ended without releasing it; waiting"),
        "{}",
        notices.0[0]
    );
    eprintln!("paused {:?}", started.elapsed());
    drop(guard);
}

#[test]
fn a_shared_newcomer_does_not_pause_for_an_old_shared_holder_but_an_exclusive_one_does() {
    let server = TestServer::start();
    let shared = PgLock::new(&server.url(), "data")
        .unwrap()
        .with_mode(withlock::Mode::Shared)
        .with_grace(Duration::ZERO);
    let old = shared.acquire().unwrap();
    server
        .client()
        .execute("SELECT pg_terminate_backend($1)", &[&old.backend_pid()])
        .unwrap();
    // Gone from pg_locks, so its record is one that was not released.
    let mut admin = server.client();
    server.wait_until("the old holder's session to end", BOUND, || {
        admin
            .query_one(
                "SELECT count(*) FROM pg_locks WHERE pid = $1",
                &[&old.backend_pid()],
            )
            .unwrap()
            .get::<_, i64>(0)
            == 0
    });
    let mut notices = Notices::default();
    let reader = shared
        .acquire_with(withlock::Wait::Forever, &mut notices)
        .unwrap();
    assert!(notices.0.is_empty(), "{:?}", notices.0);
    drop(reader);
    let exclusive = PgLock::new(&server.url(), "data")
        .unwrap()
        .with_grace(Duration::ZERO);
    let _writer = exclusive
        .acquire_with(withlock::Wait::Forever, &mut notices)
        .unwrap();
    assert_eq!(notices.0.len(), 1, "{:?}", notices.0);
    drop(old);
}
