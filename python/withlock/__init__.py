"""Named locks shared with the ``withlock`` command: kernel-blocking waits,
holders named, safe in shared directories, usable by several users.

::

    import withlock

    with withlock.lock("artifacts"):
        build()

See :func:`lock`, and :func:`async_lock` for asyncio.
"""

from ._async import AsyncLock, async_lock
from ._errors import (
    Busy,
    Holder,
    LockError,
    LockLost,
    PermissionDenied,
    Superseded,
    Timeout,
    Unavailable,
)
from ._listing import LockInfo, list_locks
from ._lock import Lock, lock
from ._withlock import LOSS_DETECTION_BOUND

__all__ = [
    "AsyncLock",
    "Busy",
    "Holder",
    "LOSS_DETECTION_BOUND",
    "Lock",
    "LockError",
    "LockInfo",
    "LockLost",
    "PermissionDenied",
    "Superseded",
    "Timeout",
    "Unavailable",
    "async_lock",
    "list_locks",
    "lock",
]
