//! What a holder that was cancelled learns: which lock, and who asked
//! (see [`crate::cancel`]).

use crate::holder::Holder;

/// A holder was cancelled: the lock it was asked for and who asked.
#[derive(Debug, Clone)]
pub struct Cancelled {
    /// The lock, as a person would name it.
    pub lock: String,
    /// The newer request: its pid, user and command, as far as they are
    /// known.
    pub by: Holder,
    /// The machine the newer request runs on (this one for a file lock;
    /// for a server lock, as its session declares it).
    pub host: String,
}
