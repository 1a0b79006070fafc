//! The socket lock: a lock held by listening on a TCP, Unix or abstract
//! socket (Linux), exclusive only; its spec grammar and, for `unix:`, the
//! socket file beside it.

pub(crate) mod socket_lock;
pub(crate) mod socket_spec;
