"""withlock.Lock: a named lock held by this process, shared with the command."""

from __future__ import annotations

import functools
import inspect
import math
import os
import threading
import time
import weakref
from types import TracebackType
from typing import Any, Callable, List, Optional, Type, TypeVar, Union

from . import _log
from . import _withlock as _native
from ._errors import Busy, Holder, LockError, Timeout, _holders, _translate

F = TypeVar("F", bound=Callable[..., Any])
StrPath = Union[str, "os.PathLike[str]"]


class _Unset:
    def __repr__(self) -> str:
        return "<the lock's own timeout>"


_UNSET: Any = _Unset()

# The locks this process holds now, for the fork handler and the
# self-deadlock check. Weak: a Lock that is garbage-collected while held is
# released, as a file is closed.
_held: "weakref.WeakSet[Lock]" = weakref.WeakSet()
_held_mutex = threading.Lock()


class Lock:
    """A named lock: flock(2) on ``<dir>/<name>.lock``, the same file and
    protocol as the ``withlock`` command, so the two exclude each other.
    Exclusive, shared (``shared=True``) or a counting semaphore of up to N
    holders (``max=N``, like the command's ``--max N``); requests are served
    in the order they arrived.

    Create it with :func:`withlock.lock`. Use it as a context manager, as a
    decorator, or with :meth:`acquire` and :meth:`release`.
    """

    def __init__(
        self,
        name: StrPath,
        *,
        shared: bool = False,
        timeout: Optional[float] = None,
        dir: Optional[StrPath] = None,
        max: Optional[int] = None,
    ) -> None:
        spec = os.fspath(name)
        if not isinstance(spec, str):
            raise TypeError(f"a lock name must be str or os.PathLike[str], not {type(name).__name__}")
        self._spec = spec
        if dir is None:
            # As the command's --dir does, so both find the same lock files.
            dir = os.environ.get("WITHLOCK_DIR") or None
        self._dir = None if dir is None else os.fspath(dir)
        self._shared = bool(shared)
        self._max = _check_max(max, self._shared)
        self._timeout = _check_timeout(timeout)
        self._path: str = os.fspath(_call(_native.lock_path, spec, self._dir))
        self._guard: Optional[_native.Guard] = None
        self._thread: Optional[int] = None
        self._mutex = threading.Lock()
        # Signalled when this object is let go of, for threads that share it.
        self._free = threading.Condition(self._mutex)
        self._acquiring = False
        self._acquirer: Optional[int] = None

    # -- taking and letting go --------------------------------------------

    def acquire(self, timeout: Optional[float] = _UNSET) -> "Lock":
        """Take the lock, waiting in the kernel (no polling) while it is held.

        ``timeout`` (seconds) overrides the lock's own: None waits as long as
        it takes, 0 tries once. Raises :class:`withlock.Busy` (``timeout=0``)
        or :class:`withlock.Timeout`, both naming the holder. The GIL is
        released while waiting, and Ctrl-C ends the wait with
        ``KeyboardInterrupt``. Returns the lock itself.

        Threads may share one object: while one holds it, another thread's
        ``acquire()`` waits for it to be let go of (within the timeout), as
        with ``threading.Lock``. Raises ``RuntimeError`` if this thread
        already holds the lock through this object (no reentrant count), or
        if it would wait forever for a lock it holds through another object
        (it would wait for itself).
        """
        wait = self._timeout if timeout is _UNSET else _check_timeout(timeout)
        return self._acquire(wait, None)

    def _acquire(self, wait: Optional[float], cancel: Optional[_native.Canceller]) -> "Lock":
        """acquire(), with ``cancel`` for another thread to end the wait
        (an asyncio task waits in a helper thread)."""
        wait = self._wait_for_the_object(wait)
        try:
            if wait is None:
                self._refuse_waiting_for_this_thread()
            slow_wait = _log.wait_started(self)
            started = time.monotonic()
            try:
                guard = _call(
                    _native.acquire, self._spec, self._dir, self._shared, wait, self._max, cancel
                )
            finally:
                _log.wait_ended(slow_wait)
            _log.acquired(self, time.monotonic() - started)
            # Should an exception (Ctrl-C) land before this line, the guard
            # is dropped and the lock released at once.
            with self._mutex:
                self._guard, self._thread = guard, threading.get_ident()
            with _held_mutex:
                _held.add(self)
        finally:
            with self._mutex:
                self._acquiring, self._acquirer = False, None
                self._free.notify()
        return self

    def _wait_for_the_object(self, wait: Optional[float]) -> Optional[float]:
        """Marks this object as being acquired by this thread, once no
        other thread holds or acquires it through this object (they take
        turns, as with ``threading.Lock``); returns what is left of
        ``wait`` for the lock itself."""
        me = threading.get_ident()
        started = time.monotonic()
        with self._free:
            while self._acquiring or (self._guard is not None and self._guard.held):
                if me in (self._acquirer, self._thread):
                    raise RuntimeError(
                        f"{self!r} is already held or being acquired by this thread; "
                        "create another withlock.lock() object for a second holder"
                    )
                waited = time.monotonic() - started
                if wait is not None and waited >= wait:
                    raise self._object_busy(wait, waited)
                self._free.wait(None if wait is None else wait - waited)
            self._acquiring, self._acquirer = True, me
        return None if wait is None else max(0.0, wait - (time.monotonic() - started))

    def _object_busy(self, wait: float, waited: float) -> LockError:
        """Busy or Timeout for a lock this object holds in another thread."""
        holders, waiters = _call(_native.inspect, self._spec, self._dir)
        message = f"{self._spec} is busy: another thread of this process holds it through this lock object"
        if wait == 0:
            return Busy(message, self._spec, _holders(holders), _holders(waiters))
        return Timeout(message, self._spec, _holders(holders), _holders(waiters), waited)

    def release(self) -> None:
        """Let go of the lock.

        In a child process forked while the lock was held this is a quiet
        no-op: the child never holds the lock, and the parent keeps it.
        Raises ``RuntimeError`` if the lock was not acquired.
        """
        with self._mutex:
            guard, self._guard, self._thread = self._guard, None, None
            self._free.notify()
        if guard is None:
            raise RuntimeError(f"{self!r} is not held, so it cannot be released")
        with _held_mutex:
            _held.discard(self)
        held_for = guard.held_for
        _call(guard.release)
        _log.released(self, held_for)

    def __enter__(self) -> "Lock":
        return self.acquire()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        if exc is None:
            self.release()
            return
        # The block's own exception must come out untouched, even in the
        # unlikely case that unlocking fails too.
        try:
            self.release()
        except Exception as release_error:
            if hasattr(exc, "add_note"):
                exc.add_note(f"withlock: releasing {self._spec!r} failed as well: {release_error}")

    def __call__(self, func: F) -> F:
        """Use the lock as a decorator: each call runs holding the lock.

        Every call takes the lock through a fresh object with the same
        settings, so calls from several threads take turns, like calls from
        several processes.
        """
        if inspect.iscoroutinefunction(func):
            raise TypeError("withlock.lock cannot decorate a coroutine function: it would hold the lock only while creating the coroutine")

        @functools.wraps(func)
        def locked_call(*args: Any, **kwargs: Any) -> Any:
            with self._copy():
                return func(*args, **kwargs)

        return locked_call  # type: ignore[return-value]

    # -- looking -----------------------------------------------------------

    @property
    def name(self) -> str:
        """The lock name (or path) as given."""
        return self._spec

    @property
    def path(self) -> str:
        """The lock file: ``<dir>/<name>.lock``, or the path given."""
        return self._path

    @property
    def shared(self) -> bool:
        """True for a shared lock, False for an exclusive one or a semaphore."""
        return self._shared

    @property
    def max(self) -> Optional[int]:
        """N for a counting semaphore of up to N holders (``max=N``); None
        for an exclusive or shared lock."""
        return self._max

    @property
    def timeout(self) -> Optional[float]:
        """The default timeout of :meth:`acquire`, in seconds; None: forever."""
        return self._timeout

    @property
    def locked(self) -> bool:
        """True while this object holds the lock in this process."""
        guard = self._guard
        return guard is not None and guard.held

    @property
    def held_for(self) -> Optional[float]:
        """Seconds since this object took the lock; None when not held."""
        guard = self._guard
        return guard.held_for if guard is not None and guard.held else None

    def holders(self) -> List[Holder]:
        """Who holds the lock now, in any process (this one included)."""
        return _holders(_call(_native.inspect, self._spec, self._dir)[0])

    def waiters(self) -> List[Holder]:
        """Who is blocked waiting for the lock now."""
        return _holders(_call(_native.inspect, self._spec, self._dir)[1])

    def __repr__(self) -> str:
        if self._max is not None:
            mode = f"max {self._max}"
        else:
            mode = "shared" if self._shared else "exclusive"
        state = "held" if self.locked else "free"
        return f"<withlock.Lock {self._spec!r} {mode} {state} at {self._path!r}>"

    # -- internals ---------------------------------------------------------

    def _copy(self) -> "Lock":
        return Lock(
            self._spec, shared=self._shared, timeout=self._timeout, dir=self._dir, max=self._max
        )

    def _refuse_waiting_for_this_thread(self) -> None:
        me = threading.get_ident()
        with _held_mutex:
            mine = [other for other in _held if other._thread == me]
        if self._waits_for_any_of(mine):
            raise RuntimeError(
                f"this thread already holds the lock {self._spec!r} through another "
                "withlock.lock() object; waiting for it would wait for itself forever"
            )

    def _waits_for_any_of(self, held: "List[Lock]") -> bool:
        """Whether a request for this lock would wait, however long, for
        one of the locks ``held`` (by the same thread or task)."""
        mine = [other for other in held if other._path == self._path and other.locked]
        # A shared request waits only for exclusive requests ahead of it; a
        # semaphore of N waits for those too, and for N requests of any kind.
        exclusive = [other for other in mine if not other._shared and other._max is None]
        if self._max is not None:
            waits_for_itself = bool(exclusive) or len(mine) >= self._max
        elif self._shared:
            waits_for_itself = bool(exclusive)
        else:
            waits_for_itself = bool(mine)
        return waits_for_itself


def _check_max(max: Optional[int], shared: bool) -> Optional[int]:
    if max is None:
        return None
    if isinstance(max, bool) or not isinstance(max, int):
        raise TypeError(f"max must be a whole number of holders or None, not {type(max).__name__}")
    if not 1 <= max <= 2**32 - 1:
        raise ValueError(f"max must be 1 or more (and below 2**32) holders, not {max}")
    if shared:
        raise ValueError(
            "max=N and shared=True cannot be combined: max=N is already a semaphore "
            "of up to N holders; drop shared=True, or drop max for any number of "
            "shared holders"
        )
    return int(max)


def _check_timeout(timeout: Optional[float]) -> Optional[float]:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError(f"timeout must be a number of seconds or None, not {type(timeout).__name__}")
    try:
        seconds = float(timeout)
    except OverflowError:
        # A whole number beyond any float: negative, or longer than any wait.
        seconds = math.inf if timeout > 0 else -math.inf
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(f"timeout must be 0 or more seconds, or None to wait forever, not {seconds}")
    # Infinite, or too long for the clock to hold its end: no deadline, and
    # the same checks as None.
    return None if seconds >= _FOREVER else seconds


# From here on (in seconds) the end of a wait cannot be represented.
_FOREVER = 9.2e18


def _call(function: Callable[..., Any], *args: Any) -> Any:
    """Calls into the native module, raising the public exceptions."""
    try:
        return function(*args)
    except _native.NativeError as native:
        raise _translate(native) from None


def _before_fork() -> None:
    _held_mutex.acquire()


def _after_fork_in_parent() -> None:
    _held_mutex.release()


def _after_fork_in_child() -> None:
    """The child never holds its parent's locks. The native module has
    already replaced every lock descriptor in the child, held or waited on,
    by one on /dev/null (withlock::fork_child, for any fork); here the held
    guards let go of those, so that nothing the child does can unlock the
    parent's lock. The child's Lock objects stay "acquired" only so that
    leaving a ``with`` block or calling release() in the child is a no-op.
    """
    global _held_mutex
    _held_mutex = threading.Lock()
    _log.after_fork_in_child()
    for held in list(_held):
        guard = held._guard
        if guard is not None:
            guard.close_without_release()
    _held.clear()


os.register_at_fork(
    before=_before_fork,
    after_in_parent=_after_fork_in_parent,
    after_in_child=_after_fork_in_child,
)


def lock(
    name: StrPath,
    *,
    shared: bool = False,
    timeout: Optional[float] = None,
    dir: Optional[StrPath] = None,
    max: Optional[int] = None,
) -> Lock:
    """A lock called ``name``: the file ``<dir>/<name>.lock``.

    ``name`` is letters, digits, ``.``, ``_``, ``-`` (not starting with
    ``.``, at most 128 bytes); a name with a ``/`` in it is a lock file path
    instead. ``dir`` defaults, like the command's ``--dir``, to
    ``$WITHLOCK_DIR`` when set, else ``/run/lock`` (``/tmp`` where that is
    missing). ``shared=True`` takes a shared
    lock (any number of shared holders, no exclusive one). ``max=N`` (N >= 1)
    makes it a counting semaphore instead, like the command's ``--max N``: up
    to N holders at once (``max=1``: one at a time). Its holders exclude
    exclusive holders but not ``shared=True`` ones, so give every holder of a
    name the same ``max``. ``max`` cannot be combined with ``shared=True``
    (``ValueError``).
    Requests of every kind are served in the order they arrived.
    ``timeout`` is the default wait of :meth:`Lock.acquire` in seconds: None
    waits as long as it takes, 0 tries once.

    Raises ``ValueError`` for an invalid name. Nothing is opened until the
    lock is acquired::

        with withlock.lock("artifacts", timeout=600):
            build()

        with withlock.lock("gpu", max=2):  # two at a time
            train()
    """
    return Lock(name, shared=shared, timeout=timeout, dir=dir, max=max)
