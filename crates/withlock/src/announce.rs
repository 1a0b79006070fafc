//! Announcements on Linux abstract Unix sockets: how withlock processes
//! on one machine that are about the same lock find each other without a
//! file or a server.
//!
//! Linux only. A process announces itself for a lock by listening on an
//! abstract socket named `<space><lock>/<stamp>/<pid>`, where `<space>`
//! says what for (`withlock-supersede/` for a waiting superseding
//! request, `withlock-cancel/` for a holder that may be cancelled,
//! `withlock-hold/` for a `withlock hold`), `<lock>` is a 64-bit FNV-1a
//! hash of the lock's [`LockKey`] (the same in every process for the
//! same lock, however it is spelt) and `<stamp>` the wall-clock time of
//! the announcement in nanoseconds. Others list them in
//! `/proc/net/unix` and connect. Anyone can read these names and listen
//! on one like it, so a name proves nothing: whoever acts on a
//! connection checks the peer's pid (`SO_PEERCRED`, set by the kernel)
//! against what it claims, as each protocol's module says. Abstract
//! sockets belong to a network namespace: processes in different ones do
//! not see each other.

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};

use crate::any_lock::LockKey;
use crate::error::{Error, Result};

/// How far in the future another process's stamp may be and still count
/// as newer: clocks agree on one machine, so a stamp further ahead is a
/// name someone made up to make every other process give way, and is
/// ignored.
pub(crate) const MAX_CLOCK_SKEW: Duration = Duration::from_secs(10);

/// The name prefix in `space` for `key`'s lock, with '/' at the end.
pub(crate) fn prefix(space: &str, key: &LockKey) -> String {
    format!("{space}{:016x}/", fnv1a(&key.to_bytes()))
}

/// FNV-1a, 64 bits: stable across builds, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// An announcement's place in the order of announcements: older is
/// smaller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Stamp {
    /// Wall-clock nanoseconds since the epoch.
    pub(crate) nanos: u128,
    /// The announcing process (as it claims: a name proves nothing).
    pub(crate) pid: u32,
}

impl Stamp {
    /// This process, now.
    pub(crate) fn now() -> Stamp {
        Stamp {
            nanos: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
            pid: std::process::id(),
        }
    }

    /// Reads `<nanos>/<pid>` with anything after a '.' following the pid.
    fn parse(rest: &str) -> Option<Stamp> {
        let (nanos, pid) = rest.split_once('/')?;
        Some(Stamp {
            nanos: nanos.parse().ok()?,
            pid: pid.split('.').next()?.parse().ok()?,
        })
    }

    /// True if `other` is newer than this one and not further ahead than
    /// [`MAX_CLOCK_SKEW`] allows.
    pub(crate) fn is_older_than(&self, other: &Stamp) -> bool {
        *self < *other && other.nanos <= self.nanos + MAX_CLOCK_SKEW.as_nanos()
    }
}

fn socket_error(what: &str, e: Errno) -> Error {
    Error::io(format!("{what} an announcement socket"), e)
}

fn stream_socket() -> Result<OwnedFd> {
    socket::socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(|e| socket_error("create", e))
}

/// Binds and listens on `prefix<stamp>/<pid><mark>` (with `.N` after it
/// should someone else hold that name); returns the socket and the name.
/// `mark` is empty or starts with '.'.
pub(crate) fn listen(prefix: &str, stamp: Stamp, mark: &str) -> Result<(OwnedFd, String)> {
    let base = format!("{prefix}{}/{}{mark}", stamp.nanos, stamp.pid);
    let mut last = Errno::EADDRINUSE;
    for attempt in 0..16 {
        let name = match attempt {
            0 => base.clone(),
            n => format!("{base}.{n}"),
        };
        let fd = stream_socket()?;
        let addr = UnixAddr::new_abstract(name.as_bytes()).map_err(|e| socket_error("name", e))?;
        match socket::bind(fd.as_raw_fd(), &addr) {
            Ok(()) => {
                socket::listen(&fd, Backlog::new(64).unwrap_or(Backlog::MAXCONN))
                    .map_err(|e| socket_error("listen on", e))?;
                return Ok((fd, name));
            }
            Err(e @ Errno::EADDRINUSE) => last = e,
            Err(e) => return Err(socket_error("bind", e)),
        }
    }
    Err(socket_error("bind", last))
}

/// The listening sockets under `prefix` in `/proc/net/unix`, with their
/// stamps.
pub(crate) fn announced(prefix: &str) -> Vec<(String, Stamp)> {
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return Vec::new();
    };
    parse_net_unix(&table, prefix)
}

/// Listening sockets (flag `__SO_ACCEPTCON`) whose abstract name starts
/// with `prefix`, from the text of `/proc/net/unix`.
fn parse_net_unix(table: &str, prefix: &str) -> Vec<(String, Stamp)> {
    const ACCEPTCON: u32 = 0x0001_0000;
    let mut found: Vec<(String, Stamp)> = Vec::new();
    for line in table.lines().skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(flags), Some(path)) = (fields.get(3), fields.get(7)) else {
            continue;
        };
        let listening = u32::from_str_radix(flags, 16).is_ok_and(|f| f & ACCEPTCON != 0);
        let Some(name) = path.strip_prefix('@') else {
            continue;
        };
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        if let (true, Some(stamp)) = (listening, Stamp::parse(rest)) {
            if !found.iter().any(|(n, _)| n == name) {
                found.push((name.to_owned(), stamp));
            }
        }
    }
    found
}

/// Connects to the abstract socket `name`.
pub(crate) fn connect(name: &str) -> Option<OwnedFd> {
    let fd = stream_socket().ok()?;
    let addr = UnixAddr::new_abstract(name.as_bytes()).ok()?;
    // A full queue (EAGAIN) or a socket closed meanwhile: that process
    // is not there any more, or is kept busy by someone else.
    socket::connect(fd.as_raw_fd(), &addr).ok()?;
    Some(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_listening_sockets_from_proc_net_unix() {
        let prefix = "withlock-supersede/00000000000000ab/";
        let table = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 100 @withlock-supersede/00000000000000ab/5/42\n\
            0000000000000000: 00000003 00000000 00000000 0001 03 101 @withlock-supersede/00000000000000ab/5/42\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 102 @withlock-supersede/00000000000000cd/6/43\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 105 @withlock-supersede/00000000000000ab/7/44.c\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 103 /run/x.sock\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 104\n";
        let found = parse_net_unix(table, prefix);
        assert_eq!(
            found,
            [
                (
                    "withlock-supersede/00000000000000ab/5/42".to_owned(),
                    Stamp { nanos: 5, pid: 42 }
                ),
                (
                    "withlock-supersede/00000000000000ab/7/44.c".to_owned(),
                    Stamp { nanos: 7, pid: 44 }
                )
            ]
        );
    }

    #[test]
    fn the_lock_hash_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn a_stamp_far_ahead_is_not_newer() {
        let now = Stamp::now();
        let soon = Stamp {
            nanos: now.nanos + 1,
            pid: 1,
        };
        let far = Stamp {
            nanos: u128::from(u64::MAX),
            pid: 1,
        };
        assert!(now.is_older_than(&soon));
        assert!(!now.is_older_than(&far));
        assert!(!soon.is_older_than(&now));
    }
}
