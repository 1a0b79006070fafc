//! The one dedicated session a lock is held on.
//!
//! Each lock gets its own connection, never a pooled one: a session-level
//! advisory lock belongs to the server session, and a pooler that hands
//! the session to someone else (pgbouncer in transaction mode) would hand
//! the lock over too (detection: not yet, see docs/wip-postgres.md).
//!
//! The session is set up so the server never ends it on its own:
//! `idle_session_timeout`, `idle_in_transaction_session_timeout`,
//! `statement_timeout` and `lock_timeout` are 0. TCP keepalives (idle 5 s,
//! every 1 s, 3 probes) and a 10 s `TCP_USER_TIMEOUT` make a dead peer or
//! a cut network show up as a broken connection within about 10 s.
//! The password comes from the URL or, failing that, `PGPASSWORD`
//! (`~/.pgpass` is not read yet). TLS is not supported yet (`NoTls`).

use std::str::FromStr;
use std::time::Duration;

use postgres::{Client, Config, NoTls};

use crate::pg::error::PgError;
use crate::pg::identity::Identity;

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

/// The server settings every lock session runs with, in one round trip.
/// Set after connecting rather than as startup `options`, which poolers
/// such as pgbouncer refuse.
const SESSION_SETTINGS: &str = "\
SELECT set_config('statement_timeout', '0', false),
       set_config('lock_timeout', '0', false),
       set_config('idle_in_transaction_session_timeout', '0', false)";

/// `idle_session_timeout` exists from PostgreSQL 14 on; older servers
/// refuse it, which is ignored.
const IDLE_SESSION_TIMEOUT: &str = "SELECT set_config('idle_session_timeout', '0', false)";

/// A parsed connection URL (or key=value string), ready to open lock
/// sessions.
#[derive(Clone)]
pub struct Target {
    config: Config,
    server: String,
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

impl Target {
    /// Reads `url` (`postgres://user[:password]@host[:port]/dbname?...` or
    /// `host=... port=...`).
    pub fn parse(url: &str) -> Result<Target, PgError> {
        let mut config = Config::from_str(url).map_err(|e| PgError::InvalidUrl(e.to_string()))?;
        if config.get_password().is_none() {
            if let Ok(password) = std::env::var("PGPASSWORD") {
                config.password(password);
            }
        }
        if config.get_user().is_none() {
            if let Ok(user) = std::env::var("PGUSER") {
                config.user(&user);
            }
        }
        let host = match config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(host)) => host.clone(),
            _ => return Err(PgError::NoHost),
        };
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let dbname = config
            .get_dbname()
            .or(config.get_user())
            .unwrap_or("postgres");
        let server = format!("{host}:{port}/{dbname}");
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .keepalives_interval(KEEPALIVE_INTERVAL)
            .keepalives_retries(KEEPALIVE_RETRIES)
            .tcp_user_timeout(TCP_USER_TIMEOUT);
        Ok(Target { config, server })
    }

    /// `host:port/dbname`: the server as messages name it, without
    /// credentials.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Opens a new session for a lock held by `identity`, set up as the
    /// module docs say.
    pub fn connect(&self, identity: &Identity) -> Result<Client, PgError> {
        let connect_error = |cause| PgError::Connect {
            server: self.server.clone(),
            cause,
        };
        let mut config = self.config.clone();
        config.application_name(&identity.application_name());
        let mut client = config.connect(NoTls).map_err(connect_error)?;
        client
            .execute(SESSION_SETTINGS, &[])
            .map_err(connect_error)?;
        match client.execute(IDLE_SESSION_TIMEOUT, &[]) {
            Ok(_) => {}
            Err(e) if is_undefined_setting(&e) => {}
            Err(e) => return Err(connect_error(e)),
        }
        Ok(client)
    }
}

fn is_undefined_setting(e: &postgres::Error) -> bool {
    e.code() == Some(&postgres::error::SqlState::UNDEFINED_OBJECT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_is_named_without_the_password() {
        let target = Target::parse("postgres://alice:s3cret@db.example:6543/app").unwrap();
        assert_eq!(target.server(), "db.example:6543/app");
        assert!(!format!("{target:?}").contains("s3cret"));
    }

    #[test]
    fn unix_socket_urls_are_refused_for_now() {
        assert!(matches!(
            Target::parse("host=/run/postgresql"),
            Err(PgError::NoHost)
        ));
        assert!(matches!(
            Target::parse("postgres://a@b:notaport/x"),
            Err(PgError::InvalidUrl(_))
        ));
    }
}
