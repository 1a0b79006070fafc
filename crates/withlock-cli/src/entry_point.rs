//! The process's entry point, in place of the Rust runtime's.
//!
//! withlock runs once per locked command, so whatever happens before
//! `main` is paid on every run. The runtime's start-up on Linux with glibc
//! installs a handler that reports a stack overflow of the main thread; to
//! place it, it asks glibc where the main thread's stack is, and glibc
//! answers by opening and parsing `/proc/self/maps`. With the alternate
//! signal stack that handler runs on, that is about a dozen system calls
//! and several page faults on every run (see docs/benchmarks.md for the
//! figures). withlock's main thread does not recurse, so it goes without
//! that report: an overflow would end with SIGSEGV instead of the
//! runtime's message.
//!
//! What the runtime does at start-up that withlock relies on is done here:
//! - descriptors 0, 1 and 2, if closed, are opened on `/dev/null`, so that
//!   no lock file or socket ever becomes a process's standard output;
//! - SIGPIPE is ignored, so that writing to a pipe whose reader has gone
//!   is an error (which `say!` drops), not death; commands still start
//!   with SIGPIPE at its default, as std resets it when it spawns them.
//!
//! std still reads the command line itself (glibc hands it over before
//! `main`), and a panic still prints its message and ends with status 101.
//! Unit tests keep the runtime's own entry point: the test harness brings
//! its `main`.

use std::ffi::{c_char, c_int};

use crate::exit_code;

/// The status of a panic, as the runtime gives it.
const PANICKED: u8 = 101;

/// The C entry point: glibc calls it once the process is set up.
#[unsafe(no_mangle)]
extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    if !open_closed_standard_descriptors() {
        return c_int::from(exit_code::OS_ERROR);
    }
    ignore_sigpipe();
    // Unlike the runtime, nothing flushes stdout after this: whatever
    // writes there flushes it itself (see `output`), so that a run that
    // writes nothing does not set stdout up only to flush it.
    let status = std::panic::catch_unwind(crate::run_cli).unwrap_or(PANICKED);
    c_int::from(status)
}

/// Opens `/dev/null` on each of descriptors 0, 1 and 2 that is closed;
/// false if one could not be.
fn open_closed_standard_descriptors() -> bool {
    for fd in 0..3 {
        // SAFETY: F_GETFD reads a descriptor's flags and changes nothing;
        // any number is a valid argument (a closed one fails with EBADF).
        let closed = unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF);
        if !closed {
            continue;
        }
        // open(2) returns the lowest free descriptor, which is `fd`: every
        // lower one is open. It stays open for the life of the process.
        // SAFETY: the path is a NUL-terminated string literal.
        let opened = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        if opened != fd {
            return false;
        }
    }
    true
}

fn ignore_sigpipe() {
    // SAFETY: installs no handler, only the disposition SIG_IGN, before
    // any other thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}
