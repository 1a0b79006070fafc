//! Whether the process at the other end of an announcement socket (by
//! its `SO_PEERCRED` pid, which the kernel sets and nobody can forge)
//! really waits for, or holds, a lock: what superseding, cancelling and
//! releasing a hold check before they act on a peer.
//!
//! Linux only. For a file lock the pid must hold a POSIX record lock on
//! the lock file (device and inode) in `/proc/locks`: a waiting stamp or
//! a "held since" stamp, which only a process that has the file open can
//! take. Socket locks have nothing to check.

use nix::sys::socket::{self, sockopt};

use crate::announce;
use crate::any_lock::AnyLock;
use crate::holder::Holder;
use crate::proc_locks::{self, FileId, Kind};
use crate::request::Mode;

/// The newer request listening on `name`, if it really waits for `lock`.
pub(crate) fn probe(name: &str, lock: &AnyLock) -> Option<Holder> {
    let fd = announce::connect(name)?;
    let cred = socket::getsockopt(&fd, sockopt::PeerCredentials).ok()?;
    let mode = waiting_mode(cred.pid(), lock, Mode::Exclusive)?;
    Some(Holder::of_pid(cred.pid(), mode))
}

/// The mode `pid` waits for `lock` in, if it may supersede a request for
/// it: for a file lock, `pid` must hold a record lock on the lock file
/// (its waiting stamp, or, granted since, its "held since" stamp), which
/// only a process that has the file open can take; `claimed` is the mode
/// it says. Any local user can take a `tcp:` or `abstract:` lock, and
/// connect to a `unix:` one, so for socket locks anyone may.
pub(crate) fn waiting_mode(pid: i32, lock: &AnyLock, claimed: Mode) -> Option<Mode> {
    let AnyLock::File(file) = lock else {
        return Some(claimed);
    };
    let st = nix::sys::stat::lstat(&file.path()).ok()?;
    let entries = proc_locks::read().ok()?;
    let stamp = proc_locks::on_file(&entries, FileId::of(&st))
        .into_iter()
        .find(|e| e.kind == Kind::Posix && e.pid == pid && !e.blocked)?;
    Some(if stamp.write {
        Mode::Exclusive
    } else {
        claimed
    })
}
