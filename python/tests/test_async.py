"""withlock.async_lock: waiting without blocking the event loop, arrival
order among many tasks of one process, and cancellation that leaves
nothing held or queued. Every step waits for a real event (a waiting stamp
or a blocked request in /proc/locks, a task's record), never for time."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable, List, Optional

import pytest

import withlock
from conftest import EVENT_DEADLINE, command_holder, lock_entries

if TYPE_CHECKING:
    from etcd_server import EtcdServer
    from pg_server import PgServer


def run(main: Callable[[], Awaitable[Any]]) -> Any:
    return asyncio.run(asyncio.wait_for(main(), EVENT_DEADLINE * 3))


# Stamps are POSIX record locks at offset = microseconds since the epoch;
# an exclusive waiter's is a write lock, a holder's a read lock.
EARLIEST_STAMP = 10**15


def waiting_stamps(path: str) -> int:
    """How many exclusive requests of this process wait for `path`, each
    seen by the stamp it sets once it has its place in the queue."""
    pid = str(os.getpid())
    return sum(
        1
        for f in lock_entries(path)
        if f[1] == "POSIX" and f[3] == "WRITE" and f[4] == pid and int(f[6]) >= EARLIEST_STAMP
    )


def queue_entries(path: str) -> List[List[str]]:
    """The queue's entries on `path` (open-file-description record locks:
    tickets and markers) and every blocked request."""
    # Without the line number, which changes as other entries come and go.
    return sorted(f[1:] for f in lock_entries(path) if f[1] in ("OFDLCK", "->"))


async def until(what: str, condition: Callable[[], bool]) -> None:
    """Waits for `condition` without blocking the event loop."""
    deadline = asyncio.get_running_loop().time() + EVENT_DEADLINE
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        await asyncio.sleep(0.002)


def test_async_with_holds_the_lock_and_names_this_process(tmp_path: Path) -> None:
    async def main() -> None:
        lock = withlock.async_lock("build", dir=tmp_path)
        async with lock as held:
            assert held is lock and lock.locked
            assert [h.pid for h in lock.holders()] == [os.getpid()]
            with pytest.raises(withlock.Busy):
                withlock.lock("build", dir=tmp_path, timeout=0).acquire()
        assert not lock.locked and lock.holders() == []

    run(main)


def test_the_event_loop_runs_while_a_task_waits(tmp_path: Path) -> None:
    holder = withlock.lock("busy", dir=tmp_path).acquire()

    async def main() -> None:
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        async def take() -> bool:
            async with withlock.async_lock("busy", dir=tmp_path) as lock:
                return lock.locked

        ticker = asyncio.create_task(tick())
        waiter = asyncio.create_task(take())
        await until("the task to queue", lambda: waiting_stamps(holder.path) == 1)
        seen = ticks
        # The loop goes on while the task waits: the ticker runs again.
        await until("the ticker to run", lambda: ticks > seen + 10)
        assert not waiter.done()
        holder.release()
        assert await waiter
        ticker.cancel()

    try:
        run(main)
    finally:
        if holder.locked:
            holder.release()


def test_a_hundred_waiting_tasks_are_served_in_arrival_order(tmp_path: Path) -> None:
    holder = withlock.lock("queue", dir=tmp_path).acquire()
    served: List[int] = []

    async def main() -> None:
        async def waiter(i: int) -> None:
            async with withlock.async_lock("queue", dir=tmp_path):
                served.append(i)

        tasks = []
        for i in range(100):
            tasks.append(asyncio.create_task(waiter(i)))
            # The next task starts only once this one has its place.
            await until(f"task {i} to queue", lambda: waiting_stamps(holder.path) == i + 1)
        assert served == []
        holder.release()
        await asyncio.gather(*tasks)

    try:
        run(main)
    finally:
        if holder.locked:
            holder.release()
    assert served == list(range(100))


@pytest.mark.parametrize("how", ["cancel", "wait_for"])
def test_cancelling_a_waiting_task_leaves_nothing_held_or_queued(tmp_path: Path, how: str) -> None:
    holder = withlock.lock("c", dir=tmp_path).acquire()
    before = queue_entries(holder.path)
    lock = withlock.async_lock("c", dir=tmp_path)

    async def main() -> None:
        if how == "cancel":
            task = asyncio.create_task(lock.acquire())
            await until("the task to queue", lambda: waiting_stamps(holder.path) == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        else:
            # Held throughout, so it times out whenever it ends.
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(lock.acquire(), 0.05)
        # By the time the cancellation propagated, the wait was over.
        assert queue_entries(holder.path) == before
        assert not lock.locked

    try:
        run(main)
    finally:
        holder.release()
    # Nothing was left in the queue ahead of the next request.
    withlock.lock("c", dir=tmp_path, timeout=0).acquire().release()


def test_a_cancel_racing_the_grant_never_leaves_the_lock_held(tmp_path: Path) -> None:
    async def main() -> None:
        for _ in range(50):
            holder = withlock.lock("race", dir=tmp_path).acquire()
            lock = withlock.async_lock("race", dir=tmp_path)
            task = asyncio.create_task(lock.acquire())
            await until("the task to queue", lambda: waiting_stamps(holder.path) == 1)
            # Released and cancelled at the same moment (the task cannot
            # resume in between): granted or not, it must hold nothing.
            holder.release()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not lock.locked
            withlock.lock("race", dir=tmp_path, timeout=0).acquire().release()

    run(main)


def test_timeouts_raise_busy_and_timeout_naming_the_holder(tmp_path: Path) -> None:
    holder = withlock.lock("t", dir=tmp_path).acquire()

    async def main() -> None:
        with pytest.raises(withlock.Busy) as busy:
            await withlock.async_lock("t", dir=tmp_path, timeout=0).acquire()
        assert busy.value.holder is not None and busy.value.holder.pid == os.getpid()
        with pytest.raises(withlock.Timeout):
            await withlock.async_lock("t", dir=tmp_path).acquire(timeout=0.01)

    try:
        run(main)
    finally:
        holder.release()


def test_tasks_sharing_one_object_take_turns(tmp_path: Path) -> None:
    lock = withlock.async_lock("shared-object", dir=tmp_path)
    order: List[str] = []

    async def main() -> None:
        first_in = asyncio.Event()
        first_may_go = asyncio.Event()

        async def first() -> None:
            async with lock:
                order.append("first in")
                first_in.set()
                await first_may_go.wait()
                order.append("first out")

        async def second() -> None:
            async with lock:
                order.append("second in")

        one = asyncio.create_task(first())
        await first_in.wait()
        two = asyncio.create_task(second())
        await until("the second task to queue", lambda: waiting_stamps(lock.path) == 1)
        first_may_go.set()
        await asyncio.gather(one, two)

    run(main)
    assert order == ["first in", "first out", "second in"]


def test_a_task_cannot_wait_for_itself(tmp_path: Path) -> None:
    async def main() -> None:
        lock = withlock.async_lock("self", dir=tmp_path)
        async with lock:
            with pytest.raises(RuntimeError, match="already held by this task"):
                await lock.acquire()
            with pytest.raises(RuntimeError, match="wait for itself"):
                await withlock.async_lock("self", dir=tmp_path).acquire()
            # A bounded wait is allowed, and says who holds it: this process.
            with pytest.raises(withlock.Busy):
                await withlock.async_lock("self", dir=tmp_path, timeout=0).acquire()
        with pytest.raises(RuntimeError, match="not held by this task"):
            await lock.release()

    run(main)


def test_the_decorator_holds_the_lock_for_each_call_of_a_coroutine(tmp_path: Path) -> None:
    @withlock.async_lock("deco", dir=tmp_path)
    async def work() -> int:
        return withlock.lock("deco", dir=tmp_path).holders()[0].pid

    assert run(work) == os.getpid()
    assert withlock.lock("deco", dir=tmp_path).holders() == []
    with pytest.raises(TypeError, match="coroutine functions"):
        withlock.async_lock("deco", dir=tmp_path)(lambda: None)  # type: ignore[arg-type, return-value]


# -- server locks (url=) ------------------------------------------------------


def test_async_with_over_a_server_lock_and_its_loss_raises_lock_lost_in_the_task(
    pg_server: "PgServer", lock_name: str
) -> None:
    async def main() -> None:
        lock = withlock.async_lock(lock_name, url=pg_server.url)
        with pytest.raises(withlock.LockLost) as caught:
            async with lock:
                assert lock.locked and lock.fence is not None
                assert lock.lost is not None and not lock.lost.is_set()
                with pytest.raises(withlock.Busy):
                    await withlock.async_lock(lock_name, url=pg_server.url, timeout=0).acquire()
                pg_server.terminate(pg_server.backends_of(os.getpid()))
                # The loss cancels the task at this await; nothing else would
                # end it before the test's own deadline.
                await asyncio.sleep(withlock.LOSS_DETECTION_BOUND + EVENT_DEADLINE)
        assert lock_name in str(caught.value)
        assert not lock.locked
        # The task was not left cancelled: it goes on awaiting.
        await asyncio.sleep(0)

    run(main)


@pytest.mark.parametrize("timeout", [None, 600.0], ids=["forever", "bounded"])
def test_a_cancelled_task_ends_its_postgres_wait_leaving_no_waiter_on_the_server(
    pg_server: "PgServer", lock_name: str, timeout: Optional[float]
) -> None:
    async def main() -> None:
        async with withlock.async_lock(lock_name, url=pg_server.url) as holder:
            waiter = withlock.async_lock(lock_name, url=pg_server.url, timeout=timeout)
            task = asyncio.create_task(waiter.acquire())
            await until("the task to wait on the server", lambda: pg_server.waiting() == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The server's cancel request ended the wait before the
            # cancellation came out: no waiter is left, though the holder
            # still holds.
            assert pg_server.waiting() == 0
            assert holder.locked and not waiter.locked
        # Nothing of the cancelled wait was granted or kept.
        withlock.lock(lock_name, url=pg_server.url, timeout=0).acquire().release()

    run(main)


@pytest.mark.parametrize("timeout", [None, 600.0], ids=["forever", "bounded"])
def test_a_cancelled_task_ends_its_etcd_wait_leaving_no_key_in_line(
    etcd_server: "EtcdServer", lock_name: str, timeout: Optional[float]
) -> None:
    def keys_in_line() -> int:
        return len(etcd_server.ctl("get", "--prefix", "--keys-only", f"{lock_name}/").split())

    async def main() -> None:
        async with withlock.async_lock(lock_name, url=etcd_server.url) as holder:
            waiter = withlock.async_lock(lock_name, url=etcd_server.url, timeout=timeout)
            task = asyncio.create_task(waiter.acquire())
            await until("the task to join the line", lambda: keys_in_line() == 2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # Its lease was revoked before the cancellation came out: only
            # the holder's key is left in line.
            assert keys_in_line() == 1
            assert holder.locked and not waiter.locked
        withlock.lock(lock_name, url=etcd_server.url, timeout=0).acquire().release()

    run(main)


def test_a_waiting_task_gets_the_lock_when_the_command_ends(
    tmp_path: Path, withlock_command: str
) -> None:
    holder = command_holder(withlock_command, tmp_path, "ci")
    path = str(tmp_path / "ci.lock")

    async def main() -> int:
        async def take() -> int:
            async with withlock.async_lock("ci", dir=tmp_path) as lock:
                return lock.holders()[0].pid

        task = asyncio.create_task(take())
        await until("the task to queue behind the command", lambda: waiting_stamps(path) == 1)
        assert not task.done()
        await asyncio.get_running_loop().run_in_executor(None, holder.release)
        return await task

    try:
        assert run(main) == os.getpid()
    finally:
        if holder.proc.poll() is None:
            holder.proc.kill()
            holder.proc.wait()


def test_several_locks_are_taken_all_or_none(tmp_path: Path) -> None:
    async def main() -> None:
        with withlock.lock("b", dir=tmp_path):
            with pytest.raises(withlock.Busy):
                await withlock.async_lock("a", "b", dir=tmp_path, timeout=0).acquire()
            # None: "a" was not kept while "b" was busy.
            withlock.lock("a", dir=tmp_path, timeout=0).acquire().release()
        both = withlock.async_lock("a", "b=shared", dir=tmp_path)
        async with both:
            assert both.names == ("a", "b=shared")
            with pytest.raises(withlock.Busy):
                withlock.lock("a", dir=tmp_path, timeout=0).acquire()
            withlock.lock("b", dir=tmp_path, shared=True, timeout=0).acquire().release()

    run(main)
