"""The ``withlock`` logger: what a lock did, for the program's own logging.

- INFO, once a wait has lasted :data:`SLOW_WAIT` seconds (1 s), while it
  still goes on: the lock and who holds it, so a stuck job names its cause
  in the log before it is done waiting;
- DEBUG, on each acquisition: how long it waited;
- DEBUG, on each release: how long the lock was held.

Nothing is logged and nothing runs unless the ``withlock`` logger is
enabled for the level (``logging.getLogger("withlock").setLevel(...)`` or
the root logger's level): an uncontended acquisition costs a level check.
The slow-wait reports come from one daemon thread for the process,
started the first time a wait is watched; it sleeps until the earliest
watched wait reaches the threshold (no polling) and reads the holders then.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

logger = logging.getLogger("withlock")

#: How long a wait lasts before it is logged (INFO) with the holder, in
#: seconds.
SLOW_WAIT = 1.0


class _SlowWaits:
    """Waits in progress, each reported once if it reaches the threshold."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        # (deadline, token) by deadline; the report for each live token.
        self._queue: List[Tuple[float, int]] = []
        self._reports: Dict[int, Callable[[float], None]] = {}
        self._tokens = itertools.count()
        self._thread: Optional[threading.Thread] = None

    def watch(self, report: Callable[[float], None], after: float) -> int:
        with self._cond:
            token = next(self._tokens)
            self._reports[token] = report
            entry = (time.monotonic() + after, token)
            heapq.heappush(self._queue, entry)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="withlock slow-wait log", daemon=True
                )
                self._thread.start()
            if self._queue[0] == entry:
                # Earlier than the one the thread sleeps until.
                self._cond.notify()
        return token

    def forget(self, token: int) -> None:
        with self._cond:
            self._reports.pop(token, None)

    def _run(self) -> None:
        while True:
            with self._cond:
                due = self._next_due()
                while due is None:
                    self._cond.wait(self._timeout())
                    due = self._next_due()
            report, started = due
            try:
                report(started)
            except Exception:
                logger.exception("withlock could not report a slow wait")

    def _timeout(self) -> Optional[float]:
        return max(0.0, self._queue[0][0] - time.monotonic()) if self._queue else None

    def _next_due(self) -> Optional[Tuple[Callable[[float], None], float]]:
        """The report of the earliest wait past its deadline, if any; drops
        the entries of waits that ended."""
        while self._queue and self._queue[0][1] not in self._reports:
            heapq.heappop(self._queue)
        if self._queue and self._queue[0][0] <= time.monotonic():
            deadline, token = heapq.heappop(self._queue)
            return self._reports.pop(token), deadline
        return None


_slow_waits = _SlowWaits()


def after_fork_in_child() -> None:
    """The watcher thread does not survive a fork: start afresh."""
    global _slow_waits
    _slow_waits = _SlowWaits()


def wait_started(lock: Any) -> Optional[int]:
    """Watches a wait for ``lock`` that begins now; None when slow waits
    are not logged. Pass the result to :func:`wait_ended`."""
    if not logger.isEnabledFor(logging.INFO):
        return None
    threshold = SLOW_WAIT
    started = time.monotonic()

    def report(_deadline: float) -> None:
        holders = lock.holders()
        held_by = "; ".join(str(h) for h in holders) if holders else "a holder that cannot be seen"
        logger.info(
            "waiting for %s for %.1fs so far: held by %s",
            lock.name,
            time.monotonic() - started,
            held_by,
        )

    return _slow_waits.watch(report, threshold)


def wait_ended(token: Optional[int]) -> None:
    if token is not None:
        _slow_waits.forget(token)


def acquired(lock: Any, waited: float) -> None:
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("acquired %s (%s) after waiting %.3fs", lock.name, _mode(lock), waited)


def released(lock: Any, held_for: Optional[float]) -> None:
    if logger.isEnabledFor(logging.DEBUG) and held_for is not None:
        logger.debug("released %s after holding it %.3fs", lock.name, held_for)


def _mode(lock: Any) -> str:
    if lock.max is not None:
        return f"max {lock.max}"
    return "shared" if lock.shared else "exclusive"
