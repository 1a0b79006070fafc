//! The one server a lock's sessions go to: one host (a name, an IP
//! address or a Unix socket directory) and one port. A list of servers is
//! refused: a lock on it could be granted by two of them to clients that
//! reached different ones.

use std::net::IpAddr;
use std::path::Path;

use postgres::Config;
use postgres::config::Host;

use crate::pg::error::PgError;

/// The socket directory used when nothing names a host, if it exists.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";
/// The socket directory used when nothing names a host otherwise.
pub const FALLBACK_SOCKET_DIR: &str = "/tmp";

/// The socket directory used when nothing names a host.
pub(crate) fn default_socket_dir() -> &'static str {
    match Path::new(DEFAULT_SOCKET_DIR).is_dir() {
        true => DEFAULT_SOCKET_DIR,
        false => FALLBACK_SOCKET_DIR,
    }
}

/// The one place the session is opened at.
pub(crate) struct Endpoint {
    /// Host name, IP address, or socket directory.
    host: String,
    /// What the password file is searched for.
    pub(crate) pgpass_host: String,
    pub(crate) port: u16,
    /// Whether it is reached over TCP (else a Unix socket).
    pub(crate) tcp: bool,
}

impl Endpoint {
    /// The one host and port `config` names; more than one is refused.
    pub(crate) fn of(config: &Config) -> Result<Endpoint, PgError> {
        let (hosts, addrs) = (config.get_hosts(), config.get_hostaddrs());
        let count = hosts.len().max(addrs.len()).max(config.get_ports().len());
        if count > 1 {
            return Err(PgError::InvalidUrl(format!(
                "it names {count} hosts or ports: a lock must live on one server (clients that \
                 reached different servers would all be granted it), so name exactly one"
            )));
        }
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let endpoint = match (hosts.first(), addrs.first()) {
            (Some(Host::Tcp(host)), _) => Endpoint {
                host: host.clone(),
                pgpass_host: host.clone(),
                port,
                tcp: true,
            },
            (None, Some(addr)) => Endpoint {
                host: addr.to_string(),
                pgpass_host: addr.to_string(),
                port,
                tcp: true,
            },
            (Some(Host::Unix(dir)), addr) => {
                let dir = dir.to_string_lossy().into_owned();
                Endpoint {
                    // A hostaddr wins over a socket directory, as in libpq.
                    host: addr.map_or(dir.clone(), IpAddr::to_string),
                    pgpass_host: match dir == DEFAULT_SOCKET_DIR {
                        true => "localhost".to_owned(),
                        false => dir,
                    },
                    port,
                    tcp: addr.is_some(),
                }
            }
            (None, None) => unreachable!("driver_config always gives a host"),
        };
        Ok(endpoint)
    }

    /// The server as messages name it: `host:port/dbname`.
    pub(crate) fn describe(&self, dbname: &str) -> String {
        match self.host.contains(':') && !self.host.starts_with('/') {
            true => format!("[{}]:{}/{dbname}", self.host, self.port),
            false => format!("{}:{}/{dbname}", self.host, self.port),
        }
    }
}
