//! Taking, trying, timing out on and releasing a lock; holders and waiters.

use std::time::Duration;

use withlock::pg::{Identity, PgLock};
use withlock::{Error, Lock, Mode};

use withlock_pg_testing::TestServer;

const BOUND: Duration = Duration::from_secs(30);

#[test]
fn a_free_lock_is_taken_named_and_released() {
    let server = TestServer::start();
    let lock = PgLock::new(&server.url(), "deploy").unwrap();
    let guard = lock.try_acquire().unwrap();
    let sessions = lock.pg_holders().unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    let holder = &sessions[0];
    assert!(holder.granted);
    assert_eq!(holder.mode, Mode::Exclusive);
    assert_eq!(holder.backend_pid, guard.backend_pid());
    let identity = holder.identity.as_ref().expect("a withlock session");
    assert_eq!(identity.pid, std::process::id());
    assert!(holder.since.is_some());
    let holders = lock.holders().unwrap();
    assert_eq!(holders.holders[0].pid, std::process::id() as i32);
    guard.release().unwrap();
    assert!(lock.pg_holders().unwrap().is_empty());
    // And it can be taken again.
    lock.try_acquire().unwrap();
}

#[test]
fn a_held_lock_is_busy_and_the_conflict_names_the_holder() {
    let server = TestServer::start();
    let lock = PgLock::new(&server.url(), "deploy").unwrap();
    let _guard = lock.acquire().unwrap();
    for mode in [Mode::Exclusive, Mode::Shared] {
        match lock.clone().with_mode(mode).try_acquire() {
            Err(Error::Busy {
                lock: label,
                holders,
            }) => {
                assert!(label.contains("deploy"), "{label}");
                assert_eq!(holders.holders.len(), 1);
                assert_eq!(holders.holders[0].pid, std::process::id() as i32);
                assert_eq!(holders.holders[0].mode, Mode::Exclusive);
            }
            other => panic!("expected Busy, got {other:?}"),
        }
    }
    // Another name is another key.
    PgLock::new(&server.url(), "other")
        .unwrap()
        .try_acquire()
        .unwrap();
}

#[test]
fn shared_holders_coexist_and_keep_an_exclusive_one_out() {
    let server = TestServer::start();
    let shared = PgLock::new(&server.url(), "deploy")
        .unwrap()
        .with_mode(Mode::Shared);
    let _a = shared.try_acquire().unwrap();
    let _b = shared.try_acquire().unwrap();
    let sessions = shared.pg_holders().unwrap();
    assert_eq!(
        sessions
            .iter()
            .filter(|s| s.granted && s.mode == Mode::Shared)
            .count(),
        2
    );
    let exclusive = shared.clone().with_mode(Mode::Exclusive);
    assert!(matches!(exclusive.try_acquire(), Err(Error::Busy { .. })));
}

#[test]
fn a_wait_with_a_limit_times_out_in_the_server_and_leaves_no_waiter() {
    let server = TestServer::start();
    let lock = PgLock::new(&server.url(), "deploy").unwrap();
    let _guard = lock.acquire().unwrap();
    let limit = Duration::from_millis(300);
    match lock.acquire_timeout(limit) {
        Err(Error::TimedOut {
            waited, holders, ..
        }) => {
            assert!(waited >= limit, "{waited:?}");
            assert!(waited < BOUND, "{waited:?}");
            assert_eq!(holders.holders.len(), 1);
        }
        other => panic!("expected TimedOut, got {other:?}"),
    }
    let mut admin = server.client();
    assert_eq!(server.waiting_for(&mut admin, lock.key()), 0);
}

#[test]
fn a_waiter_shows_in_pg_locks_and_gets_the_lock_on_release() {
    let server = TestServer::start();
    let lock = PgLock::new(&server.url(), "deploy").unwrap();
    let guard = lock.acquire().unwrap();
    let waiter = {
        let lock = lock.clone();
        std::thread::spawn(move || lock.acquire_timeout(BOUND).map(|g| g.backend_pid()))
    };
    let mut admin = server.client();
    server.wait_until("the waiter in pg_locks", BOUND, || {
        server.waiting_for(&mut admin, lock.key()) == 1
    });
    let holders = lock.holders().unwrap();
    assert_eq!(holders.holders.len(), 1);
    assert_eq!(holders.waiters.len(), 1);
    assert_eq!(holders.waiters[0].pid, std::process::id() as i32);
    assert!(holders.waiters[0].since.is_some(), "waitstart is known");
    assert!(!waiter.is_finished());
    guard.release().unwrap();
    let backend = waiter.join().unwrap().expect("the waiter takes the lock");
    assert!(backend > 0);
}

#[test]
fn a_broken_url_is_a_typed_error_that_hides_the_password() {
    let err = PgLock::new("postgres://u:s3cret@127.0.0.1:notaport/x", "deploy").unwrap_err();
    assert!(!err.to_string().contains("s3cret"), "{err}");
    let err = PgLock::new("postgres://u@127.0.0.1/x", "../etc").unwrap_err();
    assert!(matches!(err, Error::InvalidName { .. }), "{err:?}");
}

#[test]
fn another_role_sees_who_holds_the_lock() {
    let server = TestServer::start();
    server
        .client()
        .batch_execute("CREATE ROLE alice LOGIN")
        .unwrap();
    let lock = PgLock::new(&server.url(), "deploy").unwrap();
    let _guard = lock.acquire().unwrap();
    let url = server
        .url()
        .replace("postgres://postgres@", "postgres://alice@");
    let as_alice = PgLock::new(&url, "deploy").unwrap();
    match as_alice.try_acquire() {
        Err(Error::Busy { holders, .. }) => {
            assert_eq!(holders.holders.len(), 1);
            assert_eq!(holders.holders[0].pid, std::process::id() as i32);
        }
        other => panic!("expected Busy, got {other:?}"),
    }
    let sessions = as_alice.pg_holders().unwrap();
    let identity = sessions[0]
        .identity
        .as_ref()
        .expect("application_name is visible");
    assert_eq!(identity.pid, std::process::id());
    // Finding: without pg_read_all_stats, another role's state_change and
    // client_addr are NULL; "since" is known all
    // the same, from the grant time the holder wrote into application_name.
    assert!(sessions[0].since.is_some());
    assert_eq!(sessions[0].client, withlock::ClientAddress::Hidden);
    // The role is the server's word, whatever the session declares.
    assert_eq!(sessions[0].role.as_deref(), Some("postgres"));
}

#[test]
fn lock_sessions_ignore_the_servers_short_timeouts() {
    let server = TestServer::start();
    let mut admin = server.client();
    // Defaults that would end a lock session or its wait within 50 ms;
    // they apply to sessions opened from now on (admin keeps its own).
    admin
        .batch_execute(
            "ALTER ROLE postgres SET lock_timeout = '50ms';
             ALTER ROLE postgres SET statement_timeout = '50ms';
             ALTER ROLE postgres SET idle_session_timeout = '50ms';
             ALTER ROLE postgres SET idle_in_transaction_session_timeout = '50ms'",
        )
        .unwrap();
    let lock = PgLock::new(&server.url(), "deploy").unwrap();
    let mut guard = lock.acquire().unwrap();
    let waiter = {
        let lock = lock.clone();
        std::thread::spawn(move || lock.acquire().map(|g| g.backend_pid()))
    };
    // Wait on the server's own clock: the waiter has waited, and the holder
    // has been idle, twenty times the defaults.
    let parts = withlock::pg::LockKeyParts::of(lock.key());
    server.wait_until("a second of waiting and idling", BOUND, || {
        admin
            .query_one(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                  WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.objid = $2
                    AND ((NOT l.granted AND now() - l.waitstart > interval '1s')
                      OR (l.granted AND a.state = 'idle' AND now() - a.state_change > interval '1s'))",
                &[&parts.classid, &parts.objid],
            )
            .unwrap()
            .get::<_, i64>(0)
            == 2
    });
    assert!(
        guard.check(BOUND).unwrap(),
        "the idle holder kept its session"
    );
    guard.release().unwrap();
    assert!(
        waiter.join().unwrap().is_ok(),
        "the waiter was not timed out"
    );
}

#[test]
fn the_declared_command_reads_back_as_its_exact_arguments_or_marked_cut() {
    let server = TestServer::start();
    let announce = |command: &[&str]| Identity {
        pid: 1,
        user: "u".into(),
        host: "h".into(),
        command: command.iter().map(|a| a.to_string()).collect(),
        command_truncated: false,
        granted_at: None,
        deadline: None,
    };
    let fits = ["sh", "-c", "a 'b'", "x y"];
    let lock = PgLock::announced(&server.url(), "deploy", announce(&fits)).unwrap();
    let guard = lock.acquire().unwrap();
    let read = lock.pg_holders().unwrap()[0].identity.clone().unwrap();
    assert_eq!(read.command, fits);
    assert!(!read.command_truncated && read.granted_at.is_some());
    guard.release().unwrap();

    let long = "echo \"hello world with a fairly long argument list\"; sleep 1.5";
    let lock = PgLock::announced(&server.url(), "deploy", announce(&["sh", "-c", long])).unwrap();
    let _guard = lock.acquire().unwrap();
    let read = lock.pg_holders().unwrap()[0].identity.clone().unwrap();
    assert!(read.command_truncated, "{read:?}");
    assert_eq!(read.command[..2], ["sh", "-c"]);
    assert!(
        long.starts_with(&read.command[2]) && read.command[2].len() > 10,
        "{read:?}"
    );
    assert!(read.granted_at.is_some(), "the grant time survives the cut");
}

#[test]
fn the_server_names_each_sessions_role_and_address_tcp_or_local_socket() {
    let server = TestServer::start();
    let socket_url = format!(
        "postgres:///postgres?host={}&port={}&user=postgres",
        server.dir().display(),
        server.port()
    );
    let over_socket = PgLock::new(&socket_url, "a").unwrap();
    let _a = over_socket.try_acquire().unwrap();
    let over_tcp = PgLock::new(&server.url(), "b").unwrap();
    let _b = over_tcp.try_acquire().unwrap();
    let seen = |lock: &PgLock| {
        let session = lock.pg_holders().unwrap().remove(0);
        (session.role, session.client)
    };
    let postgres = Some("postgres".to_owned());
    assert_eq!(
        seen(&over_socket),
        (postgres.clone(), withlock::ClientAddress::LocalSocket)
    );
    assert_eq!(
        seen(&over_tcp),
        (postgres, withlock::ClientAddress::Ip("127.0.0.1".into()))
    );
}
