//! Who holds a lock, written where every session on the server can read
//! it: the connection's `application_name`.
//!
//! Format: `withlock <pid> <user>@<host>: <command>`, for example
//! `withlock 4711 alice@ci-3: ./script deploy`. The server keeps at most
//! 63 bytes (NAMEDATALEN - 1) and replaces non-ASCII bytes with `?`, so the
//! text is cut here to 63 printable ASCII bytes, the command last: pid,
//! user and host survive unless the user and host names are very long.
//!
//! Once the lock is granted, the same statement that draws the fencing
//! token (see [`crate::pg::fence`]) adds the grant time, in milliseconds
//! since the epoch on the server's clock, after the host:
//! `withlock 4711 alice@ci-3 1718013784123: ./script deploy`. That is the
//! holder's "since": each shared holder has its own, other roles can read
//! it (`pg_stat_activity.state_change` is NULL for them without
//! `pg_read_all_stats`), and a heartbeat query does not move it. A time
//! is believed only when the `:` after it survived the cut, so a cut
//! number is never read as a wrong time.

use std::fmt;
use std::time::{Duration, SystemTime};

/// What every withlock `application_name` starts with.
pub const APPLICATION_NAME_PREFIX: &str = "withlock ";

/// The most the server keeps of `application_name`.
pub(crate) const MAX_APPLICATION_NAME: usize = 63;

/// The holder's identity: client pid, user, host and command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The client process id (on its own machine).
    pub pid: u32,
    /// The client's user name.
    pub user: String,
    /// The client's host name.
    pub host: String,
    /// The command line, space-separated; may be cut short.
    pub command: String,
    /// When the lock was granted (the server's clock, to the millisecond);
    /// `None` before the grant, or for a waiter.
    pub granted_at: Option<SystemTime>,
}

impl Identity {
    /// This process: its pid, real user, host name and command line
    /// (`/proc/self/cmdline`).
    pub fn current() -> Identity {
        let command = std::fs::read("/proc/self/cmdline")
            .map(|raw| {
                raw.split(|&b| b == 0)
                    .filter(|a| !a.is_empty())
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        Identity::this_process(command)
    }

    /// This process running `args` (the command withlock runs, rather than
    /// withlock's own command line, which is then not read).
    pub fn running(args: &[impl AsRef<str>]) -> Identity {
        Identity::this_process(args.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(" "))
    }

    fn this_process(command: String) -> Identity {
        Identity {
            pid: std::process::id(),
            user: current_user(),
            host: host_name(),
            command,
            granted_at: None,
        }
    }

    /// The same identity with another command line (the command withlock
    /// runs, rather than withlock's own).
    pub fn with_command(mut self, args: &[impl AsRef<str>]) -> Identity {
        self.command = args.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(" ");
        self
    }

    /// The `application_name` to connect with: at most 63 printable ASCII
    /// bytes.
    pub fn application_name(&self) -> String {
        let mut text = printable(&self.to_string());
        text.truncate(MAX_APPLICATION_NAME);
        text
    }

    /// The `application_name` once granted, in two parts for the server
    /// to join around its grant time in milliseconds (it knows the time,
    /// the client does not): `head || ms || tail`, cut to
    /// [`MAX_APPLICATION_NAME`] bytes (all ASCII, so `left(.., 63)` cuts
    /// bytes).
    pub(crate) fn granted_parts(&self) -> (String, String) {
        let head = printable(&format!(
            "{APPLICATION_NAME_PREFIX}{} {}@{} ",
            self.pid, self.user, self.host
        ));
        (head, printable(&format!(": {}", self.command)))
    }

    /// Reads back an `application_name` written by [`Self::application_name`];
    /// `None` for a session that is not withlock's.
    pub fn parse(application_name: &str) -> Option<Identity> {
        let rest = application_name.strip_prefix(APPLICATION_NAME_PREFIX)?;
        let (pid, rest) = rest.split_once(' ')?;
        let pid = pid.parse().ok()?;
        let (who, command, whole) = match rest.split_once(": ") {
            Some((who, command)) => (who, command, true),
            None => match rest.strip_suffix(':') {
                Some(who) => (who, "", true),
                None => (rest, "", false),
            },
        };
        // A grant time is trusted only when the ':' after it survived.
        let (who, granted_at) = match who.rsplit_once(' ') {
            Some((who, ms)) if whole => (who, ms.parse().ok().map(from_millis)),
            Some((who, _)) => (who, None),
            None => (who, None),
        };
        let (user, host) = who.rsplit_once('@').unwrap_or((who, ""));
        Some(Identity {
            pid,
            user: user.to_owned(),
            host: host.to_owned(),
            command: command.to_owned(),
            granted_at,
        })
    }
}

fn from_millis(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// `text` with every byte the server would not keep as is made `?`.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '?'
            }
        })
        .collect()
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{APPLICATION_NAME_PREFIX}{} {}@{}",
            self.pid, self.user, self.host
        )?;
        if let Some(granted_at) = self.granted_at {
            let ms = granted_at
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis();
            write!(f, " {ms}")?;
        }
        write!(f, ": {}", self.command)
    }
}

fn current_user() -> String {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let mut buf = vec![0 as libc::c_char; 1024];
    let mut pwd = std::mem::MaybeUninit::<libc::passwd>::uninit();
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and buf's length is given;
    // on success result points to pwd, whose strings live in buf.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            pwd.as_mut_ptr(),
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc == 0 && !result.is_null() {
        // SAFETY: getpwuid_r succeeded, so pw_name is a NUL-terminated
        // string inside buf, which is still alive.
        let name = unsafe { std::ffi::CStr::from_ptr((*result).pw_name) };
        return name.to_string_lossy().into_owned();
    }
    format!("uid {uid}")
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "?".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Identity {
        Identity {
            pid: 4711,
            user: "alice".into(),
            host: "ci-3".into(),
            command: "./script deploy".into(),
            granted_at: None,
        }
    }

    #[test]
    fn application_name_round_trips() {
        let name = alice().application_name();
        assert_eq!(name, "withlock 4711 alice@ci-3: ./script deploy");
        assert_eq!(Identity::parse(&name), Some(alice()));
        assert_eq!(Identity::parse("psql"), None);
    }

    #[test]
    fn the_grant_time_round_trips_and_a_cut_one_is_dropped() {
        let granted = Identity {
            granted_at: Some(from_millis(1_718_013_784_123)),
            ..alice()
        };
        let name = granted.application_name();
        assert_eq!(
            name,
            "withlock 4711 alice@ci-3 1718013784123: ./script deploy"
        );
        assert_eq!(Identity::parse(&name), Some(granted.clone()));
        let (head, tail) = granted.granted_parts();
        assert_eq!(format!("{head}1718013784123{tail}"), name);
        // Cut inside the time: user and host stay, the time goes.
        let cut = Identity::parse("withlock 4711 alice@ci-3 17180").unwrap();
        assert_eq!((cut.host.as_str(), cut.granted_at), ("ci-3", None));
        // Cut right after it: still whole.
        let cut = Identity::parse("withlock 4711 alice@ci-3 1718013784123:").unwrap();
        assert_eq!(cut.granted_at, granted.granted_at);
    }

    #[test]
    fn long_and_non_ascii_commands_are_cut_to_what_the_server_keeps() {
        let id = alice().with_command(&["é".repeat(100)]);
        let name = id.application_name();
        assert_eq!(name.len(), 63);
        assert!(name.is_ascii());
        let back = Identity::parse(&name).unwrap();
        assert_eq!(
            (back.pid, back.user.as_str(), back.host.as_str()),
            (4711, "alice", "ci-3")
        );
    }

    #[test]
    fn the_current_process_is_named() {
        let id = Identity::current();
        assert_eq!(id.pid, std::process::id());
        assert!(!id.user.is_empty() && !id.host.is_empty());
    }
}
