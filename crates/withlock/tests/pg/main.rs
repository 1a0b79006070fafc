//! Tests of the PostgreSQL backend against a real server: each test starts
//! its own (see the `withlock-pg-testing` crate) and synchronises on what
//! `pg_locks` shows, never on sleeps.

mod acquire;
mod connection;
mod fence;
mod key;
mod loss;
mod order;
mod semaphore;
mod state;
mod wait;
