//! Tests of the etcd backend through the library against a real
//! one-member etcd (see the `withlock-etcd-testing` crate): an etcd lock
//! taken with file locks in one `LockSet`, all or none, in the global
//! order, the fencing tokens of a set, and a wait ended from another
//! thread leaving no key in line.

use std::time::{Duration, Instant};
use withlock::etcd::EtcdLock;

use withlock::{AnyLock, Error, FileLock, Lock, LockKey, LockSet, Mode, Wait, WaitCancel};
use withlock_etcd_testing::Etcd;

fn etcd_lock(etcd: &Etcd, name: &str) -> AnyLock {
    AnyLock::Etcd(Box::new(EtcdLock::new(&etcd.url(), name).unwrap()))
}

#[test]
fn a_set_of_file_and_etcd_locks_is_taken_all_or_none() {
    let etcd = Etcd::start();
    let dir = tempfile::tempdir().unwrap();
    let file = AnyLock::File(FileLock::named("build", Some(dir.path())).unwrap());
    let set = LockSet::new([etcd_lock(&etcd, "deploy"), file.clone()]).unwrap();
    // The global order puts the file lock first, whatever the order given.
    let order: Vec<&str> = set.locks().map(AnyLock::label).collect();
    assert_eq!(order, ["build", "deploy"]);
    assert!(LockKey::of(&file) < LockKey::of(&etcd_lock(&etcd, "deploy")));

    let elsewhere = EtcdLock::new(&etcd.url(), "deploy")
        .unwrap()
        .acquire()
        .unwrap();
    let refused = set.try_acquire().unwrap_err();
    assert!(refused.is_conflict(), "{refused}");
    // None: the file lock taken first was given back.
    let alone = FileLock::named("build", Some(dir.path())).unwrap();
    drop(
        alone
            .try_acquire()
            .expect("the file lock was kept after the refusal"),
    );
    elsewhere.release().unwrap();

    let guard = set.try_acquire().unwrap();
    assert_eq!(keys_in_line(&etcd, "deploy"), 1);
    assert!(
        alone.try_acquire().is_err(),
        "the file lock is held with the set"
    );
    drop(guard);
}

#[test]
fn every_grant_draws_a_higher_token_and_shared_holders_hold_together() {
    let etcd = Etcd::start();
    let lock = EtcdLock::new(&etcd.url(), "data").unwrap();
    let first = lock.acquire().unwrap();
    let one = first.fence();
    first.release().unwrap();
    let second = lock.acquire().unwrap();
    assert!(second.fence() > one);
    second.release().unwrap();
    let reader = lock.clone().with_mode(Mode::Shared);
    let a = reader.try_acquire().unwrap();
    let b = reader.try_acquire().unwrap();
    assert!(lock.try_acquire().unwrap_err().is_conflict());
    let holders = lock.holders().unwrap();
    assert_eq!(holders.holders.len(), 2);
    drop((a, b));
    assert!(lock.holders().unwrap().is_empty());
}

/// How many keys the line of the lock `name` holds.
fn keys_in_line(etcd: &Etcd, name: &str) -> usize {
    let out = etcd
        .etcdctl()
        .args(["get", "--prefix", "--keys-only", &format!("{name}/")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .count()
}

/// A wait ended from another thread ([`WaitCancel`], as an asyncio task's
/// cancel does) revokes its lease: it fails as interrupted, and by then
/// its key has left the line; a bounded wait and an endless one.
#[test]
fn a_cancelled_wait_leaves_no_key_in_line() {
    const BOUND: Duration = Duration::from_secs(30);
    let etcd = Etcd::start();
    let lock = EtcdLock::new(&etcd.url(), "deploy").unwrap();
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
        let start = Instant::now();
        while keys_in_line(&etcd, "deploy") != 2 {
            assert!(start.elapsed() < BOUND, "the waiter never joined the line");
        }
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
        assert_eq!(keys_in_line(&etcd, "deploy"), 1, "{wait:?}");
    }
    held.release().unwrap();
    lock.try_acquire()
        .expect("nothing of the cancelled waits was kept")
        .release()
        .unwrap();
}
