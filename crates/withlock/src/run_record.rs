//! What `--once-per` asks of a lock: when a run under it last succeeded.
//! Each kind that can keep the record keeps it its own way (a lock file's
//! `file/run_record.rs`, a PostgreSQL lock's `pg/run_record.rs`); a socket
//! lock has nowhere to keep one.

use std::time::{Duration, SystemTime};

/// The last successful run of a lock's command, as its kind recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastSuccess {
    /// When that run took the lock (for a server lock, on the server's
    /// clock).
    pub at: SystemTime,
    /// How long ago that was, on the same clock; zero for a record from
    /// the future (a clock set back).
    pub ago: Duration,
}
