"""withlock.AsyncLock: the same named lock for asyncio code.

flock(2) has no way to tell an event loop that a lock was granted, so each
waiting task waits in a thread of its own, blocked in the kernel like a
synchronous waiter (no polling), and the event loop only hears the outcome.
Cancelling the task stops that wait through a native ``Canceller``: the
thread is signalled, leaves the arrival queue and ends, and the cancellation
propagates only once nothing is queued or held.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import weakref
from types import TracebackType
from typing import Any, Awaitable, Callable, Dict, List, Optional, Type, TypeVar

from . import _withlock as _native
from ._errors import Holder
from ._lock import _UNSET, Lock, StrPath, _check_timeout

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
        # Checks the arguments and keeps the settings; each acquisition
        # takes the lock through a fresh copy.
        self._settings = Lock(name, shared=shared, timeout=timeout, dir=dir, max=max)
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
        if exc is None:
            await self.release()
            return
        try:
            await self.release()
        except Exception as release_error:
            if hasattr(exc, "add_note"):
                exc.add_note(f"withlock: releasing {self.name!r} failed as well: {release_error}")

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

    def _copy(self) -> "AsyncLock":
        copy = AsyncLock.__new__(AsyncLock)
        copy._settings = self._settings._copy()
        copy._holds = {}
        return copy


async def _wait_in_thread(lock: Lock, wait: Optional[float]) -> None:
    """Takes ``lock`` in a helper thread; a cancellation of the awaiting
    task ends that wait and propagates once nothing is queued or held."""
    loop = asyncio.get_running_loop()
    outcome: "asyncio.Future[None]" = loop.create_future()
    cancel = _native.Canceller()

    def settle(error: Optional[BaseException]) -> None:
        if outcome.done():
            return
        if error is None:
            outcome.set_result(None)
        else:
            outcome.set_exception(error)

    def wait_for_the_lock() -> None:
        error: Optional[BaseException] = None
        try:
            lock._acquire(wait, cancel)
            # Held for a task: the helper thread's id, which a later thread
            # may reuse, must not count as a holder of it.
            with lock._mutex:
                lock._thread = None
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
        cancel.cancel()
        await _until_done(outcome)
        if lock.locked:
            # Granted just as the task was cancelled: give it back.
            lock.release()
        raise


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
    name: StrPath,
    *,
    shared: bool = False,
    timeout: Optional[float] = None,
    dir: Optional[StrPath] = None,
    max: Optional[int] = None,
) -> AsyncLock:
    """The lock :func:`withlock.lock` takes, for asyncio code::

        async with withlock.async_lock("artifacts", timeout=600):
            await build()

    Same arguments and meaning as :func:`withlock.lock`. Waiting never
    blocks the event loop (each waiting task waits in a helper thread, in
    the kernel), and cancelling the task ends the wait at once, leaving
    nothing held or queued.
    """
    return AsyncLock(name, shared=shared, timeout=timeout, dir=dir, max=max)
