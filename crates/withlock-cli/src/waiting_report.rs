//! The line that says who we are waiting for.
//!
//! Waiting in silence looks like a hang. After about a second of waiting,
//! withlock names the holder on stderr: once, as a plain line, when stderr
//! is a file or pipe; on a terminal, as a line that updates every second.
//! On a terminal the line is cut to the terminal's width, the holder's
//! command first and then the lock's name, each with a visible `…`, so the
//! holder's pid and how long it has held the lock always show; once the
//! lock is ours the live line gives way to a whole line that stays in the
//! scrollback: `waited 3.2s for NAME: held exclusive by pid N …`. A wait
//! that ends any other way (time-out, signal) leaves no line there: the
//! error that follows says it.
//!
//! The lock itself is still waited for in the kernel by the main thread;
//! this thread only looks the holder up (`/proc/locks` for a file lock;
//! for a socket lock, a connection that asks for its peer credentials) to
//! describe it. A look that finds this process among the holders was taken
//! after the grant, and is not shown: the line never names the waiter
//! itself. The thread is started only once the lock turns out to be held,
//! so an uncontended run pays nothing for it.

use std::io::IsTerminal;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use withlock::{AnyLock, Holders, Lock, SetHooks, WaitHooks, human_duration};

/// How long a wait goes unreported.
const QUIET_PERIOD: Duration = Duration::from_secs(1);
/// How often the terminal line is refreshed.
const REFRESH: Duration = Duration::from_secs(1);
/// What marks a part of the line cut to fit the terminal.
const CUT_MARK: &str = "…";

/// What the reporter has done, shared with the main thread so that it
/// knows whether a line on the terminal must be cleared before the command
/// starts.
#[derive(Default)]
struct Shown {
    stopped: bool,
    granted: bool,
    live_line: bool,
}

/// A running reporter; [`WaitReport::finish`] stops it.
pub(crate) struct WaitReport {
    stop: Sender<()>,
    shown: Arc<Mutex<Shown>>,
    thread: JoinHandle<()>,
}

impl WaitReport {
    /// Starts reporting on a wait for `lock` that starts now.
    pub(crate) fn start(lock: AnyLock) -> WaitReport {
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

    /// Stops reporting; `granted` says whether the wait ended with the
    /// lock. A live terminal line is gone (or, when granted, replaced by
    /// its final form) when this returns; otherwise the thread is left to
    /// end on its own, off the hand-over path.
    pub(crate) fn finish(self, granted: bool) {
        let live_line = {
            let mut shown = self.shown.lock().unwrap_or_else(|e| e.into_inner());
            shown.stopped = true;
            shown.granted = granted;
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
        if let Some(look) = Look::now(lock) {
            say!("{}", look.waiting(started.elapsed()).whole());
        }
        return;
    }
    state.live_line = true;
    drop(state);
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let mut last = None;
    loop {
        if let Some(look) = Look::now(lock) {
            let line = look.waiting(started.elapsed());
            bar.set_message(line.fit(terminal_width()).into_owned());
            last = Some(look);
        }
        if stopped.recv_timeout(REFRESH) != Err(RecvTimeoutError::Timeout) {
            break;
        }
    }
    bar.finish_and_clear();
    let granted = shown.lock().unwrap_or_else(|e| e.into_inner()).granted;
    if let (true, Some(look)) = (granted, last) {
        say!("{}", look.waited(started.elapsed()).whole());
    }
}

/// The width of the terminal on stderr, if it has one.
fn terminal_width() -> Option<usize> {
    console::Term::stderr()
        .size_checked()
        .map(|(_rows, columns)| usize::from(columns))
}

/// One look at the lock waited for: its name, and who holds it when that
/// can be said.
struct Look {
    label: String,
    holders: Option<Holders>,
    /// A stopped request ahead in the queue, which holds it up until it
    /// is passed over.
    stopped: Option<String>,
}

impl Look {
    /// Looks at `lock` now; `None` when this process is among its holders,
    /// that is the lock was granted while we looked.
    fn now(lock: &AnyLock) -> Option<Look> {
        Look::of(lock.label(), lock.holders().ok())
    }

    fn of(label: &str, holders: Option<Holders>) -> Option<Look> {
        let me = std::process::id() as i32;
        let stopped = holders
            .as_ref()
            .and_then(|h| h.stopped_waiter_ahead_of(me))
            .map(ToString::to_string);
        let holders = holders.filter(|h| !h.is_empty());
        if holders
            .as_ref()
            .is_some_and(|h| h.holders.iter().any(|holder| holder.is_this_process()))
        {
            return None;
        }
        Some(Look {
            label: withlock::escape::text(label),
            holders,
            stopped,
        })
    }

    /// `withlock: waiting 4.0s for deploy: held exclusive by pid 81234
    /// (alice) for 2m13s: withlock deploy -- ./script deploy`.
    fn waiting(&self, waited: Duration) -> Line {
        self.line(format!("withlock: waiting {} for ", human_duration(waited)))
    }

    /// The same once the lock is ours: `withlock: waited 4.2s for deploy: …`.
    fn waited(&self, waited: Duration) -> Line {
        self.line(format!("withlock: waited {} for ", human_duration(waited)))
    }

    fn line(&self, start: String) -> Line {
        let mut line = Line::default()
            .fixed(start)
            .cuttable(self.label.clone(), Cut::Second);
        if let Some(holders) = &self.holders {
            let text = holders.text();
            line = line.fixed(format!(": {}", text.head));
            if let Some(command) = text.command {
                line = line.fixed(": ".into()).cuttable(command, Cut::First);
            }
            line = line.fixed(text.tail);
        }
        if let Some(waiter) = &self.stopped {
            let join = if self.holders.is_some() { "; " } else { ": " };
            line = line
                .fixed(format!("{join}ahead in its queue, stopped: "))
                .cuttable(waiter.clone(), Cut::First);
        }
        line
    }
}

/// Which parts of a line give way first to a narrow terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    /// The holder's command.
    First,
    /// The lock's name.
    Second,
}

/// A line in parts, some of which may be cut to fit a terminal. Parts
/// that may not be cut (who holds the lock, and for how long) always show,
/// even if the line must then wrap.
#[derive(Default)]
struct Line {
    parts: Vec<(String, Option<Cut>)>,
}

impl Line {
    fn fixed(mut self, text: String) -> Line {
        self.parts.push((text, None));
        self
    }

    fn cuttable(mut self, text: String, cut: Cut) -> Line {
        self.parts.push((text, Some(cut)));
        self
    }

    /// The line uncut.
    fn whole(&self) -> String {
        self.parts.iter().map(|(text, _)| text.as_str()).collect()
    }

    /// The line cut to `width` columns, if known: the [`Cut::First`] parts
    /// from their end, then the [`Cut::Second`] ones, each down to the
    /// mark alone if need be.
    fn fit(&self, width: Option<usize>) -> std::borrow::Cow<'_, str> {
        let whole = self.whole();
        let Some(width) = width else {
            return whole.into();
        };
        let mut excess = console::measure_text_width(&whole).saturating_sub(width);
        if excess == 0 {
            return whole.into();
        }
        let mut parts: Vec<String> = self.parts.iter().map(|(text, _)| text.clone()).collect();
        for rank in [Cut::First, Cut::Second] {
            for (part, (text, cut)) in parts.iter_mut().zip(&self.parts) {
                if excess == 0 || *cut != Some(rank) {
                    continue;
                }
                let shown = console::measure_text_width(text);
                let room = shown
                    .saturating_sub(excess)
                    .max(console::measure_text_width(CUT_MARK));
                let cut_text = console::truncate_str(text, room, CUT_MARK).into_owned();
                // A wide character at the cut may free a column more than needed.
                excess = excess
                    .saturating_sub(shown.saturating_sub(console::measure_text_width(&cut_text)));
                *part = cut_text;
            }
        }
        parts.concat().into()
    }
}

/// Starts a [`WaitReport`] when the wait for a lock begins, if reports
/// are wanted; with several locks, on the lock being waited for.
pub(crate) struct ReportWhenWaiting {
    lock: Option<AnyLock>,
    report: Option<WaitReport>,
    quiet: bool,
}

impl ReportWhenWaiting {
    /// Reports on waits for the locks it is told of, unless `quiet`.
    pub(crate) fn new(quiet: bool) -> ReportWhenWaiting {
        ReportWhenWaiting {
            lock: None,
            report: None,
            quiet,
        }
    }

    /// Stops the report, if one was started; `granted` says whether the
    /// wait ended with every lock taken.
    pub(crate) fn finish(self, granted: bool) {
        if let Some(report) = self.report {
            report.finish(granted);
        }
    }
}

impl WaitHooks for ReportWhenWaiting {
    fn waiting(&mut self) {
        if let Some(lock) = self.lock.take() {
            // The last lock's wait, if any, is over.
            if let Some(report) = self.report.take() {
                report.finish(true);
            }
            self.report = Some(WaitReport::start(lock));
        }
    }

    /// Passed on as a line of its own, unless quiet; a live waiting line
    /// is cleared first so the two do not share a line.
    fn notice(&mut self, message: &str) {
        if let Some(report) = self.report.take() {
            report.finish(false);
        }
        if !self.quiet {
            say!("withlock: {}", withlock::escape::text(message));
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

#[cfg(test)]
mod tests {
    use super::*;
    use withlock::{FileLock, Holder, Mode};

    fn holder(pid: i32) -> Holder {
        Holder {
            pid,
            mode: Mode::Exclusive,
            uid: Some(0),
            user: Some("root".into()),
            host: None,
            command: Some(vec![b"make".to_vec(), b"deploy".to_vec()]),
            command_truncated: false,
            session: None,
            max: false,
            slot: None,
            deadline: None,
            since: Some(std::time::SystemTime::now() - Duration::from_secs(133)),
            started: None,
            running: true,
        }
    }

    fn held_by(pids: &[i32]) -> Holders {
        Holders {
            holders: pids.iter().map(|&pid| holder(pid)).collect(),
            ..Holders::default()
        }
    }

    /// The grant can come between the second's wait and the look: the look
    /// then finds this process holding the lock, and must say nothing
    /// rather than name the waiter as its own holder.
    #[test]
    fn a_look_after_the_grant_names_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let lock = AnyLock::File(FileLock::named("t", Some(dir.path())).unwrap());
        let _granted = lock.try_acquire().unwrap();
        assert!(Look::now(&lock).is_none(), "the waiter named itself");
        let us = std::process::id() as i32;
        assert!(Look::of("t", Some(held_by(&[4711, us]))).is_none());
    }

    #[test]
    fn a_look_before_the_grant_names_the_holder() {
        let look = Look::of("t", Some(held_by(&[4711]))).unwrap();
        let line = look.waiting(Duration::from_secs(4)).whole();
        assert_eq!(
            line,
            "withlock: waiting 4.0s for t: held exclusive by pid 4711 (root) for 2m13s: make deploy"
        );
        let done = look.waited(Duration::from_millis(4200)).whole();
        assert!(done.starts_with("withlock: waited 4.2s for t: held exclusive by pid 4711"));
        let nobody = Look::of("t", Some(Holders::default())).unwrap();
        assert_eq!(
            nobody.waiting(Duration::from_secs(1)).whole(),
            "withlock: waiting 1.0s for t"
        );
    }

    /// On any width the pid and the holder's age show; the command gives
    /// way first, then the name, each with a visible mark.
    #[test]
    fn a_narrow_terminal_cuts_the_command_then_the_name() {
        let short = Look::of("db", Some(held_by(&[4711]))).unwrap();
        let line = short.waiting(Duration::from_secs(4));
        let whole = line.whole();
        assert_eq!(line.fit(None), whole);
        assert_eq!(line.fit(Some(500)), whole);
        let at_80 = line.fit(Some(80));
        assert_eq!(console::measure_text_width(&at_80), 80, "{at_80}");
        assert!(
            at_80.ends_with("for db: held exclusive by pid 4711 (root) for 2m13s: mak…"),
            "{at_80}"
        );

        let name = "nightly-database-backup-of-the-production-cluster";
        let long = Look::of(name, Some(held_by(&[4711]))).unwrap();
        let line = long.waiting(Duration::from_secs(4));
        let at_80 = line.fit(Some(80));
        assert_eq!(console::measure_text_width(&at_80), 80, "{at_80}");
        assert!(
            at_80.ends_with("for nigh…: held exclusive by pid 4711 (root) for 2m13s: …"),
            "{at_80}"
        );
        // A wide character cannot be halved: the cut frees a column more.
        let wide = Line::default()
            .fixed("abc ".into())
            .cuttable("漢字漢字漢字".into(), Cut::First);
        assert_eq!(wide.fit(Some(14)), "abc 漢字漢字…");
        let line = long.waiting(Duration::from_secs(4));
        for width in [40, 20, 1] {
            let narrow = line.fit(Some(width));
            assert!(
                narrow.ends_with("for …: held exclusive by pid 4711 (root) for 2m13s: …"),
                "{narrow}"
            );
        }
    }
}
