//! Who holds a lock, written where every session on the server can read
//! it: the connection's `application_name`.
//!
//! Format: `withlock <pid> <user>@<host>: <command>`, for example
//! `withlock 4711 alice@ci-3: ./script deploy 'two words'`. The command is
//! its arguments quoted as a POSIX shell would read them (single quotes
//! where needed, as Python's `shlex.join`), so it reads back as the exact
//! list of arguments, spaces and quotes included. The server keeps at most
//! 63 bytes (NAMEDATALEN - 1) and replaces non-ASCII bytes with `?`, so
//! every byte outside printable ASCII is written as `?` here, and the
//! command is cut to fit: as many whole arguments as fit, then the start
//! of the next one, quoted on its own. A cut is marked by `:+` in place of
//! the `:`, `withlock 4711 alice@ci-3:+ sh -c 'echo "hello w'`, and read
//! back as [`Identity::command_truncated`]. Pid, user and host survive
//! unless the user and host names are very long; a name cut before its
//! `:` reads back with no command, marked cut.
//!
//! Once the lock is granted, the same statement that draws the fencing
//! token (see [`crate::pg::fence`]) adds the grant time, in milliseconds
//! since the epoch on the server's clock, after the host:
//! `withlock 4711 alice@ci-3 1718013784123: ./script deploy`. That is the
//! holder's "since": each shared holder has its own, other roles can read
//! it (`pg_stat_activity.state_change` is NULL for them without
//! `pg_read_all_stats`), and a heartbeat query does not move it. The
//! command is cut leaving room for 13 digits (the time until the year
//! 2286), so the server's own cut at 63 bytes never falls in it. A time
//! is believed only when the `:` after it survived.
//!
//! Everything here is declared by the session itself: any role can set
//! any `application_name`. What the server vouches for (the role, the
//! client address) comes from `pg_stat_activity` (see
//! [`crate::pg::PgHolder`]).

use std::fmt;
use std::time::{Duration, SystemTime};

/// What every withlock `application_name` starts with.
pub const APPLICATION_NAME_PREFIX: &str = "withlock ";

/// The most the server keeps of `application_name`.
pub(crate) const MAX_APPLICATION_NAME: usize = 63;

/// The room left for the grant time (milliseconds since the epoch have 13
/// digits until the year 2286).
const GRANT_TIME_DIGITS: usize = 13;

/// Between who and the command: the whole command follows.
const WHOLE: &str = ":";
/// Between who and the command: only its start follows.
const CUT: &str = ":+";

/// The holder's identity: client pid, user, host and command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The client process id (on its own machine).
    pub pid: u32,
    /// The client's user name.
    pub user: String,
    /// The client's host name.
    pub host: String,
    /// The command's arguments; read back from a session, only those that
    /// fitted (see [`Identity::command_truncated`]).
    pub command: Vec<String>,
    /// Read back from a session: true when the command was cut to fit in
    /// `application_name`, so that its last argument may be cut short
    /// and more may have followed.
    pub command_truncated: bool,
    /// When the lock was granted (the server's clock, to the millisecond);
    /// `None` before the grant, or for a waiter.
    pub granted_at: Option<SystemTime>,
    /// When the holder's time limit (`--time-limit`) runs out (the
    /// server's clock, to the millisecond), if it announced one; written
    /// as the milliseconds after the grant, `<grant ms>+<ms>`.
    pub deadline: Option<SystemTime>,
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
            })
            .unwrap_or_default();
        Identity::this_process(command)
    }

    /// This process running `args` (the command withlock runs, rather than
    /// withlock's own command line, which is then not read).
    pub fn running(args: &[impl AsRef<str>]) -> Identity {
        Identity::this_process(owned(args))
    }

    fn this_process(command: Vec<String>) -> Identity {
        Identity {
            pid: std::process::id(),
            user: current_user(),
            host: host_name(),
            command,
            command_truncated: false,
            granted_at: None,
            deadline: None,
        }
    }

    /// The same identity with another command line (the command withlock
    /// runs, rather than withlock's own).
    pub fn with_command(mut self, args: &[impl AsRef<str>]) -> Identity {
        self.command = owned(args);
        self
    }

    /// The `application_name` to connect with: at most 63 printable ASCII
    /// bytes, the command cut to fit and marked if it had to be.
    pub fn application_name(&self) -> String {
        let mut head = self.head();
        head.push_str(&self.times());
        let head = head.trim_end().to_owned();
        let tail = encode_command(
            &self.command,
            MAX_APPLICATION_NAME.saturating_sub(head.len()),
        );
        let mut text = head + &tail;
        text.truncate(MAX_APPLICATION_NAME);
        text
    }

    /// The `application_name` once granted, in two parts for the server
    /// to join around its grant time in milliseconds (it knows the time,
    /// the client does not): `head || ms || tail`, the command cut so that
    /// the whole fits in [`MAX_APPLICATION_NAME`] bytes with a 13-digit
    /// time (all ASCII, so the server's `left(.., 63)` cuts bytes, and only
    /// if the names alone are too long).
    pub(crate) fn granted_parts(&self) -> (String, String) {
        let head = self.head();
        let budget = MAX_APPLICATION_NAME.saturating_sub(head.len() + GRANT_TIME_DIGITS);
        (head, encode_command(&self.command, budget))
    }

    /// The grant time in milliseconds since the epoch, and the deadline as
    /// milliseconds after it: `1718013784123+3600000`; empty before the
    /// grant.
    fn times(&self) -> String {
        let Some(granted_at) = self.granted_at else {
            return String::new();
        };
        let mut times = millis(granted_at).to_string();
        if let Some(deadline) = self.deadline {
            let after = deadline.duration_since(granted_at).unwrap_or_default();
            times.push_str(&format!("+{}", after.as_millis()));
        }
        times
    }

    /// `withlock <pid> <user>@<host> `, printable, with no `:` (which
    /// ends this part).
    fn head(&self) -> String {
        let who = format!("{}@{}", self.user, self.host).replace(':', "?");
        printable(&format!("{APPLICATION_NAME_PREFIX}{} {who} ", self.pid))
    }

    /// Reads back an `application_name` written by [`Self::application_name`];
    /// `None` for a session that is not withlock's.
    pub fn parse(application_name: &str) -> Option<Identity> {
        let rest = application_name.strip_prefix(APPLICATION_NAME_PREFIX)?;
        let (pid, rest) = rest.split_once(' ')?;
        let pid = pid.parse().ok()?;
        let (who, command, command_truncated, whole) = match rest.split_once(WHOLE) {
            Some((who, after)) => {
                let (after, cut) = match after.strip_prefix(&CUT[WHOLE.len()..]) {
                    Some(after) => (after, true),
                    None => (after, false),
                };
                let (command, unreadable) = decode_command(after);
                (who, command, cut || unreadable, true)
            }
            // Cut before the command: the server's cut, names too long.
            None => (rest, Vec::new(), true, false),
        };
        // A grant time is trusted only when the ':' after it survived.
        let (who, granted_at, deadline) =
            match who.rsplit_once(' ').map(|(w, t)| (w, read_times(t))) {
                Some((who, Some((granted_at, deadline)))) => match whole {
                    true => (who, Some(granted_at), deadline),
                    false => (who, None, None),
                },
                _ => (who, None, None),
            };
        let (user, host) = who.rsplit_once('@').unwrap_or((who, ""));
        Some(Identity {
            pid,
            user: user.to_owned(),
            host: host.to_owned(),
            command,
            command_truncated,
            granted_at,
            deadline,
        })
    }
}

/// The grant time and the deadline written by [`Identity::times`].
/// A deadline cut short by the server reads as none, and leaves the grant
/// time as it is.
fn read_times(text: &str) -> Option<(SystemTime, Option<SystemTime>)> {
    let (granted, after) = match text.split_once('+') {
        Some((granted, after)) => (granted, Some(after)),
        None => (text, None),
    };
    let granted_at = from_millis(granted.parse().ok()?);
    let deadline = after
        .and_then(|after| after.parse().ok())
        .and_then(|after| granted_at.checked_add(Duration::from_millis(after)));
    Some((granted_at, deadline))
}

fn owned(args: &[impl AsRef<str>]) -> Vec<String> {
    args.iter().map(|a| a.as_ref().to_owned()).collect()
}

/// `: <quoted args>`, or, when that is longer than `budget` bytes,
/// `:+ <quoted args that fit>`: whole arguments, then the start of the
/// next one that fits, quoted on its own.
fn encode_command(args: &[String], budget: usize) -> String {
    let args: Vec<String> = args.iter().map(|a| printable(a)).collect();
    let words: Vec<String> = args.iter().map(|a| quote(a)).collect();
    let whole = join_after(WHOLE, &words);
    if whole.len() <= budget {
        return whole;
    }
    let mut text = CUT.to_owned();
    for (arg, word) in args.iter().zip(&words) {
        if text.len() + 1 + word.len() <= budget {
            text = format!("{text} {word}");
            continue;
        }
        // All ASCII: any byte count is a char boundary.
        let start = (1..arg.len())
            .rev()
            .map(|n| quote(&arg[..n]))
            .find(|word| text.len() + 1 + word.len() <= budget);
        if let Some(start) = start {
            text = format!("{text} {start}");
        }
        break;
    }
    text
}

fn join_after(mark: &str, words: &[String]) -> String {
    match words.is_empty() {
        true => mark.to_owned(),
        false => format!("{mark} {}", words.join(" ")),
    }
}

/// One argument (printable ASCII) quoted for a POSIX shell.
fn quote(arg: &str) -> String {
    // The only refusal is a NUL byte, which printable() has replaced.
    shlex::try_quote(arg).map_or_else(|_| "?".to_owned(), |word| word.into_owned())
}

/// The arguments after the `:`, and whether they could not be read as
/// written (a name from an older withlock, which joined them with spaces,
/// or one the server cut inside a quote): then split at spaces.
fn decode_command(text: &str) -> (Vec<String>, bool) {
    let text = text.strip_prefix(' ').unwrap_or(text);
    match shlex::split(text) {
        Some(words) => (words, false),
        None => (text.split_whitespace().map(str::to_owned).collect(), true),
    }
}

fn millis(time: SystemTime) -> u128 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
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
    /// The whole identity, uncut: head, grant time, and the command.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut head = self.head();
        head.push_str(&self.times());
        write!(
            f,
            "{}{}",
            head.trim_end(),
            encode_command(&self.command, usize::MAX)
        )
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
            command: vec!["./script".into(), "deploy".into()],
            command_truncated: false,
            granted_at: None,
            deadline: None,
        }
    }

    #[test]
    fn the_deadline_round_trips_after_the_grant_time() {
        let granted_at = from_millis(1_718_013_784_123);
        let id = Identity {
            granted_at: Some(granted_at),
            deadline: Some(granted_at + Duration::from_secs(3600)),
            ..alice()
        };
        let name = id.application_name();
        assert_eq!(
            name,
            "withlock 4711 alice@ci-3 1718013784123+3600000: ./script deploy"
        );
        assert_eq!(Identity::parse(&name), Some(id));
        // Cut before the ':': neither time is believed.
        let cut = Identity::parse("withlock 4711 alice@ci-3 1718013784123+36").unwrap();
        assert_eq!((cut.granted_at, cut.deadline), (None, None));
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
        assert!(cut.command_truncated);
        // Cut right after it: still whole.
        let cut = Identity::parse("withlock 4711 alice@ci-3 1718013784123:").unwrap();
        assert_eq!(cut.granted_at, granted.granted_at);
    }

    #[test]
    fn arguments_with_spaces_and_quotes_read_back_exactly() {
        let args = ["sh", "-c", "a \"b\" 'c'", "", "#x", "$HOME"];
        let id = alice().with_command(&args);
        let back = Identity::parse(&id.application_name()).unwrap();
        assert_eq!(back.command, args);
        assert!(!back.command_truncated);
    }

    #[test]
    fn a_long_command_is_cut_to_whole_arguments_and_a_marked_start() {
        let id = Identity {
            granted_at: Some(from_millis(1_718_013_784_123)),
            ..alice().with_command(&[
                "sh",
                "-c",
                "echo \"hello world with a fairly long argument list\"; sleep 1.5",
            ])
        };
        let (head, tail) = id.granted_parts();
        let name = format!("{head}1718013784123{tail}");
        assert!(name.len() <= MAX_APPLICATION_NAME, "{name}");
        assert!(
            name.len() >= MAX_APPLICATION_NAME - 2,
            "uses the room: {name}"
        );
        assert!(name.contains(":+ sh -c 'echo \"hello"), "{name}");
        let back = Identity::parse(&name).unwrap();
        assert!(back.command_truncated);
        assert_eq!(&back.command[..2], ["sh", "-c"]);
        assert!(back.command[2].starts_with("echo \"hello"), "{back:?}");
        assert_eq!(back.granted_at, id.granted_at);
        // Before the grant there is more room, and the same marking.
        let waiting = alice().with_command(&["x".repeat(100)]);
        let name = waiting.application_name();
        assert_eq!(name.len(), MAX_APPLICATION_NAME);
        let back = Identity::parse(&name).unwrap();
        assert!(back.command_truncated && back.command[0].starts_with("xxx"));
    }

    #[test]
    fn an_older_withlocks_name_reads_back_split_at_spaces() {
        let back = Identity::parse("withlock 1 u@h: sh -c echo '\"hello").unwrap();
        assert_eq!(back.command, ["sh", "-c", "echo", "'\"hello"]);
        assert!(back.command_truncated);
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
        assert!(back.command_truncated);
    }

    #[test]
    fn the_current_process_is_named() {
        let id = Identity::current();
        assert_eq!(id.pid, std::process::id());
        assert!(!id.user.is_empty() && !id.host.is_empty());
    }
}
