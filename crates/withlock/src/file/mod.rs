//! The file lock: flock(2) on a lock file in a checked directory, with an
//! arrival-order queue of OFD record locks on the same file (Linux).
//!
//! `file_lock` is the `Lock` implementation; the rest is what it stands
//! on: the directory check, opening the lock file, the queue and its byte
//! layout, its key in a set's order, the stamps that say since when and in which mode, and the check
//! for foreign locks on the queue's bytes.

pub(crate) mod deadline_stamp;
pub(crate) mod file_holders;
pub(crate) mod file_key;
pub(crate) mod file_lock;
pub(crate) mod listing;
pub mod lock_dir;
pub(crate) mod lock_file;
pub(crate) mod obstruction;
pub(crate) mod place_stamp;
pub(crate) mod queue;
pub(crate) mod queue_bytes;
pub(crate) mod run_record;
pub(crate) mod since_stamp;
pub(crate) mod slot;
