//! What withlock's tests need to exercise the PostgreSQL backend against a
//! real server: a private server per test ([`TestServer`]), a TCP proxy
//! that can freeze or sever the connection ([`Proxy`]), and pgbouncer in
//! front of it ([`Pgbouncer`]). Dev-only.
#![deny(missing_docs)]

mod pgbouncer;
mod proxy;
mod server;
mod tls;

pub use pgbouncer::{Pgbouncer, PoolMode};
pub use proxy::Proxy;
pub use server::{DEFAULT_BIN, PASSWORD_ROLE, ServerSettings, TestServer, on_pair};
pub use tls::{SERVER_NAME, TlsFiles};
