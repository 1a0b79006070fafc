//! Connecting: the TLS modes against a server with certificates of its
//! own, the password sources against a role that needs its password, Unix
//! socket hosts, and poolers (pgbouncer, which must be installed: the
//! tests fail with the install command otherwise). Every test builds its
//! environment rather than reading the process's `PG*` variables.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use withlock::pg::connection::{Environment, Target};
use withlock::pg::{Identity, PgError, PgLock};
use withlock::{Error, Lock};
use withlock_pg_testing::{PASSWORD_ROLE, Pgbouncer, PoolMode, SERVER_NAME, TestServer};

const PASSWORD: &str = "c0rrect-h0rse";
const WRONG: &str = "wr0ng-s3cret";

fn env() -> Environment {
    Environment::empty().with_os_user("postgres")
}

fn target(url: &str, env: &Environment) -> Target {
    Target::parse_with(url, env).unwrap_or_else(|e| panic!("{url}: {e}"))
}

fn connect(target: &Target) -> Result<postgres::Client, PgError> {
    target.connect(&Identity::current())
}

/// Whether a session to `target` is encrypted, as the server sees it.
fn encrypted(target: &Target) -> bool {
    let mut client = connect(target).unwrap_or_else(|e| panic!("{target:?}: {e}"));
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0)
}

fn url(server: &TestServer, host: &str, query: &str) -> String {
    format!(
        "postgres://postgres@{host}:{}/postgres?{query}",
        server.port()
    )
}

fn file_url(server: &TestServer, host: &str, mode: &str, root: &Path) -> String {
    url(
        server,
        host,
        &format!("sslmode={mode}&sslrootcert={}", root.display()),
    )
}

#[test]
fn prefer_and_require_encrypt_and_disable_does_not() {
    let server = TestServer::start_tls();
    let home = tempfile::tempdir().unwrap();
    let env = env().with_home(home.path());
    assert!(encrypted(&target(&url(&server, "127.0.0.1", ""), &env)));
    assert!(encrypted(&target(
        &url(&server, "127.0.0.1", "sslmode=prefer"),
        &env
    )));
    assert!(encrypted(&target(
        &url(&server, "127.0.0.1", "sslmode=require"),
        &env
    )));
    assert!(!encrypted(&target(
        &url(&server, "127.0.0.1", "sslmode=disable"),
        &env
    )));
}

#[test]
fn prefer_falls_back_to_plain_but_require_refuses_a_server_without_tls() {
    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let env = env().with_home(home.path());
    assert!(!encrypted(&target(
        &url(&server, "127.0.0.1", "sslmode=prefer"),
        &env
    )));
    let require = target(&url(&server, "127.0.0.1", "sslmode=require"), &env);
    let err = connect(&require)
        .err()
        .expect("require accepted a plain server");
    assert!(matches!(err, PgError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("does not offer TLS"), "{err}");
}

#[test]
fn verify_full_checks_the_authority_and_the_host_name() {
    let server = TestServer::start_tls();
    let tls = server.tls();
    let env = env();
    let full = target(
        &file_url(&server, SERVER_NAME, "verify-full", &tls.ca),
        &env,
    );
    assert!(encrypted(&full));
    // The certificate is for localhost only.
    let by_address = target(
        &file_url(&server, "127.0.0.1", "verify-full", &tls.ca),
        &env,
    );
    let err = connect(&by_address).err().expect("a wrong name accepted");
    assert!(err.to_string().contains("certificate"), "{err}");
    // TLS that cannot be had as asked, not a server out of reach.
    assert!(matches!(err, PgError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("sslmode=verify-full"), "{err}");
    let unknown = target(
        &file_url(&server, SERVER_NAME, "verify-full", &tls.other_ca),
        &env,
    );
    let err = connect(&unknown)
        .err()
        .expect("an unknown authority accepted");
    assert!(err.to_string().contains("certificate"), "{err}");
}

#[test]
fn verify_ca_checks_the_authority_but_not_the_name() {
    let server = TestServer::start_tls();
    let tls = server.tls();
    let env = env();
    assert!(encrypted(&target(
        &file_url(&server, "127.0.0.1", "verify-ca", &tls.ca),
        &env
    )));
    let unknown = target(
        &file_url(&server, "127.0.0.1", "verify-ca", &tls.other_ca),
        &env,
    );
    assert!(connect(&unknown).is_err(), "an unknown authority accepted");
}

#[test]
fn a_known_root_makes_require_check_the_chain_as_in_libpq() {
    let server = TestServer::start_tls();
    let tls = server.tls();
    let env = env();
    let wrong = target(
        &file_url(&server, "127.0.0.1", "require", &tls.other_ca),
        &env,
    );
    assert!(connect(&wrong).is_err(), "require ignored the named root");
    // The default root file counts too.
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir(home.path().join(".postgresql")).unwrap();
    std::fs::copy(&tls.other_ca, home.path().join(".postgresql/root.crt")).unwrap();
    let with_home = env.with_home(home.path());
    let require = target(&url(&server, "127.0.0.1", "sslmode=require"), &with_home);
    assert!(
        connect(&require).is_err(),
        "require ignored ~/.postgresql/root.crt"
    );
}

#[test]
fn pgsslmode_applies_when_the_url_gives_no_sslmode() {
    let server = TestServer::start();
    let home = tempfile::tempdir().unwrap();
    let env = env()
        .with_home(home.path())
        .with_var("PGSSLMODE", "require");
    assert!(connect(&target(&url(&server, "127.0.0.1", ""), &env)).is_err());
    let disable = url(&server, "127.0.0.1", "sslmode=disable");
    assert!(!encrypted(&target(&disable, &env)));
}

/// The server's port as the session sees it: NULL over a Unix socket.
fn server_port(target: &Target) -> Option<i32> {
    let mut client = connect(target).unwrap_or_else(|e| panic!("{target:?}: {e}"));
    client
        .query_one("SELECT inet_server_port()", &[])
        .unwrap()
        .get(0)
}

#[test]
fn unix_socket_hosts_connect_in_every_form() {
    let server = TestServer::start();
    let dir = server.dir().display().to_string();
    let port = server.port();
    let encoded = dir.replace('/', "%2F");
    let env = env();
    for url in [
        format!("postgres:///postgres?host={dir}&port={port}&user=postgres"),
        format!("postgresql://postgres@{encoded}:{port}/postgres"),
        format!("host={dir} port={port} user=postgres dbname=postgres"),
    ] {
        let target = target(&url, &env);
        assert_eq!(target.server(), format!("{dir}:{port}/postgres"), "{url}");
        assert_eq!(server_port(&target), None, "{url} went over TCP");
    }
    let from_env = env
        .with_var("PGHOST", &dir)
        .with_var("PGPORT", &port.to_string());
    assert_eq!(server_port(&target("postgres://", &from_env)), None);
}

#[test]
fn a_lock_is_taken_over_a_unix_socket() {
    let server = TestServer::start();
    let url = format!(
        "postgres:///postgres?host={}&port={}&user=postgres",
        server.dir().display(),
        server.port()
    );
    let lock = PgLock::new(&url, "deploy").unwrap();
    let guard = lock.try_acquire().unwrap();
    assert!(matches!(lock.try_acquire(), Err(Error::Busy { .. })));
    guard.release().unwrap();
}

fn password_file(dir: &Path, text: &str, mode: u32) -> std::path::PathBuf {
    let path = dir.join("pgpass");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn role_url(server: &TestServer, password: Option<&str>) -> String {
    let password = password.map_or(String::new(), |p| format!(":{p}"));
    format!(
        "postgres://{PASSWORD_ROLE}{password}@127.0.0.1:{}/postgres",
        server.port()
    )
}

#[test]
fn the_password_file_logs_in_over_tcp_and_the_socket() {
    let server = TestServer::start();
    server.create_password_role(PASSWORD);
    let files = tempfile::tempdir().unwrap();
    let port = server.port();
    let dir = server.dir().display().to_string();
    let pgpass = password_file(
        files.path(),
        &format!(
            "# comment\n127.0.0.1:{port}:postgres:{PASSWORD_ROLE}:{PASSWORD}\n\
             {}:{port}:*:{PASSWORD_ROLE}:{PASSWORD}\n",
            dir.replace(':', "\\:")
        ),
        0o600,
    );
    let env = env().with_var("PGPASSFILE", pgpass.to_str().unwrap());
    connect(&target(&role_url(&server, None), &env)).unwrap();
    let socket = format!("host={dir} port={port} user={PASSWORD_ROLE} dbname=postgres");
    assert_eq!(server_port(&target(&socket, &env)), None);
    // The home directory's file when PGPASSFILE is not set.
    let home = tempfile::tempdir().unwrap();
    std::fs::copy(&pgpass, home.path().join(".pgpass")).unwrap();
    let from_home = Environment::empty().with_home(home.path());
    connect(&target(&role_url(&server, None), &from_home)).unwrap();
}

#[test]
fn the_url_beats_pgpassword_which_beats_the_password_file() {
    let server = TestServer::start();
    server.create_password_role(PASSWORD);
    let files = tempfile::tempdir().unwrap();
    let pgpass = password_file(files.path(), &format!("*:*:*:*:{WRONG}\n"), 0o600);
    let env = env().with_var("PGPASSFILE", pgpass.to_str().unwrap());
    assert!(connect(&target(&role_url(&server, None), &env)).is_err());
    let with_var = env.with_var("PGPASSWORD", PASSWORD);
    connect(&target(&role_url(&server, None), &with_var)).unwrap();
    let wrong_var = with_var.with_var("PGPASSWORD", WRONG);
    connect(&target(&role_url(&server, Some(PASSWORD)), &wrong_var)).unwrap();
}

/// Neither the message nor the Debug output of `err` holds `password`.
fn assert_hidden(err: &PgError, password: &str) {
    assert!(!err.to_string().contains(password), "{err}");
    assert!(!format!("{err:?}").contains(password), "{err:?}");
    let library: Error = Error::from(PgError::InvalidUrl(err.to_string()));
    assert!(!library.to_string().contains(password));
}

#[test]
fn a_refused_password_is_never_shown() {
    let server = TestServer::start();
    server.create_password_role(PASSWORD);
    let err = connect(&target(&role_url(&server, Some(WRONG)), &env()))
        .err()
        .expect("a wrong password accepted");
    assert!(err.is_refused_credentials(), "{err}");
    assert_hidden(&err, WRONG);
    let with_var = env().with_var("PGPASSWORD", WRONG);
    let err = connect(&target(&role_url(&server, None), &with_var))
        .err()
        .expect("a wrong password accepted");
    assert_hidden(&err, WRONG);
    let err = PgLock::new(&role_url(&server, Some(WRONG)), "deploy")
        .unwrap()
        .try_acquire()
        .expect_err("a wrong password accepted");
    assert!(!err.to_string().contains(WRONG), "{err}");
    assert!(!format!("{err:?}").contains(WRONG), "{err:?}");
}

#[test]
fn an_unreachable_server_is_reported_without_the_password() {
    let server = TestServer::start();
    let port = server.port();
    drop(server);
    let url = format!("postgres://postgres:{WRONG}@127.0.0.1:{port}/postgres");
    let err = connect(&target(&url, &env()))
        .err()
        .expect("connected to nothing");
    assert!(matches!(err, PgError::Connect { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("127.0.0.1:{port}/postgres")),
        "{err}"
    );
    assert_hidden(&err, WRONG);
}

#[test]
fn a_password_file_others_can_read_is_named_when_the_login_fails() {
    let server = TestServer::start();
    server.create_password_role(PASSWORD);
    let files = tempfile::tempdir().unwrap();
    let pgpass = password_file(files.path(), &format!("*:*:*:*:{PASSWORD}\n"), 0o644);
    let env = env().with_var("PGPASSFILE", pgpass.to_str().unwrap());
    let err = connect(&target(&role_url(&server, None), &env))
        .err()
        .expect("a file others can read was used");
    let text = err.to_string();
    assert!(text.contains("group or world access"), "{text}");
    assert!(text.contains(&pgpass.display().to_string()), "{text}");
    assert_hidden(&err, PASSWORD);
}

#[test]
fn a_missing_password_says_where_it_was_looked_for() {
    let server = TestServer::start();
    server.create_password_role(PASSWORD);
    let home = tempfile::tempdir().unwrap();
    let err = connect(&target(
        &role_url(&server, None),
        &Environment::empty().with_home(home.path()),
    ))
    .err()
    .expect("logged in without a password");
    let text = err.to_string();
    assert!(text.contains("no password was given"), "{text}");
    assert!(text.contains(".pgpass"), "{text}");
}

#[test]
fn transaction_and_statement_mode_poolers_are_refused() {
    let server = TestServer::start();
    for mode in [PoolMode::Transaction, PoolMode::Statement] {
        let pgbouncer = Pgbouncer::start(&server, mode);
        let target = target(&pgbouncer.url(), &env());
        // The first client of a fresh pool, and one that gets a server
        // session an earlier one used.
        for attempt in 0..3 {
            match connect(&target) {
                Err(err @ PgError::Pooler { .. }) => {
                    assert!(err.to_string().contains("pgbouncer"), "{err}");
                }
                Err(other) => panic!("{mode:?}, attempt {attempt}: {other}"),
                Ok(_) => panic!("{mode:?}, attempt {attempt}: accepted"),
            }
        }
        let lock = PgLock::new(&pgbouncer.url(), "deploy").unwrap();
        assert!(
            matches!(
                lock.try_acquire(),
                Err(ref err) if matches!(err.downcast_ref::<PgError>(), Some(PgError::Pooler { .. }))
            ),
            "{mode:?}"
        );
    }
}

#[test]
fn a_session_mode_pool_is_accepted() {
    let server = TestServer::start();
    let pgbouncer = Pgbouncer::start(&server, PoolMode::Session);
    let target = target(&pgbouncer.url(), &env());
    // One after the other (the second gets the first's server session,
    // reset), then two at once.
    drop(connect(&target).unwrap());
    let first = connect(&target).unwrap();
    let second = connect(&target).unwrap();
    drop((first, second));
    let lock = PgLock::new(&pgbouncer.url(), "deploy").unwrap();
    let guard = lock.try_acquire().unwrap();
    assert!(matches!(lock.try_acquire(), Err(Error::Busy { .. })));
    guard.release().unwrap();
}

#[test]
fn a_client_certificate_is_loaded_and_a_key_others_can_read_is_refused() {
    let server = TestServer::start_tls();
    let tls = server.tls();
    // The server's own pair serves as a client pair: it is only loaded
    // and offered, since this server asks for no client certificate.
    let with_cert = |key: &Path| {
        url(
            &server,
            "127.0.0.1",
            &format!(
                "sslmode=require&sslcert={}&sslkey={}",
                tls.server_cert.display(),
                key.display()
            ),
        )
    };
    assert!(encrypted(&target(&with_cert(&tls.server_key), &env())));
    let files = tempfile::tempdir().unwrap();
    let readable = files.path().join("client.key");
    std::fs::copy(&tls.server_key, &readable).unwrap();
    std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o644)).unwrap();
    let Err(err) = Target::parse_with(&with_cert(&readable), &env()) else {
        panic!("a key others can read was accepted")
    };
    assert!(matches!(err, PgError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("group or world access"), "{err}");
}
