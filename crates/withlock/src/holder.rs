//! Who holds a lock: pid, user, command line and since when.
//!
//! Linux only. Each kind of lock finds its holders' pids its own way (a
//! lock file's are its flock entries in `/proc/locks`, read in
//! `file/file_holders.rs`); each pid is then looked up in
//! `/proc/<pid>/status` (user) and `/proc/<pid>/cmdline` (command), which
//! every user may read unless /proc is mounted with `hidepid`. "Since"
//! comes from the holder's stamp where its kind of lock keeps one (a lock
//! file's since stamp); holders that set no stamp, such as flock(1), show
//! how long their process has been running instead.

use std::fmt;
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::escape;
use crate::ownership;
use crate::request::Mode;
use crate::server_session::ServerSession;

/// One process holding, or waiting for, a lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The process that took the lock (or asked for it).
    pub pid: i32,
    /// Exclusive or shared.
    pub mode: Mode,
    /// Its real user id, if the process is still there to ask.
    pub uid: Option<u32>,
    /// Its user name, or `uid N` when the account has no name.
    pub user: Option<String>,
    /// The machine it runs on, for a lock kept on a server (PostgreSQL);
    /// `None` for a process on this machine, which /proc describes.
    pub host: Option<String>,
    /// Its command line, unescaped; `None` if it cannot be read.
    pub command: Option<Vec<Vec<u8>>>,
    /// True when only the start of the command is known: a server lock's
    /// holder declares its command in the little room the server gives
    /// (see `pg::Identity`), so the last argument may be cut short
    /// and more may have followed.
    pub command_truncated: bool,
    /// For a lock on a server, what the server itself vouches for (role,
    /// client address); `pid`, `user`, `host` and `command` are then only
    /// what the session declares. `None` on this machine.
    pub session: Option<ServerSession>,
    /// True for a holder of one of the N places of a counting semaphore
    /// (`--max N`), or a waiter for one; `mode` is then how it holds the
    /// name itself (shared).
    pub max: bool,
    /// Which of the places of `--max N` it holds (0 to N-1), where its kind
    /// of lock tells.
    pub slot: Option<u32>,
    /// When its time limit (`--time-limit`) runs out, if it announced one.
    pub deadline: Option<SystemTime>,
    /// When it took the lock, or for a waiter when it started waiting, if
    /// it said so (withlock does; flock(1) does not).
    pub since: Option<SystemTime>,
    /// When its process started.
    pub started: Option<SystemTime>,
    /// False when the pid has exited: a process that inherited the lock
    /// descriptor from it (for example the command of a killed withlock)
    /// holds the lock now.
    pub running: bool,
}

impl Holder {
    /// The process `pid`, holding in `mode`, as far as `/proc/<pid>` tells:
    /// user, command line and start time; `since` is left unknown.
    pub fn of_pid(pid: i32, mode: Mode) -> Holder {
        let proc_dir = format!("/proc/{pid}");
        let uid = std::fs::read_to_string(format!("{proc_dir}/status"))
            .ok()
            .and_then(|status| real_uid(&status));
        let command = std::fs::read(format!("{proc_dir}/cmdline"))
            .ok()
            .map(|raw| split_cmdline(&raw))
            .filter(|args| !args.is_empty());
        Holder {
            pid,
            mode,
            uid,
            user: uid.map(ownership::user_name),
            host: None,
            command,
            command_truncated: false,
            session: None,
            max: false,
            slot: None,
            deadline: None,
            since: None,
            started: process_start(&proc_dir),
            running: is_running(pid),
        }
    }

    /// The command line, escaped so it is safe to print; a command known
    /// only in part ends in `…`.
    pub fn command_line(&self) -> Option<String> {
        let line = escape::command_line(self.command.as_deref()?);
        Some(match self.command_truncated {
            true => format!("{line}…"),
            false => line,
        })
    }

    /// How it holds (or asks for) the lock, for listings: `exclusive`,
    /// `shared`, or `max` for one of the places of `--max N`.
    pub fn mode_label(&self) -> &'static str {
        match self.max {
            true => "max",
            false => self.mode.as_str(),
        }
    }

    /// True when the process runs but this user may not see who it is or
    /// what it runs (`/proc` mounted with `hidepid`, or another namespace).
    /// A remote holder has no uid here (its user id means nothing on this
    /// machine): it is hidden only when its user or command is unknown.
    pub fn is_hidden(&self) -> bool {
        if self.host.is_some() {
            return self.user.is_none() || self.command.is_none();
        }
        self.running && (self.uid.is_none() || self.command.is_none())
    }

    /// True when the process is stopped (Ctrl-Z, `SIGSTOP`) or stopped by a
    /// tracer: a waiter that cannot take the lock when its turn comes.
    pub fn is_stopped(&self) -> bool {
        if self.host.is_some() {
            return false;
        }
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        let state = stat
            .rfind(')')
            .and_then(|end| stat[end + 1..].split_whitespace().next());
        matches!(state, Some("T" | "t"))
    }

    /// The process in a few words, for a message about a request it made
    /// (such as one that superseded ours): `pid N (user, command)`.
    pub fn brief(&self) -> String {
        if self.pid <= 0 {
            return "a request in another PID namespace".into();
        }
        let user = self
            .user
            .as_deref()
            .map_or_else(|| "user unknown".to_owned(), escape::text);
        let command = self
            .command_line()
            .unwrap_or_else(|| "command unknown".into());
        format!("pid {} ({user}, {command})", self.pid)
    }

    /// How long it has held the lock, when that is known.
    pub fn held_for(&self) -> Option<Duration> {
        self.since
            .and_then(|since| SystemTime::now().duration_since(since).ok())
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.who())?;
        if let Some(command) = self.command_line() {
            write!(f, ": {command}")?;
        }
        Ok(())
    }
}

impl Holder {
    /// Who it is and how long it has held the lock, without its command:
    /// `pid 4711 (alice) for 2.0s`. A holder that did not say when it
    /// took the lock (flock(1)) took it after its process started, so its
    /// process's age is an upper bound: `for up to 5.0s`.
    pub fn who(&self) -> String {
        if let Some(host) = &self.host {
            return self.remote_who(host);
        }
        let mut who = format!("pid {}", self.pid);
        if !self.running {
            who.push_str(" (exited; a process it started still holds the lock)");
            return who;
        }
        if let Some(user) = &self.user {
            who.push_str(&format!(" ({})", escape::text(user)));
        }
        match (self.held_for(), self.started) {
            (Some(held), _) => who.push_str(&format!(" for {}", human_duration(held))),
            (None, Some(started)) => {
                if let Ok(age) = SystemTime::now().duration_since(started) {
                    who.push_str(&format!(" for up to {}", human_duration(age)));
                }
            }
            (None, None) => {}
        }
        who
    }

    /// `role ci from 10.0.0.7, declaring pid 4711 on ci-3 (alice), since
    /// 12:03:04, for 2.0s`: what the server vouches for first, then what
    /// the session declares (any role can declare anything); a pid alone
    /// means little off its machine, so the host comes with it; the
    /// wall-clock grant time helps match it with the other machine's logs.
    /// A session that is not withlock's is named by its role, address and
    /// server process (its `application_name` is the command).
    fn remote_who(&self, host: &str) -> String {
        let mut who = match &self.session {
            Some(session) if session.declared => format!("{session}, declaring "),
            Some(session) => format!(
                "{session}, server process {} (not withlock)",
                session.backend_pid
            ),
            None => String::new(),
        };
        if self.session.as_ref().is_none_or(|s| s.declared) {
            who.push_str(&format!("pid {} on {}", self.pid, escape::text(host)));
            if let Some(user) = &self.user {
                who.push_str(&format!(" ({})", escape::text(user)));
            }
        }
        if self.session.is_some() && self.since.is_some() {
            who.push(',');
        }
        if let Some(since) = self.since {
            who.push_str(&format!(" since {}", clock_time(since)));
            if let Some(held) = self.held_for() {
                who.push_str(&format!(", for {}", human_duration(held)));
            }
        }
        who
    }

    /// True when this is the calling process: a request that looks up the
    /// holders of the lock it waits for and finds itself has been granted it.
    pub fn is_this_process(&self) -> bool {
        self.pid == std::process::id() as i32
            && self
                .host
                .as_deref()
                .is_none_or(|host| Some(host) == this_host().as_deref())
    }
}

/// This machine's host name, as a server lock's holders name their host.
pub(crate) fn this_host() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    Some(name.trim().to_owned())
}

/// The local time of `time`: `12:03:04` within the last day, else with
/// the date, `2024-06-10 12:03:04`.
fn clock_time(time: SystemTime) -> String {
    let Ok(since_epoch) = time.duration_since(SystemTime::UNIX_EPOCH) else {
        return "?".to_owned();
    };
    let seconds = since_epoch.as_secs() as libc::time_t;
    let mut tm = std::mem::MaybeUninit::<libc::tm>::uninit();
    // SAFETY: localtime_r writes only to tm, which is valid for writes, and
    // reads only `seconds` (glibc reads TZ on its first call).
    let tm = unsafe {
        if libc::localtime_r(&seconds, tm.as_mut_ptr()).is_null() {
            return "?".to_owned();
        }
        tm.assume_init()
    };
    let clock = format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec);
    let recent = SystemTime::now()
        .duration_since(time)
        .is_ok_and(|ago| ago < Duration::from_secs(20 * 3600));
    if recent {
        clock
    } else {
        format!(
            "{}-{:02}-{:02} {clock}",
            tm.tm_year + 1900,
            tm.tm_mon + 1,
            tm.tm_mday
        )
    }
}

/// The holders of one lock, as far as this user can see them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Holders {
    /// Processes that hold the lock now.
    pub holders: Vec<Holder>,
    /// Processes waiting for it: withlock clients in queue (arrival)
    /// order, then the other processes blocked in flock(2), such as flock(1).
    pub waiters: Vec<Holder>,
    /// Set when the lock is known to be held but the mechanism cannot say
    /// by whom (a TCP port gives no peer credentials): why, in a few words.
    pub unidentified: Option<String>,
}

impl Holders {
    /// The first waiter listed before `pid` (before everyone, when `pid`
    /// is not among them) whose process is stopped: the request ahead that
    /// may hold up the queue.
    pub fn stopped_waiter_ahead_of(&self, pid: i32) -> Option<&Holder> {
        self.waiters
            .iter()
            .take_while(|w| w.pid != pid)
            .find(|w| w.is_stopped())
    }

    /// True when nobody holds the lock, as far as can be seen.
    pub fn is_empty(&self) -> bool {
        self.holders.is_empty() && self.unidentified.is_none()
    }

    /// A lock known to be held by a process that cannot be named, for the
    /// reason given ("TCP gives no peer credentials").
    pub fn unidentified(reason: impl Into<String>) -> Holders {
        Holders {
            unidentified: Some(reason.into()),
            ..Holders::default()
        }
    }

    /// The mode the lock is held in, if it is held. A holder that cannot
    /// be named holds a socket lock, which is exclusive.
    pub fn mode(&self) -> Option<Mode> {
        match self.holders.first() {
            Some(holder) => Some(holder.mode),
            None => self.unidentified.as_ref().map(|_| Mode::Exclusive),
        }
    }

    /// True when some holder or waiter could not be seen in full.
    pub fn any_hidden(&self) -> bool {
        self.holders
            .iter()
            .chain(&self.waiters)
            .any(Holder::is_hidden)
    }
}

impl Holders {
    /// What [`Holders`]' `Display` says, with the first holder's command
    /// apart, so that a line too long for its terminal can cut the command
    /// first and keep who holds the lock and for how long.
    pub fn text(&self) -> HoldersText {
        let (head, first, tail) = match self.holders.as_slice() {
            [] if self.unidentified.is_some() => (
                format!(
                    "held by a process withlock cannot identify ({})",
                    self.unidentified.as_deref().unwrap_or_default()
                ),
                None,
                String::new(),
            ),
            [] => (
                "held by a process this user cannot see (another PID namespace or machine)"
                    .to_owned(),
                None,
                String::new(),
            ),
            [only] => (
                format!("held {} by {}", held_as(only), only.who()),
                Some(only),
                String::new(),
            ),
            [first, rest @ ..] => (
                format!(
                    "held {} by {} processes: {}",
                    held_as(first),
                    rest.len() + 1,
                    first.who()
                ),
                Some(first),
                format!(" (and {} more)", rest.len()),
            ),
        };
        HoldersText {
            head,
            command: first.and_then(Holder::command_line),
            tail,
        }
    }
}

/// Who holds a lock, in words, in three parts: `head` (`held exclusive by
/// pid 4711 (alice) for 2.0s`), the first holder's `command` line (escaped)
/// if known, and `tail` (` (and 2 more)`, or empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldersText {
    /// The mode and the first holder, with how long it has held the lock.
    pub head: String,
    /// The first holder's command line, escaped; `None` when unknown.
    pub command: Option<String>,
    /// How many more hold it, or empty.
    pub tail: String,
}

impl fmt::Display for HoldersText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.head)?;
        if let Some(command) = &self.command {
            write!(f, ": {command}")?;
        }
        f.write_str(&self.tail)
    }
}

impl fmt::Display for Holders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.text().fmt(f)
    }
}

/// `exclusive`, `shared`, or `(--max)` for a place of a counting semaphore.
fn held_as(holder: &Holder) -> String {
    match holder.max {
        true => "(--max)".to_owned(),
        false => holder.mode.to_string(),
    }
}

/// True unless the pid is gone; a process we may not signal is still there.
fn is_running(pid: i32) -> bool {
    kill(Pid::from_raw(pid), None) != Err(Errno::ESRCH)
}

fn real_uid(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next())
        .and_then(|uid| uid.parse().ok())
}

fn split_cmdline(raw: &[u8]) -> Vec<Vec<u8>> {
    let raw = raw.strip_suffix(b"\0").unwrap_or(raw);
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(|&b| b == 0).map(<[u8]>::to_vec).collect()
}

/// When the process whose /proc directory is `proc_dir` started.
///
/// Its start is given in clock ticks since boot; the boot time in
/// /proc/stat is whole seconds, so the age is worked out against
/// /proc/uptime (hundredths of a second) instead.
fn process_start(proc_dir: &str) -> Option<SystemTime> {
    let stat = std::fs::read_to_string(format!("{proc_dir}/stat")).ok()?;
    // The command name in parentheses may hold spaces; fields follow the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let start_ticks: f64 = after_name.split_whitespace().nth(19)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks_per_second <= 0 {
        return None;
    }
    let started_after_boot = start_ticks / ticks_per_second as f64;
    let age = (uptime()? - started_after_boot).max(0.0);
    SystemTime::now().checked_sub(Duration::from_secs_f64(age))
}

fn uptime() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// "850ms", "12.3s", "4m05s", "2h03m".
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if secs < 60 {
        format!("{:.1}s", d.as_secs_f64())
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn briefly_names_a_request() {
        let me = Holder::of_pid(std::process::id() as i32, Mode::Exclusive);
        let text = me.brief();
        assert!(
            text.starts_with(&format!("pid {} (", std::process::id())),
            "{text}"
        );
        let unseen = Holder::of_pid(0, Mode::Exclusive);
        assert_eq!(unseen.brief(), "a request in another PID namespace");
    }

    #[test]
    fn reads_the_real_uid() {
        let status = "Name:\tsleep\nUid:\t1000\t1001\t1002\t1003\nGid:\t5\n";
        assert_eq!(real_uid(status), Some(1000));
    }

    #[test]
    fn splits_a_cmdline() {
        assert_eq!(
            split_cmdline(b"sh\0-c\0echo hi\0"),
            vec![b"sh".to_vec(), b"-c".to_vec(), b"echo hi".to_vec()]
        );
        assert!(split_cmdline(b"").is_empty());
    }

    #[test]
    fn formats_durations_for_people() {
        assert_eq!(human_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(human_duration(Duration::from_millis(12_340)), "12.3s");
        assert_eq!(human_duration(Duration::from_secs(245)), "4m05s");
        assert_eq!(human_duration(Duration::from_secs(7380)), "2h03m");
    }

    #[test]
    fn a_remote_holder_is_named_with_host_and_grant_time_and_is_not_hidden() {
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        let holder = Holder {
            pid: 4711,
            mode: Mode::Exclusive,
            uid: None,
            user: Some("alice".into()),
            host: Some("ci-3".into()),
            command: Some(vec![b"./script".to_vec(), b"deploy".to_vec()]),
            command_truncated: false,
            session: None,
            max: false,
            slot: None,
            deadline: None,
            since: Some(two_hours_ago),
            started: None,
            running: true,
        };
        let text = holder.to_string();
        let clock = clock_time(two_hours_ago);
        assert_eq!(
            text,
            format!("pid 4711 on ci-3 (alice) since {clock}, for 2h00m: ./script deploy")
        );
        assert!(!holder.is_hidden());
        let verified = Holder {
            session: Some(ServerSession {
                backend_pid: 99,
                role: Some("ci".into()),
                client: crate::ClientAddress::Ip("10.0.0.7".into()),
                declared: true,
            }),
            command_truncated: true,
            ..holder.clone()
        };
        assert_eq!(
            verified.to_string(),
            format!(
                "role ci from 10.0.0.7, declaring pid 4711 on ci-3 (alice), since {clock}, \
                 for 2h00m: ./script deploy…"
            )
        );
        // Another program's session (psql) declares nothing of withlock's.
        let other = Holder {
            pid: 99,
            user: Some("app".into()),
            host: Some("local".into()),
            command: Some(vec![b"psql".to_vec()]),
            session: Some(ServerSession {
                backend_pid: 99,
                role: Some("app".into()),
                client: crate::ClientAddress::LocalSocket,
                declared: false,
            }),
            ..holder.clone()
        };
        assert_eq!(
            other.to_string(),
            format!(
                "role app over a local socket, server process 99 (not withlock), since {clock}, \
                 for 2h00m: psql"
            )
        );
        let unknown = Holder {
            command: None,
            ..holder
        };
        assert!(unknown.is_hidden());
    }

    #[test]
    fn clock_times_carry_the_date_only_when_not_recent() {
        assert_eq!(clock_time(SystemTime::now()).len(), "12:03:04".len());
        let days_ago = SystemTime::now() - Duration::from_secs(3 * 86400);
        assert_eq!(clock_time(days_ago).len(), "2024-06-10 12:03:04".len());
    }

    #[test]
    fn this_process_start_is_in_the_past() {
        let started = process_start(&format!("/proc/{}", std::process::id())).unwrap();
        assert!(started <= SystemTime::now());
    }
}
