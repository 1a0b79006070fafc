"""withlock.AsyncLock: the same named lock for asyncio code.

flock(2) has no way to tell an event loop that a lock was granted, so each
waiting task waits in a thread of its own, blocked in the kernel like a
synchronous waiter (no polling), and the event loop only hears the outcome.
Cancelling the task stops that wait through a native ``Canceller``: the
thread is signalled (a server wait is ended on the server: a PostgreSQL
statement cancelled, an etcd lease revoked), leaves the arrival queue and
ends, and the cancellation propagates only once nothing is queued or held.

A server lock lost while a task holds it (``url=``) cancels that task, and
``async with`` turns the cancellation into :class:`withlock.LockLost`; an
``on_lost=`` hook replaces that reaction, as for :class:`withlock.Lock`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import weakref
from types import TracebackType
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple, Type, TypeVar

from . import _withlock as _native
from ._errors import Holder, LockLost
from ._lock import _UNSET, DEFAULT_GRACE, Lock, Names, OnLost, StrPath, _check_timeout

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

# The locks each task holds now, for the check that refuses a task waiting
# forever for itself.
_by_task: "weakref.WeakKeyDictionary[asyncio.Task[Any], List[Lock]]" = weakref.WeakKeyDictionary()


class AsyncLock:
    """A named lock for asyncio, the same lock as :class:`withlock.Lock`
    and the ``withlock`` command: ``async with withlock.async_lock("x"):``.

    Waiting never blocks the event loop: each waiting task waits in a
    helper thread of its own, blocked in the kernel, served in arrival
    order with every other request. Cancelling a waiting task (``task.cancel()``,
    ``asyncio.timeout()``, a ``TaskGroup`` failing) ends its wait within
    milliseconds, leaving nothing held and no place in the queue.

    The holder is the task: tasks sharing one object take turns, like
    ``asyncio.Lock``; the task that acquired it releases it.

    Create it with :func:`withlock.async_lock`.
    """

    def __init__(self, settings: Lock) -> None:
        # The arguments were checked once, by the Lock that keeps them (see
        # async_lock); each acquisition takes the lock through a fresh copy.
        self._settings = settings
        self._holds: Dict["asyncio.Task[Any]", Lock] = {}

    async def acquire(self, timeout: Optional[float] = _UNSET) -> "AsyncLock":
        """Take the lock for the current task, waiting without blocking the
        event loop. ``timeout`` as for :meth:`withlock.Lock.acquire`:
        :class:`withlock.Busy` with 0, :class:`withlock.Timeout` when it
        runs out. Returns the lock itself.

        Raises ``RuntimeError`` if the current task already holds it through
        this object, or would wait forever for a lock it holds through
        another one.
        """
        wait = self._settings.timeout if timeout is _UNSET else _check_timeout(timeout)
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("AsyncLock.acquire() must be awaited in an asyncio task")
        if task in self._holds:
            raise RuntimeError(
                f"{self!r} is already held by this task; "
                "create another withlock.async_lock() object for a second holder"
            )
        lock = self._settings._copy()
        if lock._on_lost is None:
            lock._on_lost = self._loss_reaction(task, lock)
        if wait is None and lock._waits_for_any_of(_by_task.get(task, [])):
            raise RuntimeError(
                f"this task already holds the lock {lock.name!r} through another "
                "withlock lock object; waiting for it would wait for itself forever"
            )
        self._holds[task] = lock
        try:
            await _wait_in_thread(lock, wait)
        except BaseException:
            del self._holds[task]
            raise
        _by_task.setdefault(task, []).append(lock)
        return self

    async def release(self) -> None:
        """Let go of the lock the current task holds through this object.

        Raises ``RuntimeError`` if it holds none.
        """
        task = asyncio.current_task()
        lock = self._holds.pop(task, None) if task is not None else None
        if task is None or lock is None:
            raise RuntimeError(f"{self!r} is not held by this task, so it cannot release it")
        held = _by_task.get(task)
        if held is not None and lock in held:
            held.remove(lock)
        # A file lock lets go in one system call, without waiting.
        lock.release()

    async def __aenter__(self) -> "AsyncLock":
        return await self.acquire()

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        task = asyncio.current_task()
        lock = self._holds.get(task) if task is not None else None
        lost = lock._lost_error if lock is not None else None
        if exc is None:
            await self.release()
            return
        try:
            await self.release()
        except Exception as release_error:
            if hasattr(exc, "add_note"):
                exc.add_note(f"withlock: releasing {self.name!r} failed as well: {release_error}")
        if lost is not None and isinstance(exc, asyncio.CancelledError) and task is not None:
            # The cancellation was the loss reaching the task: the block
            # ends with LockLost, and the task is no longer being cancelled.
            uncancel = getattr(task, "uncancel", None)
            if uncancel is not None:
                uncancel()
            raise lost from exc

    def __call__(self, func: F) -> F:
        """Decorate a coroutine function: each call runs holding the lock,
        taken through a fresh object with the same settings."""
        if not inspect.iscoroutinefunction(func):
            raise TypeError(
                "withlock.async_lock decorates coroutine functions (async def); "
                "use withlock.lock for plain functions"
            )

        @functools.wraps(func)
        async def locked_call(*args: Any, **kwargs: Any) -> Any:
            async with self._copy():
                return await func(*args, **kwargs)

        return locked_call  # type: ignore[return-value]

    # -- looking -----------------------------------------------------------

    @property
    def name(self) -> str:
        """The lock name (or path) as given."""
        return self._settings.name

    @property
    def path(self) -> Optional[str]:
        """The lock file: ``<dir>/<name>.lock``, or the path given; None
        for a socket lock."""
        return self._settings.path

    @property
    def shared(self) -> bool:
        """True for a shared lock."""
        return self._settings.shared

    @property
    def max(self) -> Optional[int]:
        """N for a counting semaphore of up to N holders; None otherwise."""
        return self._settings.max

    @property
    def timeout(self) -> Optional[float]:
        """The default timeout of :meth:`acquire`, in seconds; None: forever."""
        return self._settings.timeout

    @property
    def names(self) -> Tuple[str, ...]:
        """The lock specs as given."""
        return self._settings.names

    @property
    def url(self) -> Optional[str]:
        """The server's URL for server locks, else None."""
        return self._settings.url

    @property
    def lost(self) -> Optional[threading.Event]:
        """The current task's acquisition's ``lost`` event (set when a
        server lock of it was lost); None when the task holds nothing
        through this object."""
        lock = self._current()
        return lock.lost if lock is not None else None

    def check(self) -> None:
        """Raise :class:`withlock.LockLost` if a lock the current task holds
        through this object was lost."""
        lock = self._current()
        if lock is not None:
            lock.check()

    @property
    def fence(self) -> Optional[int]:
        """The fencing token of the server lock the current task holds
        (see :attr:`withlock.Lock.fence`)."""
        lock = self._current()
        return lock.fence if lock is not None else None

    @property
    def fences(self) -> Dict[str, int]:
        """Each server lock the current task holds, with its fencing token."""
        lock = self._current()
        return lock.fences if lock is not None else {}

    @property
    def locked(self) -> bool:
        """True while the current task holds the lock through this object."""
        lock = self._current()
        return lock is not None and lock.locked

    @property
    def held_for(self) -> Optional[float]:
        """Seconds since the current task took the lock; None when it does
        not hold it."""
        lock = self._current()
        return lock.held_for if lock is not None else None

    def holders(self) -> List[Holder]:
        """Who holds the lock now, in any process (reads /proc/locks)."""
        return self._settings.holders()

    def waiters(self) -> List[Holder]:
        """Who is blocked waiting for the lock now."""
        return self._settings.waiters()

    def __repr__(self) -> str:
        return repr(self._settings).replace("<withlock.Lock", "<withlock.AsyncLock", 1)

    # -- internals ---------------------------------------------------------

    def _current(self) -> Optional[Lock]:
        try:
            task = asyncio.current_task()
        except RuntimeError:
            return None
        return self._holds.get(task) if task is not None else None

    def _loss_reaction(self, task: "asyncio.Task[Any]", lock: Lock) -> OnLost:
        """The default reaction to a loss of `lock`, held by `task`: cancel
        the task, from the event loop, if it still holds that lock through
        this object (``async with`` then raises the LockLost)."""
        loop = asyncio.get_running_loop()

        def cancel_holder() -> None:
            if self._holds.get(task) is lock and not task.done():
                task.cancel(f"{lock._lost_error}")

        def on_lost(error: LockLost) -> None:
            try:
                loop.call_soon_threadsafe(cancel_holder)
            except RuntimeError:
                pass  # The loop is closed: no task is left to tell.

        return on_lost

    def _copy(self) -> "AsyncLock":
        return AsyncLock(self._settings._copy())


async def _wait_in_thread(lock: Lock, wait: Optional[float]) -> None:
    """Takes ``lock`` in a helper thread; a cancellation of the awaiting
    task ends that wait and propagates once nothing is queued or held.

    Server waits stop too: the Canceller has the server cancel a PostgreSQL
    lock's statement or revokes an etcd wait's lease. A PostgreSQL
    semaphore's wait (``max=``) does not stop (its helper sessions wait on
    their own), so it is abandoned instead: the cancellation propagates at
    once, and the helper thread lets go of the lock as soon as it is
    granted, or ends with the wait's timeout."""
    loop = asyncio.get_running_loop()
    outcome: "asyncio.Future[None]" = loop.create_future()
    cancellable = _wait_stops_on_cancel(lock)
    cancel = _native.Canceller() if cancellable else None
    # Between the helper thread and an abandoning task: whether the task
    # gave up, and whether the thread handed over a granted lock.
    handover = threading.Lock()
    abandoned = False
    handed_over = False

    def settle(error: Optional[BaseException]) -> None:
        if outcome.done():
            return
        if error is None:
            outcome.set_result(None)
        else:
            outcome.set_exception(error)

    def wait_for_the_lock() -> None:
        nonlocal handed_over
        error: Optional[BaseException] = None
        try:
            lock._acquire(wait, cancel)
            # Held for a task: the helper thread's id, which a later thread
            # may reuse, must not count as a holder of it.
            with lock._mutex:
                lock._thread = None
            with handover:
                if abandoned:
                    lock.release()
                    return
                handed_over = True
        except BaseException as raised:
            error = raised
        try:
            loop.call_soon_threadsafe(settle, error)
        except RuntimeError:
            # The loop is closed: nobody will ever use this lock.
            if lock.locked:
                lock.release()

    thread = threading.Thread(
        target=wait_for_the_lock, name=f"withlock wait for {lock.name}", daemon=True
    )
    thread.start()
    try:
        await asyncio.shield(outcome)
    except asyncio.CancelledError:
        if cancel is None:
            with handover:
                abandoned = True
                granted = handed_over
            if granted:
                lock.release()
            raise
        cancel.cancel()
        await _until_done(outcome)
        if lock.locked:
            # Granted just as the task was cancelled: give it back.
            lock.release()
        raise


def _wait_stops_on_cancel(lock: Lock) -> bool:
    """Whether a Canceller ends ``lock``'s wait: file and socket waits stop
    for a signal, a PostgreSQL lock's on the server's cancel request, an
    etcd lock's once its lease is revoked; a PostgreSQL semaphore's helper
    sessions are reached by neither."""
    if lock.url is None:
        return True
    scheme = lock.url.split(":", 1)[0].lower()
    return scheme in ("etcd", "etcds") or lock.max is None


async def _until_done(outcome: "asyncio.Future[None]") -> None:
    """Waits for the helper thread's outcome, which a cancel brings within
    milliseconds, whatever it is and however often the task is cancelled
    meanwhile (the caller re-raises its own cancellation)."""
    while not outcome.done():
        try:
            await asyncio.shield(outcome)
        except asyncio.CancelledError:
            continue
        except BaseException:
            break
    if not outcome.cancelled():
        outcome.exception()  # retrieved, so asyncio does not log it


def async_lock(
    *names: Names,
    shared: bool = False,
    timeout: Optional[float] = None,
    dir: Optional[StrPath] = None,
    url: Optional[str] = None,
    max: Optional[int] = None,
    supersede: bool = False,
    grace: float = DEFAULT_GRACE,
    on_lost: Optional[OnLost] = None,
) -> AsyncLock:
    """The lock :func:`withlock.lock` takes, for asyncio code::

        async with withlock.async_lock("artifacts", timeout=600):
            await build()

    Same arguments and meaning as :func:`withlock.lock`. Waiting never
    blocks the event loop (each waiting task waits in a helper thread, in
    the kernel), and cancelling the task ends the wait at once, leaving
    nothing held or queued. A server lock lost while a task holds it
    cancels the task, and ``async with`` raises :class:`withlock.LockLost`
    (unless ``on_lost=`` says otherwise).
    """
    return AsyncLock(
        Lock(
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
    )
