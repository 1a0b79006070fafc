//! The native half of the `withlock` Python package: the withlock protocol
//! (the same lock files, flock(2) and holder look-up as the `withlock`
//! command) exposed to Python.
//!
//! This module stays small and typed loosely on purpose: the public API,
//! its exceptions and its docs live in the pure-Python package `withlock`,
//! which turns [`NativeError`] into `withlock.Busy`, `withlock.Timeout` and
//! the rest. Two things can only be done here:
//! - the wait releases the GIL, and each time a signal interrupts the
//!   blocked flock(2) it takes the GIL back to run Python's signal handlers,
//!   so Ctrl-C (`KeyboardInterrupt`) ends the wait at once;
//! - a guard remembers the process that took the lock, so that a fork child
//!   that inherited it never unlocks its parent's lock;
//! - at import, [`withlock::fork_child`] is switched on: a child forked at
//!   any moment (while a thread holds a lock, waits for one, or opens its
//!   lock file) gets none of the lock descriptors, so it never holds nor
//!   later receives the parent's lock.
#![deny(missing_docs)]

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use withlock::{
    AnyGuard, AnyLock, Error, ErrorKind, Found, Holder, Holders, Lock, LockLoss, LockSet, LockSpec,
    LockStatus, Mode, SetGuard, SetHooks, Supersede, Wait, WaitCancel, WaitHooks,
};

create_exception!(
    _withlock,
    NativeError,
    PyException,
    "A withlock error: args are (kind, message, lock, holders, waiters, waited). \
     The withlock package turns it into its public exceptions."
);

/// A held set of locks. Releasing it, or dropping it in the process that
/// took it, unlocks; in any other process (a fork child) it only closes
/// that process's descriptors. Any thread may use it: the guard is behind a
/// mutex, never held while Python code runs.
#[pyclass(module = "withlock._withlock", frozen)]
struct Guard {
    guard: Mutex<Option<SetGuard>>,
    /// The process that took the lock: the only one that may unlock it.
    owner: u32,
    /// Each lock's label with its fencing token, for the locks that draw
    /// one (server locks), in the order they were taken.
    fences: Vec<(String, i64)>,
    /// Each lock's label with the place it holds, for the counting
    /// semaphores (`max=N`): 0 to N-1, unique among the current holders.
    slots: Vec<(String, u32)>,
}

impl Guard {
    fn new(guard: SetGuard, set: &LockSet) -> Guard {
        let fences = set
            .locks()
            .zip(guard.guards())
            .filter_map(|(lock, held)| Some((lock.label().to_owned(), held.fence()?)))
            .collect();
        let slots = set
            .locks()
            .zip(guard.guards())
            .filter_map(|(lock, held)| Some((lock.label().to_owned(), held.slot()?)))
            .collect();
        Guard {
            guard: Mutex::new(Some(guard)),
            owner: std::process::id(),
            fences,
            slots,
        }
    }

    fn in_owner(&self) -> bool {
        std::process::id() == self.owner
    }

    fn slot(&self) -> MutexGuard<'_, Option<SetGuard>> {
        // A panic cannot leave the guard half changed: take the value.
        self.guard.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self) -> Option<SetGuard> {
        self.slot().take()
    }
}

/// Lets go of `guard` in a process that did not take it (a fork child):
/// it closes this process's lock descriptors, and says nothing on a
/// server session, which belongs to the parent (a word from the child
/// would garble the parent's protocol).
fn close_without_release(guard: SetGuard) {
    for held in guard.into_guards() {
        match held {
            AnyGuard::File(file) => file.close_without_release(),
            AnyGuard::Socket(socket) => socket.close_without_release(),
            // A server lock (a PostgreSQL session, an etcd lease) is the
            // parent's to end.
            server => std::mem::forget(server),
        }
    }
}

#[pymethods]
impl Guard {
    /// Unlocks and returns True; returns False without unlocking when the
    /// guard was already let go of or this process is not the one that took
    /// the lock (a fork child), which only closes its own descriptors.
    fn release(&self, py: Python<'_>) -> PyResult<bool> {
        let Some(guard) = self.take() else {
            return Ok(false);
        };
        if !self.in_owner() {
            close_without_release(guard);
            return Ok(false);
        }
        // A lost server lock has nothing left to release: not an error.
        let lost = guard.lost().is_some();
        match py.detach(|| guard.release()) {
            Ok(()) => Ok(true),
            Err(_) if lost => Ok(true),
            Err(e) => Err(native_error(py, &e)),
        }
    }

    /// Closes this process's descriptors, leaving the locks to the other
    /// processes that share them (for a fork child).
    fn close_without_release(&self) {
        if let Some(guard) = self.take() {
            close_without_release(guard);
        }
    }

    /// True while this process holds the locks through this guard.
    #[getter]
    fn held(&self) -> bool {
        self.slot().is_some() && self.in_owner()
    }

    /// Seconds since the locks were taken, or None when not held.
    #[getter]
    fn held_for(&self) -> Option<f64> {
        self.slot().as_ref().map(|g| g.held_for().as_secs_f64())
    }

    /// `[(label, token)]`: the fencing token of each lock that draws one.
    #[getter]
    fn fences(&self) -> Vec<(String, i64)> {
        self.fences.clone()
    }

    /// `[(label, place)]`: the place (0 to N-1) each `max=N` lock holds.
    #[getter]
    fn slots(&self) -> Vec<(String, u32)> {
        self.slots.clone()
    }

    /// Watches every lock that can be lost while this process lives (a
    /// server lock): `on_lost(message)` is called once per lost lock, from
    /// a heartbeat thread, within the detection bound
    /// (`withlock::pg::heartbeat::DETECTION_BOUND`).
    fn watch(&self, py: Python<'_>, on_lost: Py<PyAny>) -> PyResult<()> {
        let mut slot = self.slot();
        let Some(guard) = slot.as_mut() else {
            return Ok(());
        };
        guard
            .watch_for_loss(move |lost| tell_python(&on_lost, &lost))
            .map_err(|e| native_error(py, &e))
    }

    /// What the watch noticed, if a lock was lost: one line.
    #[getter]
    fn lost(&self) -> Option<String> {
        self.slot()
            .as_ref()
            .and_then(SetGuard::lost)
            .map(|lost| withlock::escape::text(&lost.to_string()))
    }
}

/// Calls Python's `on_lost` with the loss, from the heartbeat thread. An
/// exception it raises is reported as unraisable (it has nowhere to go);
/// an interpreter that is shutting down is not called.
fn tell_python(on_lost: &Py<PyAny>, lost: &LockLoss) {
    let message = withlock::escape::text(&lost.to_string());
    let _ = Python::try_attach(|py| {
        if let Err(err) = on_lost.call1(py, (message,)) {
            err.write_unraisable(py, Some(on_lost.bind(py)));
        }
    });
}

impl Drop for Guard {
    fn drop(&mut self) {
        let Some(guard) = self.take() else {
            return;
        };
        if !self.in_owner() {
            close_without_release(guard);
            return;
        }
        // In the owner, dropping the SetGuard unlocks, as it should; not
        // holding the GIL, since a server lock's heartbeat thread may be
        // waiting for it to report a loss, and the drop waits for that
        // thread to end.
        Python::attach(|py| py.detach(move || drop(guard)));
    }
}

/// Ends a wait in progress on another thread: asyncio's cancellation of a
/// task whose wait runs in a helper thread ([`withlock::WaitCancel`]).
#[pyclass(module = "withlock._withlock")]
#[derive(Default)]
struct Canceller {
    cancel: WaitCancel,
}

#[pymethods]
impl Canceller {
    #[new]
    fn new() -> Canceller {
        Canceller::default()
    }

    /// Asks the wait to stop; it does within about a millisecond, with the
    /// "interrupted" error, having left the queue. Never blocks.
    fn cancel(&self) {
        self.cancel.cancel();
    }

    /// True once cancel() was called.
    #[getter]
    fn cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }
}

/// Asks Python to run its signal handlers each time a signal interrupts
/// the wait, and stops the wait when one raises (KeyboardInterrupt).
#[derive(Default)]
struct SignalCheck {
    /// The exception a signal handler raised, to be raised after the wait.
    pending: Option<PyErr>,
}

impl WaitHooks for SignalCheck {
    fn interrupted(&mut self) -> bool {
        match Python::attach(|py| py.check_signals()) {
            Ok(()) => false,
            Err(err) => {
                self.pending = Some(err);
                true
            }
        }
    }
}

impl SetHooks for SignalCheck {}

/// One lock of a [`Request`] for Python: `(label, kind, mode, path, key)`.
type LockRow = (String, String, &'static str, Option<PathBuf>, Vec<u8>);

/// The locks one `withlock.lock()` call names, parsed once: the library's
/// [`LockSet`], taken all or none in its global order.
#[pyclass(module = "withlock._withlock", frozen)]
struct Request {
    set: LockSet,
}

/// Makes the request for `specs` (each a name, a path or a socket, with
/// its own `=shared` / `=exclusive` if it gives one), as the command reads
/// its NAMEs: on this machine in `dir`, or with `url` as names on that
/// PostgreSQL server. A lock without a mode of its own is shared with
/// `shared`, or a counting semaphore of `max` holders with `max`.
/// `grace`: seconds the caller takes to stop its work once a server lock
/// is lost (`PgLock::with_grace`).
#[pyfunction]
#[pyo3(signature = (specs, dir, url, shared, max, grace))]
fn request(
    py: Python<'_>,
    specs: Vec<String>,
    dir: Option<PathBuf>,
    url: Option<String>,
    shared: bool,
    max: Option<u32>,
    grace: f64,
) -> PyResult<Request> {
    let default = if shared {
        Mode::Shared
    } else {
        Mode::Exclusive
    };
    let grace = Duration::try_from_secs_f64(grace)
        .map_err(|_| PyValueError::new_err("grace must be 0 or more seconds"))?;
    // What other clients of a server see this process running.
    let command = url.as_ref().map(|_| this_command()).unwrap_or_default();
    let mut locks = Vec::with_capacity(specs.len());
    for spec in &specs {
        let (lock, own_mode) = match &url {
            Some(url) => {
                let spec = LockSpec::parse_on_server(spec).map_err(|e| native_error(py, &e))?;
                // The URL's scheme chooses the kind of server.
                let lock = AnyLock::on_server(url, spec.target.as_str(), &command, grace)
                    .map_err(|e| native_error(py, &e))?;
                (lock, spec.mode)
            }
            _ => {
                let spec = LockSpec::parse(spec).map_err(|e| native_error(py, &e))?;
                let lock = AnyLock::at(&spec.target, &spec.label, dir.as_deref())
                    .map_err(|e| native_error(py, &e))?;
                (lock, spec.mode)
            }
        };
        // As for the command: a lock's own mode wins over shared and max.
        let lock = match (own_mode, max) {
            (Some(mode), _) => lock.with_mode(mode),
            (None, Some(max)) => lock.with_max(max),
            (None, None) => lock.with_mode(default),
        };
        locks.push(lock.map_err(|e| native_error(py, &e))?);
    }
    let set = LockSet::new(locks).map_err(|e| native_error(py, &e))?;
    Ok(Request { set })
}

/// This process's command line, as `/proc/self/cmdline` has it.
fn this_command() -> Vec<String> {
    std::fs::read("/proc/self/cmdline")
        .map(|raw| {
            raw.split(|&b| b == 0)
                .filter(|arg| !arg.is_empty())
                .map(|arg| String::from_utf8_lossy(arg).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[pymethods]
impl Request {
    /// Takes every lock, all or none. `timeout`: None waits forever, 0
    /// tries once, else the longest wait for the whole set in seconds (the
    /// caller checks it is not negative or NaN); one too long for the clock
    /// waits forever, as [`Wait::For`] says. `supersede`: give up with a
    /// "superseded" error when a newer superseding request for one of the
    /// locks comes while this one waits, as `withlock --supersede`.
    /// `cancel`: a [`Canceller`] that another thread may use to end the wait.
    #[pyo3(signature = (timeout, supersede=false, cancel=None))]
    fn acquire(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        supersede: bool,
        cancel: Option<PyRef<'_, Canceller>>,
    ) -> PyResult<Guard> {
        let wait = match timeout {
            None => Wait::Forever,
            Some(t) if t <= 0.0 => Wait::NoWait,
            Some(t) => Duration::try_from_secs_f64(t).map_or(Wait::Forever, Wait::For),
        };
        let mut hooks = SignalCheck::default();
        // A signal Python's handler takes just before the wait blocks must
        // still wake it, so SignalCheck runs and a KeyboardInterrupt is raised.
        withlock::wake_waits_on_handled_signals();
        // Other Python threads run while this one sleeps in the kernel.
        let cancel = cancel.map(|c| c.cancel.clone());
        let result = py.detach(|| match &cancel {
            Some(cancel) => cancel
                .hooks(&mut hooks)
                .and_then(|mut hooks| self.take(wait, supersede, &mut hooks)),
            None => self.take(wait, supersede, &mut hooks),
        });
        match result {
            Ok(guard) => Ok(Guard::new(guard, &self.set)),
            Err(e) if e.kind() == ErrorKind::Interrupted => {
                Err(hooks.pending.take().unwrap_or_else(|| native_error(py, &e)))
            }
            Err(e) => Err(native_error(py, &e)),
        }
    }

    /// `[(label, kind, mode, path, key)]` for each lock in the order they
    /// are taken: `kind` "file", "socket" or "postgres"; `mode` as the
    /// command shows it ("exclusive", "shared", "max"); `path` the lock
    /// file of a file lock, else None; `key` bytes naming the lock the same
    /// way in every process, however it was spelt.
    #[getter]
    fn locks(&self) -> Vec<LockRow> {
        self.set
            .keyed()
            .iter()
            .map(|(key, lock)| {
                let path = match lock {
                    AnyLock::File(file) => Some(file.path()),
                    _ => None,
                };
                let mode = match lock.max() {
                    Some(_) => "max",
                    None => mode_word(lock.mode()),
                };
                (
                    lock.label().to_owned(),
                    lock.kind().to_string(),
                    mode,
                    path,
                    key.to_bytes(),
                )
            })
            .collect()
    }

    /// `(holders, waiters)` of every lock of the request now, as lists of
    /// dicts, in the order the locks are taken.
    fn inspect<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let mut all = Holders::default();
        for lock in self.set.locks() {
            let holders = py
                .detach(|| lock.holders())
                .map_err(|e| native_error(py, &e))?;
            all.holders.extend(holders.holders);
            all.waiters.extend(holders.waiters);
        }
        holders_tuple(py, &all)
    }
}

/// What `withlock --list --json` prints, as a list of dicts with the same
/// keys: the locks in `dir` (or the default lock directory), or with `url`
/// on that server; only `names` when some are given.
#[pyfunction]
#[pyo3(signature = (names, dir, url))]
fn list<'py>(
    py: Python<'py>,
    names: Vec<String>,
    dir: Option<PathBuf>,
    url: Option<String>,
) -> PyResult<Vec<Bound<'py, PyDict>>> {
    let locks = py
        .detach(|| match &url {
            Some(url) => withlock::list_on_server(url, &names),
            None => {
                let dir = dir.unwrap_or_else(withlock::lock_dir::default_dir);
                withlock::list(&dir, &names)
            }
        })
        .map_err(|e| native_error(py, &e))?;
    locks.iter().map(|lock| status_dict(py, lock)).collect()
}

fn status_dict<'py>(py: Python<'py>, lock: &LockStatus) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("name", &lock.name)?;
    dict.set_item("path", lock.server.is_none().then_some(&lock.path))?;
    dict.set_item("server", lock.server.as_deref())?;
    dict.set_item("state", lock.state())?;
    dict.set_item("exists", lock.exists())?;
    dict.set_item("mode", lock.mode_label())?;
    let both = holders_tuple(py, &lock.holders)?;
    let (holders, waiters) = (both.get_item(0)?, both.get_item(1)?);
    dict.set_item("holders", holders)?;
    dict.set_item("unidentified", lock.holders.unidentified.as_deref())?;
    dict.set_item("waiters", waiters)?;
    dict.set_item("hidden", lock.holders.any_hidden())?;
    dict.set_item("obstruction", lock.obstruction.as_deref())?;
    let skipped = match &lock.found {
        Found::Skipped(what) => Some(what.as_str()),
        _ => None,
    };
    dict.set_item("skipped", skipped)?;
    Ok(dict)
}

impl Request {
    /// Takes the set, watching for newer requests with `supersede`.
    fn take(
        &self,
        wait: Wait,
        supersede: bool,
        hooks: &mut dyn SetHooks,
    ) -> withlock::Result<SetGuard> {
        if supersede {
            let watch = Supersede::announce(&self.set)?;
            let acquired = self.set.acquire_with(wait, &mut watch.hooks(hooks));
            watch.finish(acquired)
        } else {
            self.set.acquire_with(wait, hooks)
        }
    }
}

fn mode_word(mode: Mode) -> &'static str {
    match mode {
        Mode::Exclusive => "exclusive",
        Mode::Shared => "shared",
    }
}

/// The exception for `error`: a [`NativeError`] whose args say what kind of
/// error it is and carry the holders of a conflict.
fn native_error(py: Python<'_>, error: &Error) -> PyErr {
    match error_args(py, error) {
        Ok(args) => NativeError::new_err(args.unbind()),
        Err(conversion) => conversion,
    }
}

fn error_args<'py>(py: Python<'py>, error: &Error) -> PyResult<Bound<'py, PyTuple>> {
    let kind = match error.kind() {
        ErrorKind::Busy => "busy",
        ErrorKind::TimedOut => "timeout",
        ErrorKind::Interrupted => "interrupted",
        ErrorKind::Usage => "usage",
        ErrorKind::Permission => "permission",
        ErrorKind::Superseded => "superseded",
        ErrorKind::Unavailable => "unavailable",
        _ => "other",
    };
    let (lock, waited) = match error {
        Error::Busy { lock, .. } | Error::Interrupted { lock } | Error::Superseded { lock, .. } => {
            (Some(lock.as_str()), None)
        }
        Error::TimedOut { lock, waited, .. } => (Some(lock.as_str()), Some(waited.as_secs_f64())),
        _ => (None, None),
    };
    // The newer request that superseded this one is its "holder".
    let superseded_by = match error {
        Error::Superseded { by, .. } => Some(Holders {
            holders: vec![(**by).clone()],
            ..Holders::default()
        }),
        _ => None,
    };
    let empty = Holders::default();
    let named = error.holders().or(superseded_by.as_ref()).unwrap_or(&empty);
    let holders = holders_tuple(py, named)?;
    let (holders, waiters) = (holders.get_item(0)?, holders.get_item(1)?);
    PyTuple::new(
        py,
        [
            kind.into_pyobject(py)?.into_any(),
            error.to_string().into_pyobject(py)?.into_any(),
            lock.into_pyobject(py)?.into_any(),
            holders,
            waiters,
            waited.into_pyobject(py)?.into_any(),
        ],
    )
}

fn holders_tuple<'py>(py: Python<'py>, holders: &Holders) -> PyResult<Bound<'py, PyTuple>> {
    let dicts = |list: &[Holder]| {
        list.iter()
            .map(|h| holder_dict(py, h))
            .collect::<PyResult<Vec<_>>>()
    };
    (dicts(&holders.holders)?, dicts(&holders.waiters)?).into_pyobject(py)
}

fn holder_dict<'py>(py: Python<'py>, holder: &Holder) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    dict.set_item("pid", holder.pid)?;
    // As the command labels it: a place of `max=N` is "max", not "shared".
    dict.set_item("mode", holder.mode_label())?;
    dict.set_item("uid", holder.uid)?;
    dict.set_item("user", holder.user.as_deref())?;
    let argv = holder.command.as_ref().map(|args| {
        args.iter()
            .map(|arg| PyBytes::new(py, arg))
            .collect::<Vec<_>>()
    });
    dict.set_item("argv", argv)?;
    dict.set_item("host", holder.host.as_deref())?;
    dict.set_item("command_truncated", holder.command_truncated)?;
    let session = holder.session.as_ref();
    dict.set_item("role", session.and_then(|s| s.role.as_deref()))?;
    dict.set_item("client_addr", session.and_then(|s| s.client.as_json()))?;
    dict.set_item("command", holder.command_line())?;
    dict.set_item("since", holder.since.map(epoch_seconds))?;
    dict.set_item("started", holder.started.map(epoch_seconds))?;
    dict.set_item("running", holder.running)?;
    dict.set_item("text", holder.to_string())?;
    Ok(dict)
}

fn epoch_seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// The native module `withlock._withlock`.
#[pymodule]
fn _withlock(m: &Bound<'_, PyModule>) -> PyResult<()> {
    withlock::fork_child::close_lock_files_in_fork_children();
    m.add_class::<Guard>()?;
    m.add_class::<Canceller>()?;
    m.add_class::<Request>()?;
    m.add_function(wrap_pyfunction!(request, m)?)?;
    m.add_function(wrap_pyfunction!(list, m)?)?;
    m.add("NativeError", m.py().get_type::<NativeError>())?;
    m.add(
        "LOSS_DETECTION_BOUND",
        withlock::pg::heartbeat::DETECTION_BOUND.as_secs_f64(),
    )?;
    Ok(())
}
