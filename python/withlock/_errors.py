"""The exceptions of withlock, and the holder they name."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, List, Mapping, Optional, Sequence, Tuple


@dataclass(frozen=True)
class Holder:
    """A process that holds (or waits for) a lock, as far as this user can see.

    Read from ``/proc/locks`` and ``/proc/<pid>``, the same way the
    ``withlock`` command names holders, so a holder may be a Python process,
    the ``withlock`` command, flock(1) or anything else using flock(2).
    """

    #: The process that took the lock (or asked for it).
    pid: int
    #: ``"exclusive"``, ``"shared"``, or ``"max"`` for one of the places of a
    #: ``max=N`` lock (``withlock --max N``), as ``withlock --list`` says it.
    mode: str
    #: The name of its user, or ``"uid N"``; None when it cannot be seen.
    user: Optional[str]
    #: Its real user id; None when it cannot be seen.
    uid: Optional[int]
    #: Its command line, escaped so it is safe to print; None when unreadable.
    command: Optional[str]
    #: Its arguments, unescaped (decoded like ``os.fsdecode``).
    argv: Optional[Tuple[str, ...]]
    #: When it took the lock (a waiter: when it began to wait), in UTC.
    #: withlock and this package record it; flock(1) does not (then None).
    since: Optional[datetime]
    #: When its process started, in UTC.
    started: Optional[datetime]
    #: False when the pid has exited and a process it started (which
    #: inherited the lock's descriptor) holds the lock now.
    running: bool
    #: One line for people, as the ``withlock`` command prints it.
    text: str
    #: For a server lock: the client's host name (its ``pid``, ``user`` and
    #: ``command`` are on that host, as the session declares them); None on
    #: this machine.
    host: Optional[str] = None
    #: True when a server lock's holder declared only the start of its
    #: command (the server keeps 63 bytes): the last argument may be cut.
    command_truncated: bool = False
    #: For a server lock, what the server vouches for: the role the
    #: session logged in as (None if hidden); None on this machine.
    role: Optional[str] = None
    #: For a server lock: the client's IP address, ``"local"`` for a Unix
    #: socket, None when hidden or on this machine.
    client_addr: Optional[str] = None

    def __str__(self) -> str:
        return self.text

    @classmethod
    def _from_native(cls, raw: Mapping[str, Any]) -> "Holder":
        argv = raw["argv"]
        return cls(
            pid=raw["pid"],
            mode=raw["mode"],
            user=raw["user"],
            uid=raw["uid"],
            command=raw["command"],
            argv=None if argv is None else tuple(os.fsdecode(a) for a in argv),
            since=_utc(raw["since"]),
            started=_utc(raw["started"]),
            running=raw["running"],
            text=raw["text"],
            host=raw["host"],
            command_truncated=raw["command_truncated"],
            role=raw["role"],
            client_addr=raw["client_addr"],
        )


def _utc(seconds: Optional[float]) -> Optional[datetime]:
    return None if seconds is None else datetime.fromtimestamp(seconds, tz=timezone.utc)


def _holders(raw: Sequence[Mapping[str, Any]]) -> List[Holder]:
    return [Holder._from_native(h) for h in raw]


class LockError(Exception):
    """A lock could not be taken or released. Nothing ran under it."""

    def __init__(self, message: str, lock: Optional[str] = None) -> None:
        super().__init__(message)
        #: The lock, as a person would name it (its name, or its path).
        self.lock = lock


class _Conflict(LockError):
    """Someone else holds the lock: the holders are named."""

    def __init__(
        self,
        message: str,
        lock: Optional[str],
        holders: List[Holder],
        waiters: List[Holder],
    ) -> None:
        super().__init__(message, lock)
        #: Every process holding the lock when the call gave up.
        self.holders = holders
        #: The processes blocked waiting for it at that moment.
        self.waiters = waiters

    @property
    def holder(self) -> Optional[Holder]:
        """The (first) holder; None when no holder can be seen (another PID
        namespace or machine)."""
        return self.holders[0] if self.holders else None


class Busy(_Conflict):
    """The lock is held and the caller asked not to wait (``timeout=0``)."""


class Timeout(_Conflict, TimeoutError):
    """The lock was still held when the timeout ran out.

    Also a :class:`TimeoutError`, like ``filelock.Timeout``.
    """

    def __init__(
        self,
        message: str,
        lock: Optional[str],
        holders: List[Holder],
        waiters: List[Holder],
        waited: float,
    ) -> None:
        super().__init__(message, lock, holders, waiters)
        #: How long the call waited, in seconds.
        self.waited = waited


class Superseded(LockError):
    """A newer ``supersede=True`` request for the lock came while this one
    was waiting (``supersede=True``), so it gave up; as ``withlock
    --supersede`` exits 79. Nothing was taken."""

    def __init__(self, message: str, lock: Optional[str], by: Optional[Holder]) -> None:
        super().__init__(message, lock)
        #: The newer request's process.
        self.by = by


class Unavailable(LockError, ConnectionError):
    """The lock server (``url=``) could not be reached or failed a query;
    nothing was taken (the command exits 69)."""


class LockLost(LockError):
    """A server lock was lost while held: its session was ended, the server
    restarted or cannot be reached. Raised by :meth:`withlock.Lock.check`,
    and by default in the main thread (see ``on_lost=``); the command exits
    80 for the same loss."""


class PermissionDenied(LockError, PermissionError):
    """This user may not open the lock file or its directory; the message
    says who owns it and what to do."""


def _translate(native: BaseException) -> BaseException:
    """The public exception for a native error."""
    kind, message, lock, holders, waiters, waited = native.args
    if kind == "busy":
        return Busy(message, lock, _holders(holders), _holders(waiters))
    if kind == "timeout":
        return Timeout(message, lock, _holders(holders), _holders(waiters), waited)
    if kind == "usage":
        return ValueError(message)
    if kind == "permission":
        return PermissionDenied(message, lock)
    if kind == "superseded":
        by = _holders(holders)
        return Superseded(message, lock, by[0] if by else None)
    if kind == "unavailable":
        return Unavailable(message, lock)
    return LockError(message, lock)
