//! withlock's etcd backend: a named lock kept on an etcd cluster, so that
//! processes on different machines exclude each other and the lock
//! survives the loss of any minority of the cluster's members. Built with
//! the `etcd` cargo feature.
//!
//! - **Client** (`client.rs`): etcd's v3 API through the gRPC-JSON gateway
//!   every etcd 3.4/3.5 member serves on its client port, over HTTP/1.1
//!   with a blocking client (no protoc, no async runtime); calls go to
//!   the members of the URL in turn, so one member down is not a failure.
//! - **URL** ([`Target`]): `etcd://HOST:PORT[,HOST:PORT...][/PREFIX]`,
//!   `etcds://` for TLS; user and password as etcdctl takes them.
//! - **Layout** (`line.rs`): etcd's own lock recipe (`etcdctl lock NAME`):
//!   a key `[PREFIX/]NAME/<lease id in hex>` put with the session's lease;
//!   the lowest create revision holds. withlock's keys carry a holder
//!   record ([`Record`]) that says who and how (exclusive, shared, `--max
//!   N`); a key without one (etcdctl's) counts as exclusive, so the two
//!   exclude each other both ways.
//! - **Waiting** ([`waiting`]): a watch for deletions under the lock's
//!   prefix, never a poll; a request that gives up revokes its lease,
//!   which deletes its key, so it leaves nothing in line.
//! - **Lease** ([`lease`]): one per lock request, kept alive by a thread;
//!   lost when revoked, expired, or not renewed within the detection
//!   bound (every member unreachable, or no quorum). Its TTL is the bound
//!   plus the caller's grace plus a margin, so a holder stops its command
//!   before the cluster can hand the lock on.
//! - **Fencing token**: the cluster revision at the grant
//!   ([`EtcdGuard::fence`]), which only grows.
//!
//! ```no_run
//! use withlock::{Lock, Mode};
//! use withlock::etcd::EtcdLock;
//!
//! let lock = EtcdLock::new("etcd://127.0.0.1:2379/ci", "deploy")?.with_mode(Mode::Shared);
//! let guard = lock.acquire()?;
//! // ... work under the lock ...
//! guard.release()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod cancel;
pub(crate) mod client;
mod error;
mod etcd_guard;
mod etcd_lock;
mod key;
pub mod lease;
mod line;
pub(crate) mod listing;
mod record;
mod run_record;
mod target;
mod tls;
pub mod waiting;

pub use error::EtcdError;
pub use etcd_guard::EtcdGuard;
pub use etcd_lock::{DEFAULT_GRACE, EtcdLock};
pub(crate) use key::OrderKey;
pub use lease::LeaseLost;
pub use listing::list;
pub use record::Record;
pub use target::{DEFAULT_PORT, Target, gives_password, is_etcd_url};
pub use waiting::abandon_waits;
