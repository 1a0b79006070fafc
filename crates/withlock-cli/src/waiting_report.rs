//! The line that says who we are waiting for.
//!
//! Waiting in silence looks like a hang. After about a second of waiting,
//! withlock names the holder on stderr: once, as a plain line, when stderr
//! is a file or pipe; on a terminal, as a line that updates every second
//! and is cleared when the lock is ours. The lock itself is still waited
//! for in the kernel by the main thread; this thread only reads
//! `/proc/locks` to describe the holder.

use std::io::IsTerminal;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use withlock::{FileLock, Lock, human_duration};

/// How long a wait goes unreported.
const QUIET_PERIOD: Duration = Duration::from_secs(1);
/// How often the terminal line is refreshed.
const REFRESH: Duration = Duration::from_secs(1);

/// A running reporter; [`WaitReport::finish`] stops it and clears its line.
pub struct WaitReport {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl WaitReport {
    /// Starts reporting on a wait for `lock` that starts now.
    pub fn start(lock: FileLock) -> WaitReport {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let started = Instant::now();
            if stopped.recv_timeout(QUIET_PERIOD) != Err(RecvTimeoutError::Timeout) {
                return;
            }
            if std::io::stderr().is_terminal() {
                live_line(&lock, started, &stopped);
            } else {
                eprintln!("withlock: {}", describe(&lock, started));
            }
        });
        WaitReport { stop, thread }
    }

    /// Stops reporting; on a terminal the line is gone when this returns.
    pub fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

fn live_line(lock: &FileLock, started: Instant, stopped: &mpsc::Receiver<()>) {
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

fn describe(lock: &FileLock, started: Instant) -> String {
    let waited = human_duration(started.elapsed());
    let label = withlock::escape::text(lock.label());
    match lock.holders() {
        Ok(holders) if !holders.is_empty() => {
            format!("waiting {waited} for {label}: {holders}")
        }
        _ => format!("waiting {waited} for {label}"),
    }
}
