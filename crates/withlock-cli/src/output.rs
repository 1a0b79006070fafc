//! withlock's own output on stdout: the listing, the help and version, and
//! the list of generated files.
//!
//! Writing never panics, as `println!` does when the write fails. Output
//! that cannot be written ends the run: without a word and with 141 when
//! its reader went away (`withlock --list | head -1`), as for ls(1) ended
//! by SIGPIPE there, and otherwise (a full disk) with one line on stderr
//! and 71. (Messages on stderr go through `say!`, which drops a line that
//! cannot be written.)

use std::io::{self, Write};

use crate::exit_code;

/// Runs `write` on stdout (colour removed where it does not belong) and
/// flushes it; the exit status, as [`stdout_status`] gives it.
pub(crate) fn to_stdout(
    what: &str,
    write: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> anyhow::Result<u8> {
    let mut out = anstream::stdout().lock();
    let written = write(&mut out).and_then(|()| out.flush());
    stdout_status(what, written)
}

/// 0 when `what` was written to stdout; 141 when its reader went away; the
/// error, naming `what`, when it could not be written for another reason.
pub(crate) fn stdout_status(what: &str, written: io::Result<()>) -> anyhow::Result<u8> {
    match written {
        Ok(()) => Ok(0),
        Err(err) if err.kind() == io::ErrorKind::BrokenPipe => {
            Ok(exit_code::for_signal(libc::SIGPIPE))
        }
        Err(err) => Err(anyhow::Error::new(err).context(format!("write {what} to stdout"))),
    }
}
