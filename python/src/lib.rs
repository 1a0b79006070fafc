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

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use withlock::{
    Error, ErrorKind, FileGuard, FileLock, FileTarget, Holder, Holders, Lock, Mode, Wait,
    WaitCancel, WaitHooks,
};

create_exception!(
    _withlock,
    NativeError,
    PyException,
    "A withlock error: args are (kind, message, lock, holders, waiters, waited). \
     The withlock package turns it into its public exceptions."
);

/// A held lock. Releasing it, or dropping it in the process that took it,
/// unlocks; in any other process (a fork child) it only closes that
/// process's descriptor.
#[pyclass(module = "withlock._withlock")]
struct Guard {
    guard: Option<FileGuard>,
    /// The process that took the lock: the only one that may unlock it.
    owner: u32,
}

impl Guard {
    fn new(guard: FileGuard) -> Guard {
        Guard {
            guard: Some(guard),
            owner: std::process::id(),
        }
    }

    fn in_owner(&self) -> bool {
        std::process::id() == self.owner
    }
}

#[pymethods]
impl Guard {
    /// Unlocks and returns True; returns False without unlocking when the
    /// guard was already let go of or this process is not the one that took
    /// the lock (a fork child), which only closes its own descriptor.
    fn release(&mut self, py: Python<'_>) -> PyResult<bool> {
        let Some(guard) = self.guard.take() else {
            return Ok(false);
        };
        if !self.in_owner() {
            guard.close_without_release();
            return Ok(false);
        }
        guard
            .release()
            .map(|()| true)
            .map_err(|e| native_error(py, &e))
    }

    /// Closes this process's descriptor, leaving the lock to the other
    /// processes that share it (for a fork child).
    fn close_without_release(&mut self) {
        if let Some(guard) = self.guard.take() {
            guard.close_without_release();
        }
    }

    /// True while this process holds the lock through this guard.
    #[getter]
    fn held(&self) -> bool {
        self.guard.is_some() && self.in_owner()
    }

    /// Seconds since the lock was taken, or None when not held.
    #[getter]
    fn held_for(&self) -> Option<f64> {
        self.guard.as_ref().map(|g| g.held_for().as_secs_f64())
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        // In the owner, dropping the FileGuard unlocks, as it should.
        if !self.in_owner() {
            self.close_without_release();
        }
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

/// Takes the lock `spec` (a name, or a path when it holds `/`) in `dir`.
///
/// `timeout`: None waits forever, 0 tries once, else the longest wait in
/// seconds (the caller checks it is not negative or NaN); one too long for
/// the clock waits forever, as [`Wait::For`] says. `max`: a counting
/// semaphore of up to `max` holders (at least 1, not with `shared`)
/// instead of an exclusive or shared lock. `cancel`: a [`Canceller`] that
/// another thread may use to end the wait.
#[pyfunction]
#[pyo3(signature = (spec, dir, shared, timeout, max=None, cancel=None))]
#[allow(clippy::too_many_arguments)]
fn acquire(
    py: Python<'_>,
    spec: &str,
    dir: Option<PathBuf>,
    shared: bool,
    timeout: Option<f64>,
    max: Option<u32>,
    cancel: Option<PyRef<'_, Canceller>>,
) -> PyResult<Guard> {
    let mut lock = file_lock(py, spec, dir.as_deref(), shared)?;
    if let Some(max) = max {
        if shared || max == 0 {
            return Err(PyValueError::new_err(
                "max must be 1 or more, and cannot be combined with shared",
            ));
        }
        lock = lock.with_max(max);
    }
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
            .and_then(|mut hooks| lock.acquire_with(wait, &mut hooks)),
        None => lock.acquire_with(wait, &mut hooks),
    });
    match result {
        Ok(guard) => Ok(Guard::new(guard)),
        Err(e) if e.kind() == ErrorKind::Interrupted => {
            Err(hooks.pending.take().unwrap_or_else(|| native_error(py, &e)))
        }
        Err(e) => Err(native_error(py, &e)),
    }
}

/// The lock file's path; checks the name.
#[pyfunction]
#[pyo3(signature = (spec, dir))]
fn lock_path(py: Python<'_>, spec: &str, dir: Option<PathBuf>) -> PyResult<PathBuf> {
    Ok(file_lock(py, spec, dir.as_deref(), false)?.path())
}

/// `(holders, waiters)` of the lock now, as lists of dicts.
#[pyfunction]
#[pyo3(signature = (spec, dir))]
fn inspect<'py>(
    py: Python<'py>,
    spec: &str,
    dir: Option<PathBuf>,
) -> PyResult<Bound<'py, PyTuple>> {
    let lock = file_lock(py, spec, dir.as_deref(), false)?;
    let holders = py
        .detach(|| lock.holders())
        .map_err(|e| native_error(py, &e))?;
    holders_tuple(py, &holders)
}

fn file_lock(py: Python<'_>, spec: &str, dir: Option<&Path>, shared: bool) -> PyResult<FileLock> {
    let mode = if shared {
        Mode::Shared
    } else {
        Mode::Exclusive
    };
    FileTarget::parse(spec)
        .and_then(|target| FileLock::at(&target, dir))
        .map(|lock| lock.with_mode(mode))
        .map_err(|e| native_error(py, &e))
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
        _ => "other",
    };
    let (lock, waited) = match error {
        Error::Busy { lock, .. } | Error::Interrupted { lock } => (Some(lock.as_str()), None),
        Error::TimedOut { lock, waited, .. } => (Some(lock.as_str()), Some(waited.as_secs_f64())),
        _ => (None, None),
    };
    let empty = Holders::default();
    let holders = holders_tuple(py, error.holders().unwrap_or(&empty))?;
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
    m.add_function(wrap_pyfunction!(acquire, m)?)?;
    m.add_function(wrap_pyfunction!(lock_path, m)?)?;
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    m.add("NativeError", m.py().get_type::<NativeError>())?;
    Ok(())
}
