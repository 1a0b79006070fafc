"""Named locks shared with the ``withlock`` command: kernel-blocking waits,
holders named, safe in shared directories, usable by several users.

::

    import withlock

    with withlock.lock("artifacts"):
        build()

See :func:`lock`, and :func:`async_lock` for asyncio.
"""

from ._async import AsyncLock, async_lock
from ._errors import Busy, Holder, LockError, PermissionDenied, Timeout
from ._lock import Lock, lock

__all__ = ["AsyncLock", "Busy", "Holder", "Lock", "LockError", "PermissionDenied", "Timeout", "async_lock", "lock"]
