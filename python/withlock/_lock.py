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
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Type, TypeVar, Union

from . import _log, _lost
from . import _withlock as _native
from ._errors import Busy, Holder, LockError, LockLost, Timeout, _holders, _translate

F = TypeVar("F", bound=Callable[..., Any])
StrPath = Union[str, "os.PathLike[str]"]
#: One lock name, path or socket spec, or several in a list or tuple.
Names = Union[StrPath, Iterable[StrPath]]
#: Called with the LockLost when a server lock is lost while held.
OnLost = Callable[[LockLost], Any]


class _Unset:
    def __repr__(self) -> str:
        return "<the lock's own timeout>"


_UNSET: Any = _Unset()

#: The default of ``grace=``, as the command's ``--grace``.
DEFAULT_GRACE = 10.0
#: The most ``grace=`` may be, as the command's ``--grace``.
MAX_GRACE = 3600.0

# The locks this process holds now, for the fork handler and the
# self-deadlock check. Weak: a Lock that is garbage-collected while held is
# released, as a file is closed.
_held: "weakref.WeakSet[Lock]" = weakref.WeakSet()
_held_mutex = threading.Lock()


class Lock:
    """One or more named locks, taken all or none: flock(2) on
    ``<dir>/<name>.lock`` (the same file and protocol as the ``withlock``
    command, so the two exclude each other), a socket (``tcp:``, ``unix:``,
    ``abstract:``), or with ``url=`` an advisory lock on a PostgreSQL
    server. Exclusive, shared (``shared=True`` or ``"name=shared"``) or a
    counting semaphore of up to N holders (``max=N``, like the command's
    ``--max N``); requests are served in the order they arrived.

    Create it with :func:`withlock.lock`. Use it as a context manager, as a
    decorator, or with :meth:`acquire` and :meth:`release`.
    """

    def __init__(
        self,
        *names: Names,
        shared: bool = False,
        timeout: Optional[float] = None,
        dir: Optional[StrPath] = None,
        url: Optional[str] = None,
        max: Optional[int] = None,
        supersede: bool = False,
        grace: float = DEFAULT_GRACE,
        on_lost: Optional[OnLost] = None,
    ) -> None:
        self._specs = _check_names(names)
        self._shared = _check_flag("shared", shared)
        self._supersede = _check_flag("supersede", supersede)
        self._max = _check_max(max, self._shared)
        self._timeout = _check_timeout(timeout)
        self._grace = _check_grace(grace)
        if on_lost is not None and not callable(on_lost):
            raise TypeError(f"on_lost must be a callable taking a withlock.LockLost, or None, not {type(on_lost).__name__}")
        self._on_lost = on_lost
        self._dir, self._url = _place(dir, url)
        if self._url is not None and self._supersede:
            # Supersede notices travel over this machine's abstract
            # sockets; a newer request on another machine would never be seen.
            raise ValueError("supersede works on one machine only: drop supersede=True or url=")
        self._request: _native.Request = _call(
            _native.request, list(self._specs), self._dir, self._url, self._shared, self._max, self._grace
        )
        self._locks = self._request.locks
        self._guard: Optional[_native.Guard] = None
        self._thread: Optional[int] = None
        self._mutex = threading.Lock()
        # Signalled when this object is let go of, for threads that share it.
        self._free = threading.Condition(self._mutex)
        self._acquiring = False
        self._acquirer: Optional[int] = None
        self._acquisition: Optional[object] = None
        self._lost = threading.Event()
        self._lost_error: Optional[LockLost] = None
        if self._url is not None and on_lost is None:
            # The default reaction to a loss raises in the main thread.
            _lost.prepare_main_thread()

    # -- taking and letting go --------------------------------------------

    def acquire(self, timeout: Optional[float] = _UNSET) -> "Lock":
        """Take the locks, all or none, waiting in the kernel or on the
        server (no polling) while one is held.

        ``timeout`` (seconds, for the whole set) overrides the lock's own:
        None waits as long as it takes, 0 tries once. Raises
        :class:`withlock.Busy` (``timeout=0``) or :class:`withlock.Timeout`,
        both naming the holder, or :class:`withlock.Superseded`
        (``supersede=True``). The GIL is released while waiting, and Ctrl-C
        ends the wait with ``KeyboardInterrupt``. Returns the lock itself.

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
            if self._url is not None and self._on_lost is None:
                _lost.prepare_main_thread()
            slow_wait = _log.wait_started(self)
            started = time.monotonic()
            try:
                guard = _call(self._request.acquire, wait, self._supersede, cancel)
            finally:
                _log.wait_ended(slow_wait)
            _log.acquired(self, time.monotonic() - started)
            # Should an exception (Ctrl-C) land before this line, the guard
            # is dropped and the lock released at once.
            # This acquisition, for a loss noticed later to be sure it
            # concerns this one and not an earlier one of the same object.
            acquisition = object()
            with self._mutex:
                self._guard, self._thread = guard, threading.get_ident()
                self._acquisition = acquisition
                self._lost, self._lost_error = threading.Event(), None
            with _held_mutex:
                _held.add(self)
            _call(guard.watch, _lost.watcher(self, acquisition))
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
        holders, waiters = _call(self._request.inspect)
        message = f"{self.name} is busy: another thread of this process holds it through this lock object"
        if wait == 0:
            return Busy(message, self.name, _holders(holders), _holders(waiters))
        return Timeout(message, self.name, _holders(holders), _holders(waiters), waited)

    def release(self) -> None:
        """Let go of the locks.

        In a child process forked while the lock was held this is a quiet
        no-op: the child never holds the lock, and the parent keeps it.
        A server lock that was lost has nothing left to release: releasing
        it is quiet too. Raises ``RuntimeError`` if the lock was not acquired.
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
                exc.add_note(f"withlock: releasing {self.name!r} failed as well: {release_error}")

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

    # -- lock loss -----------------------------------------------------------

    @property
    def lost(self) -> threading.Event:
        """Set when a server lock of this acquisition was lost while held
        (its session ended or cannot be reached); a new event each
        :meth:`acquire`. Local locks are never lost."""
        return self._lost

    def check(self) -> None:
        """Raise :class:`withlock.LockLost` if a lock of this acquisition
        was lost; return quietly otherwise."""
        error = self._lost_error
        if error is not None:
            raise error

    @property
    def fence(self) -> Optional[int]:
        """The fencing token of the server lock held: higher than that of
        every earlier grant of that name on that database, so storage that
        remembers the highest token it saw can refuse a late writer. None
        when no lock held draws one (local locks) or nothing is held.
        Raises ``RuntimeError`` when several server locks are held: each
        has its own (:attr:`fences`)."""
        fences = self.fences
        if len(fences) > 1:
            raise RuntimeError(
                f"{len(fences)} server locks are held and each has its own fencing token: "
                "use .fences, a dict of lock name to token"
            )
        return next(iter(fences.values()), None)

    @property
    def fences(self) -> Dict[str, int]:
        """Each held server lock's name with its fencing token, in the order
        they were taken; empty for local locks or when nothing is held."""
        guard = self._guard
        if guard is None or not guard.held:
            return {}
        return dict(guard.fences)

    @property
    def slot(self) -> Optional[int]:
        """The place this holder of a ``max=N`` lock holds, 0 to N-1, unique
        among its current holders (as the command's ``WITHLOCK_SLOT_INDEX``;
        for ``--slots a,b,c`` use ``["a", "b", "c"][held.slot]``). None when
        no lock held is a semaphore or nothing is held. Raises
        ``RuntimeError`` when several ``max`` locks are held: each has its
        own (:attr:`slots`)."""
        slots = self.slots
        if len(slots) > 1:
            raise RuntimeError(
                f"{len(slots)} max=N locks are held and each has its own place: "
                "use .slots, a dict of lock name to place"
            )
        return next(iter(slots.values()), None)

    @property
    def slots(self) -> Dict[str, int]:
        """Each held ``max=N`` lock's name with its place (0 to N-1), in the
        order they were taken; empty when none is held."""
        guard = self._guard
        if guard is None or not guard.held:
            return {}
        return dict(guard.slots)

    def _on_native_loss(self, acquisition: object, message: str) -> None:
        """From the heartbeat thread: a lock of `acquisition` was lost."""
        with self._mutex:
            if self._acquisition is not acquisition or self._guard is None or self._lost_error is not None:
                return
            error = LockLost(message, self.name)
            self._lost_error = error
            lost = self._lost
        lost.set()
        if self._on_lost is not None:
            self._on_lost(error)
        else:
            _lost.raise_in_main_thread(self, acquisition, error)

    def _still_holds(self, acquisition: object) -> bool:
        return self._acquisition is acquisition and self._guard is not None

    # -- looking -----------------------------------------------------------

    @property
    def names(self) -> Tuple[str, ...]:
        """The lock specs as given (names, paths or sockets, with their
        own ``=shared`` or ``=exclusive``)."""
        return self._specs

    @property
    def name(self) -> str:
        """The lock name (or path) as given; for several locks, their
        names joined by ``", "``."""
        return ", ".join(self._specs)

    @property
    def path(self) -> Optional[str]:
        """The lock file: ``<dir>/<name>.lock``, or the path given. None for
        several locks, a socket lock or a server lock."""
        if len(self._locks) != 1:
            return None
        path = self._locks[0][3]
        return None if path is None else os.fspath(path)

    @property
    def url(self) -> Optional[str]:
        """The PostgreSQL server's URL for server locks, else None."""
        return self._url

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
        """True while this object holds the lock in this process (and no
        lock of it was lost)."""
        guard = self._guard
        return guard is not None and guard.held and self._lost_error is None

    @property
    def held_for(self) -> Optional[float]:
        """Seconds since this object took the lock; None when not held."""
        guard = self._guard
        return guard.held_for if guard is not None and guard.held else None

    def holders(self) -> List[Holder]:
        """Who holds the lock now, in any process (this one included); for
        several locks, the holders of each in turn."""
        return _holders(_call(self._request.inspect)[0])

    def waiters(self) -> List[Holder]:
        """Who is blocked waiting for the lock now."""
        return _holders(_call(self._request.inspect)[1])

    def __repr__(self) -> str:
        if self._max is not None:
            mode = f"max {self._max}"
        else:
            mode = "shared" if self._shared else "exclusive"
        state = "held" if self.locked else "free"
        # Never the URL: it may hold a password.
        where = "on a server" if self._url is not None else f"at {self.path!r}"
        return f"<withlock.Lock {self.name!r} {mode} {state} {where}>"

    # -- internals ---------------------------------------------------------

    def _copy(self) -> "Lock":
        return Lock(
            *self._specs,
            shared=self._shared,
            timeout=self._timeout,
            dir=self._dir,
            url=self._url,
            max=self._max,
            supersede=self._supersede,
            grace=self._grace,
            on_lost=self._on_lost,
        )

    def _refuse_waiting_for_this_thread(self) -> None:
        me = threading.get_ident()
        with _held_mutex:
            mine = [other for other in _held if other._thread == me]
        if self._waits_for_any_of(mine):
            raise RuntimeError(
                f"this thread already holds the lock {self.name!r} through another "
                "withlock.lock() object; waiting for it would wait for itself forever"
            )

    def _waits_for_any_of(self, held: "List[Lock]") -> bool:
        """Whether a request for these locks would wait, however long, for
        one of the locks ``held`` (by the same thread or task): locks are
        the same lock by their key, however they were spelt."""
        held_modes: Dict[bytes, List[str]] = {}
        for other in held:
            if other.locked:
                for _, _, mode, _, key in other._locks:
                    held_modes.setdefault(key, []).append(mode)
        for _, _, mode, _, key in self._locks:
            modes = held_modes.get(key, [])
            # A shared request waits only for exclusive requests ahead of
            # it; a semaphore of N waits for those too, and for N requests
            # of any kind.
            exclusive = "exclusive" in modes
            if mode == "max":
                waits = exclusive or len(modes) >= (self._max or 1)
            elif mode == "shared":
                waits = exclusive
            else:
                waits = bool(modes)
            if waits:
                return True
        return False


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


def _check_names(names: Tuple[Names, ...]) -> Tuple[str, ...]:
    """The lock specs: each argument a name, path or socket spec, or a list
    or tuple of them."""
    specs: List[str] = []
    for given in names:
        if isinstance(given, (list, tuple)):
            specs.extend(_check_name(name) for name in given)
        else:
            specs.append(_check_name(given))  # type: ignore[arg-type]
    if not specs:
        raise TypeError("withlock.lock() needs a lock name, such as withlock.lock(\"deploy\"), or several")
    return tuple(specs)


def _check_name(name: StrPath) -> str:
    if not isinstance(name, (str, os.PathLike)):
        raise TypeError(f"a lock name must be str or os.PathLike[str], not {type(name).__name__}")
    spec = os.fspath(name)
    if not isinstance(spec, str):
        raise TypeError(f"a lock name must be str or os.PathLike[str], not {type(spec).__name__}")
    _check_text("a lock name", spec)
    return spec


def _check_text(what: str, text: str) -> None:
    if "\0" in text:
        raise ValueError(f"{what} cannot contain a NUL character: {text!r}")
    try:
        text.encode()
    except UnicodeEncodeError:
        raise ValueError(f"{what} must be valid Unicode (it has a lone surrogate): {text!r}") from None


def _check_flag(what: str, value: bool) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{what} must be True or False, not {type(value).__name__}")
    return value


def _place(dir: Optional[StrPath], url: Optional[str]) -> Tuple[Optional[str], Optional[str]]:
    """(dir, url) as the command chooses them: dir= for locks on this
    machine, url= for locks on a server, never both; neither given,
    $WITHLOCK_URL if set, else $WITHLOCK_DIR (else the default directory)."""
    if dir is not None and url is not None:
        raise ValueError("dir= is for locks on this machine and url= for locks on a server: drop one")
    if url is not None:
        if not isinstance(url, str):
            raise TypeError(f"url must be a str such as \"postgres://user@host/db\", not {type(url).__name__}")
        _check_text("url", url)
        if not url.strip():
            raise ValueError("url is empty: give a server such as \"postgres://user@host/db\", or drop url=")
        return None, url
    if dir is not None:
        if not isinstance(dir, (str, os.PathLike)):
            raise TypeError(f"dir must be str or os.PathLike[str], not {type(dir).__name__}")
        path = os.fspath(dir)
        if not isinstance(path, str):
            raise TypeError(f"dir must be str or os.PathLike[str], not {type(path).__name__}")
        _check_text("dir", path)
        return path, None
    from_env = os.environ.get("WITHLOCK_URL") or None
    if from_env is not None:
        return None, from_env
    # As the command's --dir does, so both find the same lock files.
    return os.environ.get("WITHLOCK_DIR") or None, None


def _check_grace(grace: float) -> float:
    if isinstance(grace, bool) or not isinstance(grace, (int, float)):
        raise TypeError(f"grace must be a number of seconds, not {type(grace).__name__}")
    try:
        seconds = float(grace)
    except OverflowError:
        seconds = math.inf if grace > 0 else -math.inf
    if math.isnan(seconds) or not 0 <= seconds <= MAX_GRACE:
        raise ValueError(
            f"grace must be 0 to {MAX_GRACE:.0f} seconds, the longest the next holder of a server "
            f"lock pauses for a holder that ended without releasing; not {grace}"
        )
    return seconds


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
    *names: Names,
    shared: bool = False,
    timeout: Optional[float] = None,
    dir: Optional[StrPath] = None,
    url: Optional[str] = None,
    max: Optional[int] = None,
    supersede: bool = False,
    grace: float = DEFAULT_GRACE,
    on_lost: Optional[OnLost] = None,
) -> Lock:
    """A lock called ``name`` (the file ``<dir>/<name>.lock``), or several
    taken together, all or none, like the command's ``withlock NAME...``.

    Each name is letters, digits, ``.``, ``_``, ``-`` (not starting with
    ``.``, at most 128 bytes); one with a ``/`` in it is a lock file path
    instead; ``tcp:PORT``, ``tcp:HOST:PORT``, ``unix:PATH`` and
    ``abstract:NAME`` are socket locks (exclusive only). ``NAME=shared`` or
    ``NAME=exclusive`` gives one lock its own mode. Several names may be
    given as arguments or as one list. They are taken in one global order,
    whatever order they are given in, so calls naming the same locks never
    deadlock.

    ``dir`` defaults, like the command's ``--dir``, to ``$WITHLOCK_DIR``
    when set, else ``/run/lock`` (``/tmp`` where that is missing).
    ``url="postgres://user@host/db"`` takes the locks on that PostgreSQL
    server instead, for every machine using it (like ``--url``; neither
    ``dir`` nor ``url`` given: ``$WITHLOCK_URL`` if set). ``shared=True``
    takes shared locks (any number of shared holders, no exclusive one).
    ``max=N`` (N >= 1) makes each lock without a mode of its own a counting
    semaphore instead, like ``--max N``: up to N holders at once. Its
    holders exclude exclusive holders but not ``shared=True`` ones, so give
    every holder of a name the same ``max``. ``max`` cannot be combined
    with ``shared=True`` (``ValueError``).
    Requests of every kind are served in the order they arrived.
    ``timeout`` is the default wait of :meth:`Lock.acquire` in seconds: None
    waits as long as it takes, 0 tries once. ``supersede=True`` gives up
    waiting (:class:`withlock.Superseded`) when a newer ``supersede``
    request for one of the locks comes, like ``--supersede``.

    Server locks can be lost while held: see :attr:`Lock.lost`,
    :meth:`Lock.check` and ``on_lost`` (by default :class:`withlock.LockLost`
    is raised in the main thread), and :attr:`Lock.fence`. ``grace`` is how
    long the block takes to stop once told (as ``--grace``, 0 to 3600
    seconds): the server keeps the lock of a holder it cannot hear for
    8 + grace + 10 seconds.

    Raises ``ValueError`` for an invalid name or value and ``TypeError`` for
    a value of the wrong type, both naming it. Nothing is opened until the
    lock is acquired::

        with withlock.lock("artifacts", timeout=600):
            build()

        with withlock.lock("build", "artifacts=shared"):
            package()

        with withlock.lock("deploy", url="postgres://ci@db/ci") as held:
            upload(fence=held.fence)
    """
    return Lock(
        *names,
        shared=shared,
        timeout=timeout,
        dir=dir,
        url=url,
        max=max,
        supersede=supersede,
        grace=grace,
        on_lost=on_lost,
    )
