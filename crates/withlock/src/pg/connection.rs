//! The one dedicated session a lock is held on.
//!
//! Each lock gets its own connection, never a pooled one: a session-level
//! advisory lock belongs to the server session, and a pooler that hands
//! the session to someone else (pgbouncer in transaction mode) would hand
//! the lock over too. Such a pooler is detected when the session opens and
//! refused ([`PgError::Pooler`]; how, in the `pooler` module).
//!
//! **Where.** A URL (`postgres://user:password@host:port/dbname?...`) or a
//! `key=value` string, as libpq reads them, with libpq's environment
//! defaults for what they leave out: `PGHOST`, `PGHOSTADDR`, `PGPORT`,
//! `PGDATABASE`, `PGUSER` (else the effective user's name), and the
//! database defaults to the user name. A host starting with `/` is a Unix
//! socket directory (`postgres:///db?host=/var/run/postgresql`, or
//! percent-encoded in the URL's host part); with no host at all, the
//! default socket directory (`/var/run/postgresql` where it exists, as
//! Debian's and Red Hat's libpq; else `/tmp`, upstream's). Exactly one
//! host: a lock on a list of servers could be granted by two of them to
//! clients that reached different ones, so lists are refused.
//!
//! **Password**, in libpq's order: the URL, `PGPASSWORD`, then the
//! password file (`passfile` in the URL, else `PGPASSFILE`, else
//! `~/.pgpass`; see the `pgpass` module). An empty password counts as
//! none. The password is never part of a message or a `Debug` output.
//!
//! **TLS**: `sslmode`, `sslrootcert`, `sslcert`, `sslkey` in the URL, else
//! `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`, with libpq's
//! meanings (the `tls` module has the table); `prefer` by default. Over a
//! Unix socket there is no TLS, as in libpq.
//!
//! **Settings.** The session is set up so the server never ends it on its
//! own: `idle_session_timeout` (PostgreSQL 14+; skipped before),
//! `idle_in_transaction_session_timeout`, `statement_timeout` and
//! `lock_timeout` are 0, set with `set_config` after connecting rather
//! than as startup options, which poolers refuse. Over TCP, keepalives
//! (idle 5 s, every 1 s, 3 probes) and a 10 s `TCP_USER_TIMEOUT` make a
//! dead peer or a cut network show up as a broken connection within about
//! 10 s; a Unix socket breaks at once when the server goes.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, Config, NoTls};

use crate::pg::conninfo::{self, Split};
use crate::pg::endpoint::{Endpoint, default_socket_dir};
use crate::pg::error::{PgError, with_causes};
use crate::pg::identity::Identity;
use crate::pg::password::{complete_password, is_password_problem};
use crate::pg::pooler::{self, Observation};
use crate::pg::session_setup::{Values, read_session, set_up_then};
use crate::pg::tls::{self, SslMode, Tls, TlsOptions};

pub use crate::pg::endpoint::{DEFAULT_SOCKET_DIR, FALLBACK_SOCKET_DIR};
pub use crate::pg::environment::Environment;

/// Keepalive idle time before the first probe.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
/// Time between keepalive probes.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// Unanswered probes before the kernel gives the connection up.
pub const KEEPALIVE_RETRIES: u32 = 3;
/// How long sent data may stay unacknowledged before the kernel gives the
/// connection up.
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The settings withlock reads itself; the driver gets the rest.
const OWN_SETTINGS: &[&str] = &["sslmode", "sslrootcert", "sslcert", "sslkey", "passfile"];

/// A parsed connection URL (or key=value string), ready to open lock
/// sessions.
#[derive(Clone)]
pub struct Target {
    config: Config,
    tls: Tls,
    server: String,
    /// Why no password could be found, shown if authentication fails.
    password_hint: Option<String>,
    /// Where the TLS mode came from, as the user wrote it
    /// (`sslmode=require`, `PGSSLMODE=require`), for a TLS failure.
    tls_setting: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Config's own Debug redacts the password, but say less anyway.
        f.debug_struct("Target")
            .field("server", &self.server)
            .finish()
    }
}

impl PartialEq for Target {
    fn eq(&self, other: &Target) -> bool {
        self.server == other.server && self.config.get_user() == other.config.get_user()
    }
}

impl Eq for Target {}

/// Whether `url` gives a password itself (`postgres://user:PASSWORD@...`,
/// `?password=`, `password=`). False for a string that cannot be read:
/// reading it for a lock says why, without the password.
pub fn gives_password(url: &str) -> bool {
    conninfo::split(url, OWN_SETTINGS)
        .ok()
        .and_then(|split| Config::from_str(&split.rest).ok())
        .is_some_and(|config| config.get_password().is_some_and(|p| !p.is_empty()))
}

impl Target {
    /// Reads `url` (`postgres://user[:password]@host[:port]/dbname?...` or
    /// `host=... port=...`), completed from this process's environment as
    /// the module docs say.
    pub fn parse(url: &str) -> Result<Target, PgError> {
        Target::parse_with(url, &Environment::current())
    }

    /// Reads `url`, completed from `env`.
    pub fn parse_with(url: &str, env: &Environment) -> Result<Target, PgError> {
        let split = conninfo::split(url, OWN_SETTINGS).map_err(PgError::InvalidUrl)?;
        let own = OwnSettings::read(&split, env)?;
        let mut config = driver_config(&split, env)?;
        let endpoint = Endpoint::of(&config)?;
        let server = endpoint.describe(config.get_dbname().unwrap_or_default());
        let password_hint = complete_password(&mut config, &endpoint, own.passfile.as_deref(), env);
        let tls = match endpoint.tcp {
            true => tls::prepare(&own.tls, env.home()).map_err(|reason| PgError::Tls {
                server: server.clone(),
                reason,
            })?,
            false => Tls::off(),
        };
        config
            .ssl_mode(tls.driver_mode)
            .connect_timeout(CONNECT_TIMEOUT);
        if endpoint.tcp {
            config
                .keepalives(true)
                .keepalives_idle(KEEPALIVE_IDLE)
                .keepalives_interval(KEEPALIVE_INTERVAL)
                .keepalives_retries(KEEPALIVE_RETRIES)
                .tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        Ok(Target {
            config,
            tls,
            server,
            password_hint,
            tls_setting: own.tls_setting,
        })
    }

    /// The server as messages name it, without credentials:
    /// `host:port/dbname`, where the host is the socket directory for a
    /// Unix socket (`/var/run/postgresql:5432/app`).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Opens a new session for a lock held by `identity`, set up as the
    /// module docs say, and refuses it if it runs through a pooler that
    /// shares server sessions.
    pub fn connect(&self, identity: &Identity) -> Result<Client, PgError> {
        self.connect_session(identity).map(|(client, _)| client)
    }

    /// [`Target::connect`], also returning the session's backend pid (read
    /// by the setup anyway, so it costs no round trip of its own).
    pub fn connect_session(&self, identity: &Identity) -> Result<(Client, i32), PgError> {
        self.connect_session_then(identity, &[])
            .map(|(client, pid, _)| (client, pid))
    }

    /// [`Target::connect_session`] that also evaluates the SQL expressions
    /// `then` in the statement that finishes the pooler check, saving a
    /// round trip each, when that check lets it (see `session_setup`);
    /// their values as text, or None when they were not run.
    pub(crate) fn connect_session_then(
        &self,
        identity: &Identity,
        then: &[String],
    ) -> Result<(Client, i32, Option<Values>), PgError> {
        let mut client = self.open(&identity.application_name())?;
        let (observation, done) =
            set_up_then(&mut client, then).map_err(|e| self.connect_error(e))?;
        let evidence = match pooler::evidence(&observation) {
            Some(evidence) => Some(evidence),
            None if pooler::worth_probing(&observation) => self.probe(&observation),
            None => None,
        };
        match evidence {
            Some(evidence) => Err(PgError::Pooler {
                server: self.server.clone(),
                evidence,
            }),
            None => Ok((client, observation.pid, done)),
        }
    }

    fn open(&self, application_name: &str) -> Result<Client, PgError> {
        let mut config = self.config.clone();
        config.application_name(application_name);
        let connected = match &self.tls.connector {
            Some(tls) => config.connect(tls.clone()),
            None => config.connect(NoTls),
        };
        connected.map_err(|e| self.connect_error(e))
    }

    /// Ends the statement `client` is running, from another thread: the
    /// server's cancel request, over a connection of its own with the same
    /// TLS settings; blocks for that round trip. A statement cancelled
    /// while it waits for a lock fails (`57014`); a request that comes
    /// between statements is ignored by the server.
    pub(crate) fn statement_canceller(&self, client: &Client) -> impl Fn() + Send + 'static {
        let token = client.cancel_token();
        let tls = self.tls.connector.clone();
        move || {
            // Best effort: if the request cannot be sent, the wait goes on
            // until granted or timed out, as it would have anyway.
            let _ = match &tls {
                Some(tls) => token.cancel_query(tls.clone()),
                None => token.cancel_query(NoTls),
            };
        }
    }

    /// A second, short session: whether it lands in the server session of
    /// the first (see `pooler`). Bounded, since a session-mode pool with
    /// no free server session makes it wait; a wait means no sharing.
    fn probe(&self, observation: &Observation) -> Option<String> {
        let target = self.clone();
        let (sender, receiver) = std::sync::mpsc::channel();
        // The thread is left behind if the pool keeps it waiting; it ends
        // when the pool gives up or serves it.
        std::thread::spawn(move || {
            let seen = target
                .open("withlock pooler check")
                .ok()
                .and_then(|mut client| read_session(&mut client).ok());
            sender.send(seen).ok();
        });
        let seen = receiver.recv_timeout(pooler::PROBE_BOUND).ok().flatten()?;
        pooler::probe_evidence(observation, &seen)
    }

    /// What went wrong connecting, as the error that names its fix: no
    /// such database or role, TLS that cannot be had as asked, or else
    /// the driver's error (with where no password was found, for a login
    /// that needed one).
    fn connect_error(&self, cause: postgres::Error) -> PgError {
        let server = self.server.clone();
        if let Some(db) = cause.as_db_error() {
            let missing = db.message().ends_with("does not exist");
            match *db.code() {
                SqlState::INVALID_CATALOG_NAME => {
                    return PgError::NoDatabase {
                        server,
                        database: self.config.get_dbname().unwrap_or_default().to_owned(),
                    };
                }
                SqlState::INVALID_AUTHORIZATION_SPECIFICATION if missing => {
                    return PgError::NoRole {
                        server,
                        role: self.config.get_user().unwrap_or_default().to_owned(),
                    };
                }
                _ => {}
            }
        }
        if let Some(reason) = tls_failure(&cause, &self.tls_setting) {
            return PgError::Tls { server, reason };
        }
        let hint = match (&self.password_hint, is_password_problem(&cause)) {
            (Some(hint), true) => format!("; {hint}"),
            _ if cause.code() == Some(&SqlState::TOO_MANY_CONNECTIONS) => {
                "; every connection the server allows is in use (max_connections, each \
                 holder and waiter takes one): try again later, raise max_connections, or \
                 run fewer clients at once"
                    .to_owned()
            }
            _ => String::new(),
        };
        PgError::Connect {
            server: self.server.clone(),
            cause,
            hint,
        }
    }
}

/// Why a TLS handshake failed, as one line naming the setting that asked
/// for TLS and the fix; `None` for an error that is not a handshake's.
fn tls_failure(cause: &postgres::Error, setting: &str) -> Option<String> {
    // The driver's handshake errors have no code of their own, only this
    // text (tokio-postgres: "error performing TLS handshake").
    let text = with_causes(cause);
    if !text.starts_with("error performing TLS handshake") {
        return None;
    }
    if text.contains("server does not support TLS") {
        return Some(format!(
            "the server does not offer TLS, and {setting} needs it: turn on ssl in the \
             server's postgresql.conf, or connect without encryption with sslmode=prefer or \
             sslmode=disable"
        ));
    }
    Some(format!(
        "{text}, so TLS cannot be had as {setting} asks: check sslrootcert and the host name, \
         or choose a mode that checks less (sslmode=require encrypts without checking the \
         server)"
    ))
}

/// The settings withlock reads itself.
struct OwnSettings {
    tls: TlsOptions,
    /// Where `sslmode` came from, as written (`sslmode=require`,
    /// `PGSSLMODE=require`, or the default).
    tls_setting: String,
    passfile: Option<PathBuf>,
}

impl OwnSettings {
    fn read(split: &Split, env: &Environment) -> Result<OwnSettings, PgError> {
        let given = |key: &str, var: &str| {
            split
                .taken
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
                .or_else(|| env.var(var).map(str::to_owned))
        };
        let mode = given("sslmode", "PGSSLMODE")
            .map(|mode| SslMode::parse(&mode))
            .transpose()
            .map_err(PgError::InvalidUrl)?;
        let in_url = split
            .taken
            .iter()
            .any(|(k, v)| k == "sslmode" && !v.is_empty());
        let tls_setting = match (mode, in_url) {
            (Some(mode), true) => format!("sslmode={}", mode.name()),
            (Some(mode), false) => format!("PGSSLMODE={}", mode.name()),
            (None, _) => "the default sslmode".to_owned(),
        };
        Ok(OwnSettings {
            tls_setting,
            tls: TlsOptions {
                mode,
                root_cert: given("sslrootcert", "PGSSLROOTCERT"),
                cert: given("sslcert", "PGSSLCERT").map(PathBuf::from),
                key: given("sslkey", "PGSSLKEY").map(PathBuf::from),
            },
            passfile: given("passfile", "PGPASSFILE").map(PathBuf::from),
        })
    }
}

/// The driver's configuration, with libpq's defaults for what the string
/// leaves out.
fn driver_config(split: &Split, env: &Environment) -> Result<Config, PgError> {
    let env_port = match (split.port_given, env.var("PGPORT")) {
        (false, Some(port)) => Some(
            port.parse::<u16>()
                .map_err(|_| PgError::InvalidUrl("PGPORT is not a port number".into()))?,
        ),
        _ => None,
    };
    // The driver takes 5432 for a URL host without a port: put PGPORT there.
    let text = match env_port {
        Some(port) => conninfo::with_authority_port(&split.rest, port),
        None => split.rest.clone(),
    };
    let mut config = Config::from_str(&text).map_err(|e| {
        PgError::InvalidUrl(format!("{}; expected {}", describe(&e), conninfo::FORM))
    })?;
    if let (Some(port), true) = (env_port, config.get_ports().is_empty()) {
        config.port(port);
    }
    if config.get_hosts().is_empty() {
        for host in env.var("PGHOST").into_iter().flat_map(|h| h.split(',')) {
            config.host(host);
        }
    }
    if config.get_hostaddrs().is_empty() {
        if let Some(addr) = env.var("PGHOSTADDR") {
            let addr = IpAddr::from_str(addr)
                .map_err(|_| PgError::InvalidUrl("PGHOSTADDR is not an IP address".into()))?;
            config.hostaddr(addr);
        }
    }
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        config.host_path(default_socket_dir());
    }
    if config.get_user().is_none_or(str::is_empty) {
        let user = env.var("PGUSER").or(env.os_user()).ok_or_else(|| {
            PgError::InvalidUrl("no user name: give one in the URL or in PGUSER".into())
        })?;
        config.user(user);
    }
    if config.get_dbname().is_none_or(str::is_empty) {
        let dbname = env
            .var("PGDATABASE")
            .or(config.get_user())
            .unwrap_or_default()
            .to_owned();
        config.dbname(&dbname);
    }
    Ok(config)
}

/// The driver's reason a string is invalid, with its causes ("unknown
/// option `sslcrl`"); the string itself is never repeated.
fn describe(error: &postgres::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let mut more = cause.to_string();
        // "unexpected character at byte N: expected `=` but got `c`": the
        // character may belong to a password.
        if let Some(at) = more.find(" but got") {
            more.truncate(at);
        }
        text = format!("{text}: {more}");
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        Environment::empty().with_os_user("osuser")
    }

    fn parse(url: &str) -> Result<Target, PgError> {
        Target::parse_with(url, &env())
    }

    #[test]
    fn the_server_is_named_without_the_password() {
        let target = parse("postgres://alice:s3cret@db.example:6543/app").unwrap();
        assert_eq!(target.server(), "db.example:6543/app");
        assert!(!format!("{target:?}").contains("s3cret"));
    }

    #[test]
    fn unix_socket_hosts_are_accepted_in_every_form() {
        for url in [
            "postgres:///app?host=/run/pg",
            "postgresql://%2Frun%2Fpg/app",
            "host=/run/pg dbname=app",
        ] {
            let target = parse(url).unwrap();
            assert_eq!(target.server(), "/run/pg:5432/app", "{url}");
            assert!(
                target.tls.connector.is_none(),
                "no TLS over a socket: {url}"
            );
        }
        let target = parse("postgres://%2Frun%2Fpg:6000/app?sslmode=verify-full").unwrap();
        assert_eq!(target.server(), "/run/pg:6000/app");
    }

    #[test]
    fn keepalives_are_set_for_tcp_only() {
        assert!(
            parse("postgres://h/db")
                .unwrap()
                .config
                .get_tcp_user_timeout()
                .is_some()
        );
        assert!(
            parse("host=/run/pg")
                .unwrap()
                .config
                .get_tcp_user_timeout()
                .is_none()
        );
    }

    #[test]
    fn no_host_means_the_default_socket_directory() {
        let target = parse("postgres:///app").unwrap();
        assert_eq!(
            target.server(),
            format!("{}:5432/app", default_socket_dir())
        );
    }

    #[test]
    fn the_environment_fills_in_what_the_url_leaves_out() {
        let env = env()
            .with_var("PGHOST", "envhost")
            .with_var("PGPORT", "6000")
            .with_var("PGDATABASE", "envdb")
            .with_var("PGUSER", "envuser");
        let target = Target::parse_with("postgres://", &env).unwrap();
        assert_eq!(target.server(), "envhost:6000/envdb");
        assert_eq!(target.config.get_user(), Some("envuser"));
        let target = Target::parse_with("postgres://h/db", &env).unwrap();
        assert_eq!(
            target.server(),
            "h:6000/db",
            "PGPORT for a host without a port"
        );
        let target = Target::parse_with("postgres://u@h:7000/db", &env).unwrap();
        assert_eq!(target.server(), "h:7000/db");
        assert_eq!(target.config.get_user(), Some("u"));
        let target = Target::parse_with("dbname=x", &env).unwrap();
        assert_eq!(target.server(), "envhost:6000/x");
    }

    #[test]
    fn the_user_defaults_to_the_os_user_and_the_database_to_the_user() {
        let target = parse("postgres://h").unwrap();
        assert_eq!(target.config.get_user(), Some("osuser"));
        assert_eq!(target.server(), "h:5432/osuser");
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(parse("postgres://[::1]:5/d").unwrap().server(), "[::1]:5/d");
        assert_eq!(
            parse("hostaddr=::1 dbname=d").unwrap().server(),
            "[::1]:5432/d"
        );
    }

    #[test]
    fn several_hosts_are_refused() {
        for url in ["postgres://a,b/db", "host=a,b", "host=a port=1,2"] {
            let Err(PgError::InvalidUrl(why)) = parse(url) else {
                panic!("{url} accepted")
            };
            assert!(why.contains("one server"), "{why}");
        }
    }

    #[test]
    fn invalid_urls_say_why_without_repeating_the_url() {
        let Err(PgError::InvalidUrl(why)) = parse("postgres://a:s3cret@b:notaport/x") else {
            panic!("accepted")
        };
        assert!(why.contains("port"), "{why}");
        assert!(!why.contains("s3cret"), "{why}");
        let Err(PgError::InvalidUrl(why)) = parse("postgres://a:s3cret@b/x?sslcrl=f") else {
            panic!("accepted")
        };
        assert!(why.contains("sslcrl"), "{why}");
        let Err(err) = parse("password=s3cret x") else {
            panic!("accepted")
        };
        assert!(!err.to_string().contains("s3cret"), "{err}");
        let Err(PgError::InvalidUrl(why)) = parse("postgres://h/d?sslmode=verify_full") else {
            panic!("accepted")
        };
        assert!(why.contains("verify-full"), "{why}");
    }

    #[test]
    fn the_password_comes_from_the_url_then_pgpassword_then_the_file() {
        let home = tempfile::tempdir().unwrap();
        let pgpass = home.path().join(".pgpass");
        std::fs::write(&pgpass, "h:5432:db:u:from-file\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pgpass, std::fs::Permissions::from_mode(0o600)).unwrap();
        let env = env().with_home(home.path());
        let password = |url: &str, env: &Environment| {
            let target = Target::parse_with(url, env).unwrap();
            target
                .config
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned())
        };
        assert_eq!(
            password("postgres://u@h/db", &env).as_deref(),
            Some("from-file")
        );
        let with_var = env.clone().with_var("PGPASSWORD", "from-var");
        assert_eq!(
            password("postgres://u@h/db", &with_var).as_deref(),
            Some("from-var")
        );
        assert_eq!(
            password("postgres://u:from-url@h/db", &with_var).as_deref(),
            Some("from-url")
        );
        assert_eq!(
            password("postgres://u:@h/db", &env).as_deref(),
            Some("from-file")
        );
        assert_eq!(password("postgres://v@h/db", &env), None);
    }

    #[test]
    fn the_password_file_can_be_named_and_matches_localhost_for_the_default_socket() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        let text = "localhost:5432:db:u:sock\n/run/x:5432:db:u:other\nh:*:*:u:named\n";
        std::fs::write(&file, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let env = env().with_var("PGPASSFILE", file.to_str().unwrap());
        let password = |url: &str| {
            let target = Target::parse_with(url, &env).unwrap();
            target
                .config
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned())
        };
        let default = "postgres://u@%2Fvar%2Frun%2Fpostgresql/db";
        assert_eq!(password(default).as_deref(), Some("sock"));
        assert_eq!(
            password("host=/run/x user=u dbname=db").as_deref(),
            Some("other")
        );
        let named = format!("postgres://u@h/db?passfile={}", file.display());
        let target = Target::parse_with(&named, &Environment::empty()).unwrap();
        assert_eq!(target.config.get_password(), Some(&b"named"[..]));
    }

    #[test]
    fn debug_output_never_shows_passwords() {
        let env = env().with_var("PGPASSWORD", "s3cret");
        assert!(!format!("{env:?}").contains("s3cret"));
        let target = Target::parse_with("postgres://h/db", &env).unwrap();
        assert!(!format!("{target:?}").contains("s3cret"));
    }

    #[test]
    fn verify_modes_without_a_root_are_refused_at_parse_time() {
        let home = tempfile::tempdir().unwrap();
        let env = env().with_home(home.path());
        let Err(err) = Target::parse_with("postgres://h/db?sslmode=verify-full", &env) else {
            panic!("accepted")
        };
        assert!(matches!(err, PgError::Tls { .. }), "{err:?}");
        let with_var = env.with_var("PGSSLMODE", "verify-ca");
        assert!(Target::parse_with("postgres://h/db", &with_var).is_err());
        assert!(Target::parse_with("postgres://h/db?sslmode=require", &with_var).is_ok());
    }
}
