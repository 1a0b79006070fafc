"""Arrival order and semaphores (``max=N``): waiters are served first come,
first served, and a semaphore of N lets N holders in at once, never N+1.
Every step waits for a real event (a process blocked in the kernel, a line
on a pipe, a process exiting), never for time to pass."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

import withlock
from conftest import EVENT_DEADLINE, Background, lock_entries, wait_blocked, wait_until

# A Python process that waits for lock argv[1] in dir argv[2] (a semaphore
# of argv[3] holders, or exclusive for "-") and, holding it, appends argv[4]
# to the file argv[5].
WAITER = """
import sys, withlock
name, dir, max, tag, log = sys.argv[1:]
with withlock.lock(name, dir=dir, max=None if max == "-" else int(max)):
    with open(log, "a") as out:
        out.write(tag + "\\n")
"""


def start_waiter(
    lock: withlock.Lock, tmp_path: Path, max: Optional[int], tag: str, log: Path
) -> subprocess.Popen:
    """Starts a waiter for `lock` and returns once it is blocked in the
    kernel, its place in the queue taken."""
    argv = [sys.executable, "-c", WAITER, lock.name, str(tmp_path), str(max or "-"), tag, str(log)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_blocked(lock.path, proc.pid)
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    return proc


def finish(procs: List[subprocess.Popen]) -> None:
    for proc in procs:
        _, err = proc.communicate(timeout=EVENT_DEADLINE)
        assert proc.returncode == 0, err


def kill_all(procs: List[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("max", [None, 1], ids=["exclusive", "max=1"])
def test_ten_waiters_are_served_in_arrival_order(tmp_path: Path, max: Optional[int]) -> None:
    log = tmp_path / "log"
    holder = withlock.lock("queue", dir=tmp_path, max=max, timeout=0).acquire()
    waiters: List[subprocess.Popen] = []
    try:
        for i in range(10):
            waiters.append(start_waiter(holder, tmp_path, max, str(i), log))
        assert not log.exists(), "nobody ran beside the holder"
        holder.release()
        finish(waiters)
    finally:
        if holder.locked:
            holder.release()
        kill_all(waiters)
    assert log.read_text().split() == [str(i) for i in range(10)]


def test_max_two_lets_two_objects_hold_and_a_third_is_busy(tmp_path: Path) -> None:
    first = withlock.lock("gpu", dir=tmp_path, max=2, timeout=0)
    second = withlock.lock("gpu", dir=tmp_path, max=2, timeout=0)
    third = withlock.lock("gpu", dir=tmp_path, max=2, timeout=0)
    with first, second:
        assert first.locked and second.locked
        assert {h.pid for h in first.holders()} == {os.getpid()}
        with pytest.raises(withlock.Busy) as caught:
            third.acquire()
        assert caught.value.holder is not None and caught.value.holder.pid == os.getpid()
        assert not third.locked
        # An exclusive request waits for the semaphore's holders too.
        with pytest.raises(withlock.Busy):
            withlock.lock("gpu", dir=tmp_path, timeout=0).acquire()
    # Both let go: a slot is free again.
    with third:
        assert third.locked


def test_max_two_across_processes(tmp_path: Path) -> None:
    log = tmp_path / "log"
    oldest = withlock.lock("slots", dir=tmp_path, max=2, timeout=0).acquire()
    newer = withlock.lock("slots", dir=tmp_path, max=2, timeout=0)
    waiter: List[subprocess.Popen] = []
    try:
        # A second process gets the second slot at once, without waiting.
        other = subprocess.run(
            [sys.executable, "-c", WAITER, "slots", str(tmp_path), "2", "other", str(log)],
            capture_output=True,
            text=True,
            timeout=EVENT_DEADLINE,
        )
        assert other.returncode == 0, other.stderr
        assert log.read_text() == "other\n"
        newer.acquire()
        with pytest.raises(withlock.Busy) as caught:
            withlock.lock("slots", dir=tmp_path, max=2, timeout=0).acquire()
        assert caught.value.holder is not None and caught.value.holder.pid == os.getpid()
        # A waiting process gets in beside `newer` once the oldest holder
        # lets go (a place freed by either holder would do).
        waiter.append(start_waiter(oldest, tmp_path, 2, "waiter", log))
        oldest.release()
        finish(waiter)
        assert newer.locked
        assert log.read_text() == "other\nwaiter\n"
    finally:
        kill_all(waiter)
        for held in (oldest, newer):
            if held.locked:
                held.release()


def test_max_one_is_one_holder_at_a_time(tmp_path: Path) -> None:
    with withlock.lock("one", dir=tmp_path, max=1):
        with pytest.raises(withlock.Busy) as caught:
            withlock.lock("one", dir=tmp_path, max=1, timeout=0).acquire()
        # Named as the command names it: a place of max=N, not "shared".
        assert caught.value.holder is not None and caught.value.holder.mode == "max"
        with pytest.raises(withlock.Busy):
            withlock.lock("one", dir=tmp_path, timeout=0).acquire()
    withlock.lock("one", dir=tmp_path, max=1, timeout=0).acquire().release()


def test_a_thread_waiting_for_a_slot_gets_it_when_one_is_freed(tmp_path: Path) -> None:
    first = withlock.lock("pool", dir=tmp_path, max=2).acquire()
    second = withlock.lock("pool", dir=tmp_path, max=2).acquire()
    third = withlock.lock("pool", dir=tmp_path, max=2)
    got: Dict[str, Any] = {}

    def take() -> None:
        third.acquire()
        got["locked"] = third.locked
        third.release()

    waiting = Background(take)
    try:
        # The waiter is a thread of this process: watch /proc/locks for a
        # blocked request on the file instead of its main thread.
        wait_until(
            "the third request to block",
            lambda: any(f[1] == "->" for f in lock_entries(third.path)),
        )
        assert "locked" not in got
    finally:
        first.release()
    waiting.join()
    assert got == {"locked": True}
    second.release()


def test_max_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="shared=True"):
        withlock.lock("x", dir=tmp_path, max=2, shared=True)
    for bad in [0, -1, 2**32]:
        with pytest.raises(ValueError, match="max"):
            withlock.lock("x", dir=tmp_path, max=bad)
    for wrong in [True, 1.5, "2"]:
        with pytest.raises(TypeError, match="max"):
            withlock.lock("x", dir=tmp_path, max=wrong)  # type: ignore[arg-type]
    lock = withlock.lock("x", dir=tmp_path, max=3)
    assert lock.max == 3 and not lock.shared
    assert "max 3" in repr(lock)
    assert withlock.lock("x", dir=tmp_path).max is None


def test_a_decorated_function_keeps_max(tmp_path: Path) -> None:
    seen: List[Optional[int]] = []

    @withlock.lock("deco", dir=tmp_path, max=2)
    def work() -> None:
        seen.append(len(withlock.lock("deco", dir=tmp_path).holders()))
        # One slot is taken by the call: another max=2 object gets the other.
        with withlock.lock("deco", dir=tmp_path, max=2, timeout=0):
            pass

    work()
    assert seen == [1]


def test_waiting_forever_for_a_full_semaphore_held_by_this_thread_is_refused(
    tmp_path: Path,
) -> None:
    with withlock.lock("self", dir=tmp_path, max=2):
        # One slot left: waiting is fine (and immediate).
        with withlock.lock("self", dir=tmp_path, max=2):
            with pytest.raises(RuntimeError, match="wait for itself"):
                withlock.lock("self", dir=tmp_path, max=2).acquire()
            with pytest.raises(RuntimeError, match="wait for itself"):
                withlock.lock("self", dir=tmp_path).acquire()
