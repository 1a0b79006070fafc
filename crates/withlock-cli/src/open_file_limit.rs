//! The fix for running out of file descriptors, which no lock or command
//! can name for itself: withlock opens a few (the lock directory, each lock
//! file, a pipe to start the command), and a limit set as low as
//! `ulimit -n 4` leaves none for them.

use std::io;

use nix::sys::resource::{Resource, getrlimit};

use crate::command::StartError;

/// What to do, when `err` comes from a full descriptor table.
pub(crate) fn advice(err: &anyhow::Error) -> Option<String> {
    let errno = err.chain().find_map(os_error)?;
    match errno {
        libc::EMFILE => {
            let limit = getrlimit(Resource::RLIMIT_NOFILE)
                .map(|(soft, _)| format!(" is {soft}"))
                .unwrap_or_default();
            Some(format!(
                "this process's limit on open files (ulimit -n){limit}: \
                 raise it, e.g. ulimit -n 1024"
            ))
        }
        libc::ENFILE => Some(
            "the system's table of open files is full: close some programs or raise \
             fs.file-max"
                .to_owned(),
        ),
        _ => None,
    }
}

fn os_error(err: &(dyn std::error::Error + 'static)) -> Option<i32> {
    if let Some(err) = err.downcast_ref::<io::Error>() {
        return err.raw_os_error();
    }
    if let Some(withlock::Error::Io { cause, .. }) = err.downcast_ref::<withlock::Error>() {
        return cause.raw_os_error();
    }
    err.downcast_ref::<StartError>()?.os_error()
}
