//! withlock's PostgreSQL backend: a named lock held as a session-level
//! advisory lock on a PostgreSQL server, so that processes on different
//! machines exclude each other. Built with the `postgres` cargo feature.
//!
//! - The lock name becomes a 64-bit advisory key by a documented, stable
//!   hash ([`advisory_key`]), negative so it never meets an application's
//!   own small keys.
//! - Each lock gets one dedicated connection ([`connection`]); the session's
//!   `application_name` carries the holder's pid, user, host and command
//!   ([`Identity`]), which other sessions read from `pg_stat_activity`.
//!   URLs, `PG*` variables, TLS (`sslmode`), `~/.pgpass` and Unix sockets
//!   work as in libpq; a pooler that shares server sessions between clients
//!   (pgbouncer in transaction mode) is detected and refused.
//! - Exclusive and shared locks are `pg_advisory_lock` and
//!   `pg_advisory_lock_shared`; a request that may not wait (see
//!   [`crate::Deadline`]) uses the `pg_try_` forms, and one with a deadline
//!   sets `lock_timeout` to what is left of it, so the server ends the
//!   wait: nothing polls.
//! - Holders and waiters come from `pg_locks` joined to `pg_stat_activity`
//!   ([`PgLock::pg_holders`]); [`list`] shows every withlock lock on the
//!   server, in one session.
//! - Every grant draws a fencing token ([`fence`]), which the guard keeps
//!   ([`PgGuard::fence`]), and records itself for a safe hand-over
//!   ([`handover`]), in withlock's state: one fixed schema, `withlock`,
//!   shared by every role ([`state`]).
//! - `--cancel-running` ([`PgLock::cancelling`]): a newer cancelling
//!   request asks holders that opted in to stop, by `NOTIFY` on the lock
//!   session, checked in `pg_locks` ([`cancel`]).
//! - `--max N` ([`PgLock::with_max`]) is a counting semaphore of N slot
//!   keys and a gate, served in arrival order ([`semaphore`]).
//!
//! ```no_run
//! use withlock::{Lock, Mode};
//! use withlock::PgLock;
//!
//! let lock = PgLock::new("postgres://app@db.example/app", "deploy")?.with_mode(Mode::Shared);
//! let guard = lock.acquire()?;
//! // ... work under the lock ...
//! guard.release()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod cancel;
pub mod connection;
mod conninfo;
mod endpoint;
mod environment;
mod error;
pub mod fence;
pub mod handover;
pub mod heartbeat;
mod holders;
mod identity;
mod key;
pub(crate) mod listing;
mod password;
mod pg_guard;
mod pg_lock;
mod pgpass;
mod pooler;
pub mod run_record;
pub mod semaphore;
mod semaphore_keys;
mod semaphore_line;
mod session_setup;
pub mod state;
mod tls;

pub use error::PgError;
pub use heartbeat::{LockLost, LossCause};
pub use holders::PgHolder;
pub use identity::{APPLICATION_NAME_PREFIX, Identity};
pub(crate) use key::OrderKey;
pub use key::{KEY_PREFIX, LockKeyParts, advisory_key};
pub use listing::list;
pub use pg_guard::PgGuard;
pub use pg_lock::PgLock;
