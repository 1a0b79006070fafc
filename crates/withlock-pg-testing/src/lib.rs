//! What withlock's tests need to exercise the PostgreSQL backend against a
//! real server: a private server per test ([`TestServer`]) and a TCP proxy
//! that can freeze or sever the connection ([`Proxy`]). Dev-only.
#![deny(missing_docs)]

mod proxy;
mod server;

pub use proxy::Proxy;
pub use server::{DEFAULT_BIN, TestServer};
