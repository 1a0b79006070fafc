//! The socket lock: a lock held by listening on a TCP, Unix or abstract
//! socket (Linux), exclusive only; its spec grammar, its kernel address,
//! its key in a set's order and, for `unix:`, the socket file at its path.

pub(crate) mod listing;
pub(crate) mod sockaddr;
pub(crate) mod socket_file;
pub(crate) mod socket_key;
pub(crate) mod socket_lock;
pub(crate) mod socket_spec;
