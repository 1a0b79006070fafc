"""withlock.list_locks(): what ``withlock --list --json`` prints, as typed
objects. The library lists (the same code as the command); this only types
its answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Mapping, Optional, Tuple

from . import _withlock as _native
from ._errors import Holder, _holders
from ._lock import Names, StrPath, _call, _check_names, _place


@dataclass(frozen=True)
class LockInfo:
    """One lock of a listing: one object of ``withlock --list --json``."""

    #: The lock's name (its file name without ``.lock``).
    name: str
    #: The lock file (a socket lock's socket file or spec); None for a
    #: server lock.
    path: Optional[str]
    #: ``"host:port/dbname"`` for a lock on a PostgreSQL server; None on
    #: this machine.
    server: Optional[str]
    #: ``"free"``, ``"held"``, ``"obstructed"`` (free, but a foreign record
    #: lock obstructs its queue) or ``"skipped"`` (not a lock).
    state: str
    #: False when nothing is at its path; None where there is no file to
    #: look for (``tcp:``, ``abstract:``, a server lock).
    exists: Optional[bool]
    #: How it is held: ``"exclusive"``, ``"shared"``, ``"max"``; None when free.
    mode: Optional[str]
    #: Its holders (for a server lock, ``host``, ``role`` and ``client_addr``
    #: are set; ``argv`` is the command as JSON's ``command`` list).
    holders: Tuple[Holder, ...]
    #: Why a held lock's holder cannot be named (a TCP lock); else None.
    unidentified: Optional[str]
    #: Its waiters, in the order they are served.
    waiters: Tuple[Holder, ...]
    #: True when some holder or waiter could not be seen in full.
    hidden: bool
    #: What obstructs its queue and who holds that, if anything.
    obstruction: Optional[str]
    #: For a ``"skipped"`` entry, what it is (a symbolic link, a directory...).
    skipped: Optional[str]

    @classmethod
    def _from_native(cls, raw: Mapping[str, Any]) -> "LockInfo":
        path = raw["path"]
        return cls(
            name=raw["name"],
            path=None if path is None else str(path),
            server=raw["server"],
            state=raw["state"],
            exists=raw["exists"],
            mode=raw["mode"],
            holders=tuple(_holders(raw["holders"])),
            unidentified=raw["unidentified"],
            waiters=tuple(_holders(raw["waiters"])),
            hidden=raw["hidden"],
            obstruction=raw["obstruction"],
            skipped=raw["skipped"],
        )


def list_locks(
    *names: Names, dir: Optional[StrPath] = None, url: Optional[str] = None
) -> List[LockInfo]:
    """The locks and who holds and waits for each, as ``withlock --list
    --json`` prints them: every lock in ``dir`` (default as for
    :func:`withlock.lock`), or with ``url=`` every withlock lock on that
    server, or only the ``names`` given (names, paths or sockets)."""
    specs = _check_names(names) if names else ()
    where_dir, where_url = _place(dir, url)
    return [LockInfo._from_native(raw) for raw in _call(_native.list, list(specs), where_dir, where_url)]
