"""Threads of one process: two lock objects on one name exclude each other
in the kernel; one object shared between threads is taken in turns, like a
threading.Lock; a thread never waits for itself. Every step waits for a
real event (a request blocked in /proc/locks, a thread waiting for the
object), never for time."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List

import pytest

import withlock
from conftest import Background, lock_entries, wait_until


def blocked_in_the_kernel(path: str) -> bool:
    return any(f[1] == "->" for f in lock_entries(path))


def waiting_for_the_object(lock: withlock.Lock) -> bool:
    """True when a thread waits for `lock` to be let go of by the thread
    holding it through the same object (it waits on the object's
    condition, not in the kernel)."""
    return len(lock._free._waiters) > 0  # type: ignore[attr-defined]


def test_two_threads_with_their_own_objects_exclude_each_other(tmp_path: Path) -> None:
    order: List[str] = []
    mine = withlock.lock("x", dir=tmp_path).acquire()

    def other() -> None:
        with withlock.lock("x", dir=tmp_path):
            order.append("other in")

    thread = Background(other)
    try:
        wait_until("the other thread to block in the kernel", lambda: blocked_in_the_kernel(mine.path))
        order.append("main out")
    finally:
        mine.release()
    thread.join()
    assert order == ["main out", "other in"]


def test_threads_sharing_one_object_take_turns(tmp_path: Path) -> None:
    lock = withlock.lock("shared-object", dir=tmp_path)
    order: List[str] = []
    seen: List[int] = []

    def other() -> None:
        with lock:
            order.append("other in")
            seen.append(lock.holders()[0].pid)

    lock.acquire()
    thread = Background(other)
    try:
        wait_until("the other thread to wait for the object", lambda: waiting_for_the_object(lock))
        order.append("main out")
    finally:
        lock.release()
    thread.join()
    assert order == ["main out", "other in"]
    assert seen == [os.getpid()]
    assert not lock.locked


def test_a_thread_sharing_a_held_object_gets_busy_or_timeout(tmp_path: Path) -> None:
    lock = withlock.lock("shared-object", dir=tmp_path)
    raised: List[BaseException] = []

    def other() -> None:
        for timeout in (0, 0.01):
            try:
                lock.acquire(timeout=timeout)
            except withlock.LockError as error:
                raised.append(error)

    with lock:
        Background(other).join()
    assert [type(e) for e in raised] == [withlock.Busy, withlock.Timeout]
    for error in raised:
        assert isinstance(error, (withlock.Busy, withlock.Timeout))
        assert error.holder is not None and error.holder.pid == os.getpid()
        assert "another thread of this process" in str(error)


def test_the_thread_holding_an_object_cannot_take_it_again(tmp_path: Path) -> None:
    lock = withlock.lock("again", dir=tmp_path)
    with lock:
        # A clear error rather than a wait for itself (no reentrant count).
        with pytest.raises(RuntimeError, match="already held or being acquired by this thread"):
            lock.acquire(timeout=0)
        with pytest.raises(RuntimeError, match="already held or being acquired by this thread"):
            lock.acquire()
        assert lock.locked
    assert not lock.locked


def test_a_shared_object_is_handed_on_among_many_threads(tmp_path: Path) -> None:
    lock = withlock.lock("many", dir=tmp_path)
    inside: List[int] = []
    overlaps: List[int] = []

    def step() -> None:
        for _ in range(20):
            with lock:
                inside.append(1)
                overlaps.append(len(inside))
                inside.pop()

    threads = [Background(step) for _ in range(4)]
    for thread in threads:
        thread.join()
    assert overlaps == [1] * 80
