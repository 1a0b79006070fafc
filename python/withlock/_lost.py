"""What happens when a server lock is lost while its block runs.

The library's heartbeat notices the loss (``withlock::pg::heartbeat``) and
calls :func:`watcher`'s callback from its own thread. That sets the lock's
``lost`` event, then either calls the user's ``on_lost`` hook or, by
default, raises :class:`withlock.LockLost` in the main thread the way
Ctrl-C raises ``KeyboardInterrupt``: a real signal, :data:`LOSS_SIGNAL`,
sent to the main thread, whose Python handler raises the pending loss. A
blocking call there (``time.sleep``, a socket read, another withlock wait)
is interrupted and the exception comes out of it.
"""

from __future__ import annotations

import signal
import threading
import warnings
import weakref
from types import FrameType
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Protocol, Tuple

if TYPE_CHECKING:
    from ._errors import LockLost


class Lock(Protocol):
    """What a loss needs of the lock it happened to: whether the acquisition
    that lost it still holds it, and where to report a loss. Named here, not
    imported, so that this module does not depend on the lock it serves."""

    def _still_holds(self, acquisition: object) -> bool: ...

    def _on_native_loss(self, acquisition: object, message: str) -> None: ...

#: The signal that carries a loss to the main thread. withlock already uses
#: SIGRTMIN+5 to end timed waits; a program that uses this one itself
#: should pass ``on_lost=`` for its server locks.
LOSS_SIGNAL = signal.SIGRTMIN + 6

# Losses on their way to the main thread: the lock (weakly), the
# acquisition it was lost in, and the exception.
_pending: List[Tuple["weakref.ref[Lock]", object, "LockLost"]] = []
_pending_mutex = threading.Lock()


def _raise_pending(signum: int, frame: Optional[FrameType]) -> None:
    """The handler of LOSS_SIGNAL, in the main thread: raises the first loss
    whose lock is still held by the acquisition that lost it. A loss whose
    block has already ended (released meanwhile) is dropped."""
    with _pending_mutex:
        pending = list(_pending)
        _pending.clear()
    for ref, acquisition, error in pending:
        lock = ref()
        if lock is not None and lock._still_holds(acquisition):
            raise error


def _installed() -> bool:
    return signal.getsignal(LOSS_SIGNAL) is _raise_pending


def prepare_main_thread() -> None:
    """Installs the handler that raises a loss in the main thread, if this
    is the main thread and the signal is free (its default disposition)."""
    if _installed() or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(LOSS_SIGNAL) == signal.SIG_DFL:
        signal.signal(LOSS_SIGNAL, _raise_pending)


def watcher(lock: "Lock", acquisition: object) -> Callable[[str], None]:
    """The callback the native heartbeat calls with the loss's message. It
    holds the lock weakly, so a held lock can still be garbage-collected
    (and so released)."""
    ref = weakref.ref(lock)

    def on_lost(message: str) -> None:
        held = ref()
        if held is not None:
            held._on_native_loss(acquisition, message)

    return on_lost


def raise_in_main_thread(lock: "Lock", acquisition: object, error: "LockLost") -> None:
    """The default reaction: LockLost raised in the main thread."""
    if not _installed():
        # Sending the signal without the handler would kill the process.
        warnings.warn(
            f"{error}; withlock could not raise LockLost in the main thread (the lock was created "
            f"outside it, or signal {LOSS_SIGNAL} has another handler): pass on_lost= or watch "
            "lock.lost",
            RuntimeWarning,
            stacklevel=1,
        )
        return
    with _pending_mutex:
        _pending.append((weakref.ref(lock), acquisition, error))
    signal.pthread_kill(_main_thread_id(), LOSS_SIGNAL)


def _main_thread_id() -> Any:
    ident = threading.main_thread().ident
    assert ident is not None
    return ident
