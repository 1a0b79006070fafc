//! What a lock server itself vouches for about a session that holds or
//! waits for a lock, as opposed to what the session declares about itself.
//!
//! A PostgreSQL session names its holder in `application_name`, which any
//! role can set to anything: another role can pose as "pid 1 on prod-db
//! (root)". The server knows two things the session cannot choose: the
//! role it logged in as (`pg_stat_activity.usename`, visible to every
//! role) and where it connected from (`client_addr`: an IP address, or a
//! local Unix socket; only the session's own role, members of it,
//! superusers and `pg_read_all_stats` see it, others see nothing).

use std::fmt;

use crate::escape;

/// The server's own view of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSession {
    /// The server process serving it (PostgreSQL's backend pid).
    pub backend_pid: i32,
    /// The role it logged in as; `None` if the session has just ended.
    pub role: Option<String>,
    /// Where it connected from.
    pub client: ClientAddress,
    /// True when the session declares a withlock holder (pid, user, host,
    /// command); false for any other session (`psql` holding the key).
    pub declared: bool,
}

/// Where a session connected from, as the server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAddress {
    /// Over TCP, from this address.
    Ip(String),
    /// Over a Unix socket on the server's machine.
    LocalSocket,
    /// Not shown to this role (see the module docs).
    Hidden,
}

impl ClientAddress {
    /// The address for JSON: the IP address, `"local"` for a Unix socket,
    /// `None` when hidden.
    pub fn as_json(&self) -> Option<&str> {
        match self {
            ClientAddress::Ip(ip) => Some(ip),
            ClientAddress::LocalSocket => Some("local"),
            ClientAddress::Hidden => None,
        }
    }
}

impl fmt::Display for ClientAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientAddress::Ip(ip) => write!(f, "from {}", escape::text(ip)),
            ClientAddress::LocalSocket => f.write_str("over a local socket"),
            ClientAddress::Hidden => f.write_str("from an address hidden from this role"),
        }
    }
}

impl fmt::Display for ServerSession {
    /// `role ci from 10.0.0.7`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let role = self
            .role
            .as_deref()
            .map_or_else(|| "?".to_owned(), escape::text);
        write!(f, "role {role} {}", self.client)
    }
}
