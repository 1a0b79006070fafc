//! What a listing says about one lock: its name, where it lives, what was
//! found there, and its holders and waiters. Each kind of lock fills it in
//! for its own locks (`file/listing.rs`, `socket/listing.rs`,
//! `pg/listing.rs`); [`crate::list`] gathers them.

use std::path::PathBuf;

use crate::holder::Holders;

/// One lock and who holds and waits for it.
#[derive(Debug, Clone)]
pub struct LockStatus {
    /// The lock's name (its file name without `.lock`).
    pub name: String,
    /// The lock file (for a socket lock, its socket file or spec); empty
    /// for a lock on a server.
    pub path: PathBuf,
    /// For a lock on a PostgreSQL server, the server as `host:port/dbname`;
    /// `None` for a lock on this machine.
    pub server: Option<String>,
    /// What is at `path`.
    pub found: Found,
    /// Its holders and waiters.
    pub holders: Holders,
    /// What obstructs the lock's queue, so that requests are served
    /// unordered, and who holds it: a foreign record lock on a lock file's
    /// queue (see the README); `None` for anything else.
    pub obstruction: Option<String>,
}

/// What a listing found at a lock's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// The lock file, or a `unix:` lock's socket file.
    File,
    /// Nothing: the lock was never used here, or its file was removed.
    Nothing,
    /// Something withlock would not lock, so it was skipped: what it is.
    Skipped(String),
    /// There is no file to look for: a `tcp:` or `abstract:` lock, or a
    /// lock on a server.
    NoFile,
}

impl LockStatus {
    /// The lock's state in a listing: `free`, `held`, `obstructed` (free,
    /// but a foreign lock obstructs its queue), or `skipped` for an entry
    /// that is not a lock.
    pub fn state(&self) -> &'static str {
        match (&self.found, self.holders.is_empty(), &self.obstruction) {
            (Found::Skipped(_), _, _) => "skipped",
            (_, false, _) => "held",
            (_, true, Some(_)) => "obstructed",
            (_, true, None) => "free",
        }
    }

    /// How the lock is held, as a listing says it: its first holder's mode
    /// (`exclusive`, `shared`, or `max` for a place of a counting
    /// semaphore), `exclusive` for a holder that cannot be named (a socket
    /// lock's), `None` when free.
    pub fn mode_label(&self) -> Option<&'static str> {
        match self.holders.holders.first() {
            Some(holder) => Some(holder.mode_label()),
            None => self.holders.unidentified.as_ref().map(|_| "exclusive"),
        }
    }

    /// Whether something is at the lock's path: `None` where there is no
    /// file to look for (`tcp:`, `abstract:`, a server lock).
    pub fn exists(&self) -> Option<bool> {
        match self.found {
            Found::File | Found::Skipped(_) => Some(true),
            Found::Nothing => Some(false),
            Found::NoFile => None,
        }
    }

    /// A lock on this machine that was skipped, with what was found at
    /// `path` instead of a lock: nobody holds it and nothing obstructs it.
    pub(crate) fn skipped(name: String, path: PathBuf, what: String) -> LockStatus {
        LockStatus {
            name,
            path,
            server: None,
            found: Found::Skipped(what),
            holders: Holders::default(),
            obstruction: None,
        }
    }
}
