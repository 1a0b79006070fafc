//! Named locks that are kernel-backed, multi-user and safe in shared
//! directories: the protocol behind the `withlock` command.
//!
//! Linux only. A [`FileLock`] is flock(2) on a lock file, its holder read
//! from `/proc/locks` and `/proc/<pid>`; a [`SocketLock`] is a listening
//! TCP, Unix or abstract socket (exclusive only), its holder named through
//! `SO_PEERCRED` where the kernel gives it; with the `postgres` cargo
//! feature, a `PgLock` is an advisory lock on a PostgreSQL server (the
//! `pg` module); with the `etcd` feature, an `EtcdLock` is a key in line
//! on an etcd cluster (the `etcd` module). [`AnyLock`] is any of them, chosen by the spec (`deploy`,
//! `./x.lock`, `tcp:4711`, `unix:/run/x.sock`, `abstract:x`, or a name on
//! a server; the grammar is in [`spec`]).
//!
//! Several locks are a [`LockSet`], taken all or none in one global order
//! so that callers naming them in any order never deadlock; `NAME=shared`
//! gives one its own mode ([`parse_spec`]). A [`Supersede`] watch makes a
//! waiting request give up when a newer superseding request comes
//! ([`Error::Superseded`]); a [`CancelWatch`] lets a newer cancelling
//! request stop a holder that opted in ([`cancel`]); [`hold`] is how a
//! background hold of locks and a release of it find each other. A [`WaitCancel`]
//! handle ends a wait from another thread (an asyncio task waiting through
//! a helper thread).
//!
//! ```no_run
//! use withlock::{FileLock, Lock, Mode};
//!
//! let lock = FileLock::named("deploy", None)?.with_mode(Mode::Exclusive);
//! match lock.try_acquire() {
//!     Ok(_guard) => println!("deploying"),
//!     Err(e) if e.is_conflict() => eprintln!("{e}"),
//!     Err(e) => return Err(e.into()),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod announce;
mod any_lock;
mod backend_error;
pub mod cancel;
mod cancel_request;
mod cancelled;
mod deadline;
mod error;
mod error_kind;
pub mod escape;
#[cfg(feature = "etcd")]
pub mod etcd;
mod file;
mod flock_wait;
pub mod fork_child;
pub mod hold;
mod holder;
mod inspect;
mod lock;
mod lock_loss;
mod lock_set;
mod lock_status;
mod name;
mod ownership;
mod path_key;
mod peer_check;
#[cfg(feature = "postgres")]
pub mod pg;
mod proc_locks;
pub mod readable;
mod request;
mod run_record;
mod server_session;
mod signal_wake;
mod socket;
pub mod spec;
pub mod supersede;
mod timer_signal;
mod wait_cancel;

pub use any_lock::{AnyGuard, AnyLock, Kind, LockKey, abandon_waits};
#[cfg(feature = "postgres")]
pub use any_lock::{list_on_server, server_url_gives_password};
pub use backend_error::BackendError;
pub use cancel::{CancelWatch, Cancelled};
pub use deadline::Deadline;
pub use error::{Error, Result};
pub use error_kind::ErrorKind;
#[cfg(feature = "etcd")]
pub use etcd::{EtcdGuard, EtcdLock};
pub use file::file_lock::{FileGuard, FileLock};
pub use file::lock_dir;
pub use file::lock_file::LOCK_FILE_MODE;
pub use holder::{Holder, Holders, HoldersText, human_duration};
pub use inspect::list;
pub use lock::{Lock, NoHooks, WaitHooks, WaitStopper, with_lock};
pub use lock_loss::LockLoss;
pub use lock_set::{LockSet, SetGuard, SetHooks, parse_spec};
pub use lock_status::{Found, LockStatus};
pub use name::{LOCK_FILE_SUFFIX, LockName, MAX_NAME_LEN};
#[cfg(feature = "postgres")]
pub use pg::{PgGuard, PgLock};
pub use request::{Mode, Wait};
pub use run_record::LastSuccess;
pub use server_session::{ClientAddress, ServerSession};
pub use signal_wake::wake_waits_on_handled_signals;
pub use socket::socket_file::TAKEOVER_SUFFIX;
pub use socket::socket_lock::{SocketGuard, SocketLock};
pub use socket::socket_spec::{MAX_SOCKET_PATH, SocketAddress};
pub use spec::{FileTarget, LockSpec, LockTarget};
pub use supersede::{Supersede, SupersedeHooks};
pub use timer_signal::timer_signal;
pub use wait_cancel::{WaitCancel, WaitCancelHooks};
