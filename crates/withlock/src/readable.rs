//! Sleeping until one of several descriptors is readable: poll(2) without
//! a timeout, for the threads that watch for cancel and supersede notices
//! and for `withlock hold`. Linux; a signal that interrupts the sleep
//! (EINTR) starts it again, so only a real error ends it.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Blocks until at least one of `fds` is readable, hung up or in error;
/// returns, in the same order, whether each one is. Errors other than
/// EINTR (out of memory, too many descriptors) are returned.
pub fn wait_readable(fds: &[BorrowedFd<'_>]) -> io::Result<Vec<bool>> {
    let mut polled: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    loop {
        // SAFETY: `polled` is a valid array of pollfd for its length, and
        // the borrowed descriptors stay open for the call.
        let ready = unsafe { libc::poll(polled.as_mut_ptr(), polled.len() as libc::nfds_t, -1) };
        if ready >= 0 {
            return Ok(polled.iter().map(|p| p.revents != 0).collect());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
