//! The line that says who we are waiting for.
//!
//! Waiting in silence looks like a hang. After about a second of waiting,
//! withlock names the holder on stderr: once, as a plain line, when stderr
//! is a file or pipe; on a terminal, as a line that updates every second
//! and is cleared when the lock is ours. The lock itself is still waited
//! for in the kernel by the main thread; this thread only looks the holder
//! up (`/proc/locks` for a file lock; for a socket lock, a connection that
//! asks for its peer credentials) to describe it. It is started only once the lock
//! turns out to be held, so an uncontended run pays nothing for it.

use std::io::IsTerminal;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use withlock::{AnyLock, Lock, SetHooks, WaitHooks, human_duration};

/// How long a wait goes unreported.
const QUIET_PERIOD: Duration = Duration::from_secs(1);
/// How often the terminal line is refreshed.
const REFRESH: Duration = Duration::from_secs(1);

/// What the reporter has done, shared with the main thread so that it
/// knows whether a line on the terminal must be cleared before the command
/// starts.
#[derive(Default)]
struct Shown {
    stopped: bool,
    live_line: bool,
}

/// A running reporter; [`WaitReport::finish`] stops it.
pub struct WaitReport {
    stop: Sender<()>,
    shown: Arc<Mutex<Shown>>,
    thread: JoinHandle<()>,
}

impl WaitReport {
    /// Starts reporting on a wait for `lock` that starts now.
    pub fn start(lock: AnyLock) -> WaitReport {
        let (stop, stopped) = mpsc::channel::<()>();
        let shown = Arc::new(Mutex::new(Shown::default()));
        let thread = {
            let shown = Arc::clone(&shown);
            std::thread::spawn(move || report(&lock, &stopped, &shown))
        };
        WaitReport {
            stop,
            shown,
            thread,
        }
    }

    /// Stops reporting. A live terminal line is gone when this returns;
    /// otherwise the thread is left to end on its own, off the hand-over path.
    pub fn finish(self) {
        let live_line = {
            let mut shown = self.shown.lock().unwrap_or_else(|e| e.into_inner());
            shown.stopped = true;
            shown.live_line
        };
        let _ = self.stop.send(());
        if live_line {
            let _ = self.thread.join();
        }
    }
}

fn report(lock: &AnyLock, stopped: &mpsc::Receiver<()>, shown: &Mutex<Shown>) {
    let started = Instant::now() - Duration::from_millis(1);
    if stopped.recv_timeout(QUIET_PERIOD) != Err(RecvTimeoutError::Timeout) {
        return;
    }
    let mut state = shown.lock().unwrap_or_else(|e| e.into_inner());
    if state.stopped {
        return;
    }
    if !std::io::stderr().is_terminal() {
        eprintln!("withlock: {}", describe(lock, started));
        return;
    }
    state.live_line = true;
    drop(state);
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("withlock: {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    loop {
        bar.set_message(describe(lock, started));
        if stopped.recv_timeout(REFRESH) != Err(RecvTimeoutError::Timeout) {
            break;
        }
    }
    bar.finish_and_clear();
}

fn describe(lock: &AnyLock, started: Instant) -> String {
    let waited = human_duration(started.elapsed());
    let label = withlock::escape::text(lock.label());
    match lock.holders() {
        Ok(holders) if !holders.is_empty() => {
            format!("waiting {waited} for {label}: {holders}")
        }
        _ => format!("waiting {waited} for {label}"),
    }
}

/// Starts a [`WaitReport`] when the wait for a lock begins, if reports
/// are wanted; with several locks, on the lock being waited for.
pub struct ReportWhenWaiting {
    lock: Option<AnyLock>,
    report: Option<WaitReport>,
    quiet: bool,
}

impl ReportWhenWaiting {
    /// Reports on waits for the locks it is told of, unless `quiet`.
    pub fn new(quiet: bool) -> ReportWhenWaiting {
        ReportWhenWaiting {
            lock: None,
            report: None,
            quiet,
        }
    }

    /// Stops the report, if one was started.
    pub fn finish(self) {
        if let Some(report) = self.report {
            report.finish();
        }
    }
}

impl WaitHooks for ReportWhenWaiting {
    fn waiting(&mut self) {
        if let Some(lock) = self.lock.take() {
            // The last lock's wait, if any, is over.
            if let Some(report) = self.report.take() {
                report.finish();
            }
            self.report = Some(WaitReport::start(lock));
        }
    }

    /// Passed on as a line of its own, unless quiet; a live waiting line
    /// is cleared first so the two do not share a line.
    fn notice(&mut self, message: &str) {
        if let Some(report) = self.report.take() {
            report.finish();
        }
        if !self.quiet {
            eprintln!("withlock: {}", withlock::escape::text(message));
        }
    }

    /// A quiet run prints no holder, so it need not look one up.
    fn name_holders(&self) -> bool {
        !self.quiet
    }
}

impl SetHooks for ReportWhenWaiting {
    fn taking(&mut self, lock: &AnyLock) {
        self.lock = (!self.quiet).then(|| lock.clone());
    }
}
