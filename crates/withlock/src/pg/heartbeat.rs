//! Noticing that a held PostgreSQL lock is lost, and bounding how long the
//! server keeps the lock of a holder it can no longer hear.
//!
//! **The holder's side: a heartbeat.** [`crate::PgGuard::watch`] moves the
//! lock's session into a thread of its own, which sends an empty query
//! every [`HEARTBEAT_INTERVAL`] and, in between, looks at the connection
//! every [`LISTEN_EVERY`] without a round trip (a non-blocking read). The
//! lock is taken as lost, and the caller's callback told once, when:
//!
//! - the server ends the session (`pg_terminate_backend`, a shutdown or
//!   restart, a crash of another backend): it sends a FATAL message and
//!   closes the connection, which the next look sees
//!   ([`LossCause::Terminated`]);
//! - the connection breaks or closes (a reset, a middlebox that drops it,
//!   the server gone without a word): [`LossCause::ConnectionLost`];
//! - the network is cut and nothing fails at all (a partition): the
//!   heartbeat gets no answer within [`ANSWER_TIMEOUT`] of being sent
//!   ([`LossCause::NoAnswer`]).
//!
//! A session that fails at time T is therefore noticed by T +
//! [`DETECTION_BOUND`] (= interval + answer timeout, 8 s), and the first
//! two cases within [`LISTEN_EVERY`]. The answer timeout is the driver's
//! own (`Client::is_valid`), so no watchdog thread is needed for a query
//! that never returns.
//!
//! **The server's side.** During a partition the server still sees a live
//! session holding the lock, and would keep it for hours with the kernel's
//! default keepalives. It must drop it in bounded time, but **never before
//! this holder has stopped its command**: noticing takes up to
//! [`DETECTION_BOUND`], stopping up to the caller's grace (SIGTERM, then
//! SIGKILL). So the lock session asks the server to give a silent client up
//! only [`server_bound`]`(grace)` = [`DETECTION_BOUND`] + grace +
//! [`SERVER_MARGIN`] after the last thing it heard from it:
//!
//! - `idle_session_timeout` (PostgreSQL 14+), set when the watch starts,
//!   since only heartbeats keep a held session from idling that long. It
//!   counts silence at the protocol level, so it works even when something
//!   in between still answers TCP (a proxy, a load balancer).
//! - `tcp_keepalives_idle` = the bound, then probes every second, dropped
//!   after 3 unanswered: set before the lock is asked for (with the first
//!   try, in one statement), so an unwatched holder gets the
//!   bound too. On Linux a connection with `TCP_USER_TIMEOUT` set is
//!   dropped by keepalive when that timeout has passed rather than after
//!   the probe count, so `tcp_user_timeout` is set to the same end
//!   (idle + 3 probes), never shorter than the bound.
//!
//! Keepalive settings are whole seconds and `tcp_user_timeout`
//! milliseconds; each is set only if the server knows it
//! (`pg_settings`), and a server or pooler that refuses them leaves the
//! lock held, only without the bound (`limit_silent_clients`).
//! `client_connection_check_interval` is not set: it only checks while a
//! query runs, and a holder runs nothing but heartbeats.
//!
//! Unavoidable, clock-free caveats: a holder whose process is frozen
//! (SIGSTOP, a paused VM) longer than the server's bound wakes up still
//! running its command while another may hold the lock; and a session the
//! server *ends* (terminated, restarted) frees the lock at once, so the
//! next holder may start before this one has noticed and stopped. Both
//! are what the fencing token ([`crate::pg::fence`]) is for.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postgres::Client;
use postgres::types::Type;

use crate::pg::cancel::Subscription;
use crate::pg::error::with_causes;

/// How often the holder's session sends a heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);
/// How long a heartbeat may go unanswered, from when it was sent, before
/// the lock is taken as lost.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(6);
/// The longest time from a session's failure to its loss being noticed:
/// [`HEARTBEAT_INTERVAL`] + [`ANSWER_TIMEOUT`].
pub const DETECTION_BOUND: Duration = HEARTBEAT_INTERVAL.saturating_add(ANSWER_TIMEOUT);
/// How often, between heartbeats, the connection is looked at for a
/// server that ended the session (a non-blocking read, no round trip).
pub const LISTEN_EVERY: Duration = Duration::from_millis(100);
/// What the server waits beyond the holder's detection bound and grace
/// before it drops a silent holder (see [`server_bound`]).
pub const SERVER_MARGIN: Duration = Duration::from_secs(10);
/// The default time between SIGTERM and SIGKILL when a lock is lost (the
/// command line's `--grace`).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);

/// How long one look at the connection waits for what the server sent.
const LOOK: Duration = Duration::from_millis(1);

/// Unanswered server keepalive probes, one a second, before the server's
/// kernel drops the connection.
const SERVER_PROBES: u64 = 3;

/// How long the server keeps the lock of a holder it hears nothing from,
/// for a holder that stops its command within `grace` of noticing the
/// loss: [`DETECTION_BOUND`] + `grace` + [`SERVER_MARGIN`].
pub fn server_bound(grace: Duration) -> Duration {
    DETECTION_BOUND
        .saturating_add(grace)
        .saturating_add(SERVER_MARGIN)
}

/// A held lock was lost: its session ended or cannot be reached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("lost the lock {lock} (PostgreSQL {server}): {cause}")]
pub struct LockLost {
    /// The lock name.
    pub lock: String,
    /// `host:port/dbname`, never the password.
    pub server: String,
    /// What happened.
    pub cause: LossCause,
}

/// Why a held lock is taken as lost.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LossCause {
    /// The server ended the session (`pg_terminate_backend`, shutdown,
    /// restart, crash); the server's own words follow.
    #[error("session terminated by the server ({message})")]
    Terminated {
        /// The server's message.
        message: String,
    },
    /// The connection failed or closed.
    #[error("server restarted or connection lost: {cause}")]
    ConnectionLost {
        /// The driver's error, with its causes.
        cause: String,
    },
    /// A heartbeat got no answer in time: the network is cut, or the
    /// server hangs. The server may still show the lock as held.
    #[error("no answer from the server for {}s", waited.as_secs_f64())]
    NoAnswer {
        /// How long the heartbeat waited.
        waited: Duration,
    },
}

/// Asks the server to drop this session once it has heard nothing from
/// the client for `bound` (see the module docs): keepalives and
/// `tcp_user_timeout`, each only if the server knows it. Returns how many
/// settings the server took. A refusal (a pooler, a restricted role) is
/// not an error for the lock, which stays held; only a broken session is.
pub(crate) fn limit_silent_clients(
    client: &mut Client,
    bound: Duration,
) -> Result<i64, postgres::Error> {
    set_known(client, &silent_client_settings(bound))
}

/// [`limit_silent_clients`] as one SQL expression (the number of settings
/// the server took), for a statement that does more: the server raises an
/// error where `limit_silent_clients` would tolerate it, so the caller
/// falls back to that on an error.
pub(crate) fn limit_silent_clients_sql(bound: Duration) -> String {
    let pairs: Vec<String> = silent_client_settings(bound)
        .iter()
        .map(|(name, value)| format!("('{name}', '{value}')"))
        .collect();
    format!(
        "SELECT pg_catalog.count(pg_catalog.set_config(s.name, s.value, false)) \
         FROM (VALUES {}) AS s(name, value) \
         WHERE pg_catalog.current_setting(s.name, true) IS NOT NULL",
        pairs.join(", ")
    )
}

/// The keepalive settings that bound a silent client to `bound`; names
/// and values that need no quoting.
fn silent_client_settings(bound: Duration) -> [(&'static str, String); 4] {
    let idle = bound.as_millis().div_ceil(1000) as u64;
    let user_timeout_ms = (idle + SERVER_PROBES) * 1000;
    [
        ("tcp_keepalives_idle", format!("{idle}s")),
        ("tcp_keepalives_interval", "1s".to_owned()),
        ("tcp_keepalives_count", SERVER_PROBES.to_string()),
        ("tcp_user_timeout", format!("{user_timeout_ms}ms")),
    ]
}

/// Sets each of `settings` for the session, skipping those this server
/// does not have, in one round trip; returns how many were set. A setting
/// the server refuses fails the whole statement, which is tolerated: the
/// session is in autocommit, so nothing else is undone.
fn set_known(client: &mut Client, settings: &[(&str, String)]) -> Result<i64, postgres::Error> {
    let names: Vec<&str> = settings.iter().map(|(name, _)| *name).collect();
    let values: Vec<&str> = settings.iter().map(|(_, value)| value.as_str()).collect();
    let set = client.query_typed(
        "SELECT count(set_config(s.name, s.value, false)) \
         FROM unnest($1::text[], $2::text[]) AS s(name, value) \
         WHERE current_setting(s.name, true) IS NOT NULL",
        &[(&names, Type::TEXT_ARRAY), (&values, Type::TEXT_ARRAY)],
    );
    match set {
        Ok(rows) => Ok(rows.first().map_or(0, |row| row.get(0))),
        Err(e) if e.as_db_error().is_some() && !is_fatal(&e) => Ok(0),
        Err(e) => Err(e),
    }
}

fn is_fatal(error: &postgres::Error) -> bool {
    error.as_db_error().is_some_and(|db| {
        matches!(db.severity(), "FATAL" | "PANIC") || db.code().code().starts_with("57")
    })
}

/// What a watch reports a loss with.
pub(crate) struct Context {
    pub(crate) lock: String,
    pub(crate) server: String,
}

/// The thread that owns a watched lock session (see the module docs).
pub(crate) struct Watch {
    stop: Sender<()>,
    thread: Option<JoinHandle<Option<Box<Client>>>>,
    lost: Arc<Mutex<Option<LockLost>>>,
}

impl Watch {
    /// Moves `client` into a heartbeat thread; `on_lost` is called there,
    /// once, if the lock is lost before [`Watch::stop`]. Before that,
    /// `idle_session_timeout` becomes `server_bound` (heartbeats now keep
    /// the session busy). It is set here, before the caller's work starts,
    /// and not by the thread: a statement has no answer timeout, so one
    /// sent into a partition would keep the thread from ever noticing it,
    /// and the server would never end the silent session. If the thread
    /// cannot start, `client` comes back.
    pub(crate) fn start(
        mut client: Box<Client>,
        context: Context,
        server_bound: Duration,
        on_lost: Box<dyn FnOnce(LockLost) + Send>,
        cancel: Option<Subscription>,
    ) -> Result<Watch, (Box<Client>, std::io::Error)> {
        let ms = server_bound.as_millis().to_string() + "ms";
        // An error here means a broken session, which the first look of
        // the heartbeat reports with its cause.
        let _ = set_known(&mut client, &[("idle_session_timeout", ms)]);
        let (stop, stopped) = mpsc::channel();
        let (hand_over, handed) = mpsc::sync_channel::<Box<Client>>(1);
        let lost = Arc::new(Mutex::new(None));
        let slot = lost.clone();
        let thread = std::thread::Builder::new()
            .name("withlock-heartbeat".into())
            .spawn(move || {
                let client = handed.recv().ok()?;
                beat_until_stopped(client, &stopped, &context, &slot, on_lost, cancel)
            });
        let thread = match thread {
            Ok(thread) => thread,
            Err(e) => return Err((client, e)),
        };
        hand_over
            .send(client)
            .expect("the heartbeat thread waits for its session");
        Ok(Watch {
            stop,
            thread: Some(thread),
            lost,
        })
    }

    /// The loss, once noticed.
    pub(crate) fn lost(&self) -> Option<LockLost> {
        self.lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Ends the heartbeat and gives the session back, or None if it was
    /// lost (then the callback has run, unless the loss was noticed only
    /// after the stop was asked for). Waits for a heartbeat in flight.
    pub(crate) fn stop(mut self) -> Option<Box<Client>> {
        self.finish()
    }

    fn finish(&mut self) -> Option<Box<Client>> {
        let _ = self.stop.send(());
        let thread = self.thread.take()?;
        thread.join().ok().flatten()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // Dropping the session closes it, which releases the lock.
        drop(self.finish());
    }
}

/// The heartbeat thread: returns the session when asked to stop, None
/// once it is lost.
fn beat_until_stopped(
    mut client: Box<Client>,
    stopped: &Receiver<()>,
    context: &Context,
    slot: &Mutex<Option<LockLost>>,
    on_lost: Box<dyn FnOnce(LockLost) + Send>,
    mut cancel: Option<Subscription>,
) -> Option<Box<Client>> {
    let mut next_beat = Instant::now() + HEARTBEAT_INTERVAL;
    loop {
        let nap = next_beat
            .saturating_duration_since(Instant::now())
            .min(LISTEN_EVERY);
        match stopped.recv_timeout(nap) {
            Err(RecvTimeoutError::Timeout) => {}
            // Asked to stop, or the guard is gone.
            _ => return Some(client),
        }
        let checked = if Instant::now() >= next_beat {
            // Counted from the send, so a slow answer does not stretch
            // the detection bound.
            next_beat = Instant::now() + HEARTBEAT_INTERVAL;
            beat(&mut client)
        } else {
            listen(&mut client, cancel.as_mut())
        };
        let Err(cause) = checked else { continue };
        // A closed session's drop is quick, but one with a heartbeat still
        // unanswered (a partition) waits for that answer: never here.
        std::thread::spawn(move || drop(client));
        if stopped.try_recv() != Err(TryRecvError::Empty) {
            // Noticed only as the holder let go: nothing left to stop.
            return None;
        }
        let lost = LockLost {
            lock: context.lock.clone(),
            server: context.server.clone(),
            cause,
        };
        *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(lost.clone());
        on_lost(lost);
        return None;
    }
}

/// One heartbeat: an empty query, answered within [`ANSWER_TIMEOUT`].
fn beat(client: &mut Client) -> Result<(), LossCause> {
    let sent = Instant::now();
    client.is_valid(ANSWER_TIMEOUT).map_err(|e| {
        if e.as_db_error().is_none() && sent.elapsed() >= ANSWER_TIMEOUT {
            LossCause::NoAnswer {
                waited: ANSWER_TIMEOUT,
            }
        } else {
            cause_of(&e)
        }
    })
}

/// Reads what the server sent unasked, waiting no more than
/// [`LOOK`]: a FATAL message when it ends the session, or the end of the
/// connection; and the notifications, which a holder that may be
/// cancelled checks ([`crate::pg::cancel`]).
fn listen(client: &mut Client, cancel: Option<&mut Subscription>) -> Result<(), LossCause> {
    use postgres::fallible_iterator::FallibleIterator;
    // Reading notifications drives the connection. The wait, however
    // short, lets the driver's runtime learn from epoll that the socket
    // has something: without it a look sees nothing, ever.
    let mut heard = Vec::new();
    {
        let mut notifications = client.notifications();
        let mut unasked = notifications.timeout_iter(LOOK);
        while let Some(n) = unasked.next().map_err(|e| cause_of(&e))? {
            heard.push(n);
        }
    }
    if let (Some(cancel), false) = (cancel, heard.is_empty()) {
        cancel.hear(client, &heard);
    }
    if client.is_closed() {
        return Err(LossCause::ConnectionLost {
            cause: "connection closed".into(),
        });
    }
    Ok(())
}

fn cause_of(error: &postgres::Error) -> LossCause {
    match error.as_db_error() {
        Some(db) if is_fatal(error) => LossCause::Terminated {
            message: db.message().to_owned(),
        },
        _ => LossCause::ConnectionLost {
            cause: with_causes(error),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounds_fit_the_issue_and_the_server_waits_longer() {
        assert!(DETECTION_BOUND <= Duration::from_secs(10));
        assert_eq!(DETECTION_BOUND, HEARTBEAT_INTERVAL + ANSWER_TIMEOUT);
        let grace = Duration::from_millis(1500);
        assert!(server_bound(grace) > DETECTION_BOUND + grace);
        assert_eq!(server_bound(DEFAULT_GRACE), Duration::from_secs(28));
    }

    #[test]
    fn losses_say_what_happened() {
        let lost = LockLost {
            lock: "deploy".into(),
            server: "db:5432/ci".into(),
            cause: LossCause::NoAnswer {
                waited: ANSWER_TIMEOUT,
            },
        };
        assert_eq!(
            lost.to_string(),
            "lost the lock deploy (PostgreSQL db:5432/ci): no answer from the server for 6s"
        );
    }
}
