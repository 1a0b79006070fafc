"""The Python API on its own: context manager, decorator, acquire/release,
timeouts, shared locks, errors, threads, Ctrl-C and fork."""

from __future__ import annotations

import errno
import os
import signal
import stat
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import pytest

import withlock
from conftest import EVENT_DEADLINE, Background, release_once_waiting, wait_for_waiter


def test_with_block_holds_the_lock_and_names_this_process(tmp_path: Path) -> None:
    lock = withlock.lock("build", dir=tmp_path)
    with lock as held:
        assert held is lock and lock.locked
        (holder,) = lock.holders()
        assert holder.pid == os.getpid()
        assert holder.mode == "exclusive"
        assert isinstance(holder.since, datetime) and holder.since.tzinfo == timezone.utc
        assert holder.since <= datetime.now(timezone.utc)
    assert not lock.locked
    assert lock.holders() == []


def test_the_lock_file_is_named_after_the_lock_and_usable_by_everyone(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        with withlock.lock("deploy", dir=tmp_path) as lock:
            assert lock.path == str(tmp_path / "deploy.lock")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "deploy.lock").st_mode) == 0o666


def test_a_name_with_a_slash_is_a_path(tmp_path: Path) -> None:
    path = tmp_path / "custom.lck"
    with withlock.lock(path) as lock:
        assert lock.path == str(path)
        assert path.exists()


def test_invalid_names_and_timeouts_are_value_errors(tmp_path: Path) -> None:
    for name in [".hidden", "two words", ""]:
        with pytest.raises(ValueError):
            withlock.lock(name, dir=tmp_path)
    with pytest.raises(ValueError):
        withlock.lock("x", dir=tmp_path, timeout=-1)
    with pytest.raises(ValueError):
        withlock.lock("x", dir=tmp_path, timeout=float("nan"))
    with pytest.raises(TypeError):
        withlock.lock("x", dir=tmp_path, timeout="5")  # type: ignore[arg-type]


def test_no_timeout_panics_and_a_huge_one_waits_forever(tmp_path: Path, python_holder) -> None:
    # Too long for the clock: no deadline, as with None (this used to panic).
    for timeout in [1e19, 1.8e19, 1e300, float("inf"), 10**400]:
        withlock.lock("x", dir=tmp_path, timeout=timeout).acquire().release()
        withlock.lock("x", dir=tmp_path).acquire(timeout=timeout).release()
    for timeout in [-1e19, float("-inf"), -(10**400), float("nan")]:
        with pytest.raises(ValueError, match="timeout must be 0 or more seconds"):
            withlock.lock("x", dir=tmp_path, timeout=timeout)
    # And it waits until the holder lets go.
    holder = python_holder("held")
    lock = withlock.lock("held", dir=tmp_path, timeout=1e19)
    releaser = release_once_waiting(lock, os.getpid(), holder)
    with lock:
        assert lock.holders()[0].pid == os.getpid()
    releaser.join()


def test_timeout_zero_raises_busy_naming_the_holder(tmp_path: Path, python_holder) -> None:
    holder = python_holder("deploy")
    with pytest.raises(withlock.Busy) as caught:
        withlock.lock("deploy", dir=tmp_path, timeout=0).acquire()
    err = caught.value
    assert isinstance(err, withlock.LockError)
    assert err.lock == "deploy"
    assert err.holder is not None and err.holder.pid == holder.pid
    assert err.holder.user == "root" and err.holder.uid == os.getuid()
    assert err.holder.running
    assert "python" in err.holder.command and err.holder.argv[1] == "-c"
    assert isinstance(err.holder.since, datetime)
    assert f"pid {holder.pid}" in str(err)
    holder.release()
    withlock.lock("deploy", dir=tmp_path, timeout=0).acquire().release()


def test_a_timed_wait_raises_timeout_naming_the_holder(tmp_path: Path, python_holder) -> None:
    holder = python_holder("deploy")
    with pytest.raises(withlock.Timeout) as caught:
        with withlock.lock("deploy", dir=tmp_path, timeout=0.05):
            pytest.fail("the block must not run")
    err = caught.value
    assert isinstance(err, withlock.LockError) and isinstance(err, TimeoutError)
    assert err.holder.pid == holder.pid
    assert err.waited > 0
    holder.release()


def test_a_blocked_wait_gets_the_lock_when_the_holder_lets_go(tmp_path: Path, python_holder) -> None:
    holder = python_holder("queue")
    lock = withlock.lock("queue", dir=tmp_path)
    releaser = release_once_waiting(lock, os.getpid(), holder)
    with lock:
        assert lock.holders()[0].pid == os.getpid()
    releaser.join()


def test_the_exception_raised_in_the_block_propagates_untouched(tmp_path: Path) -> None:
    # The reference account's bug: an IOError from the locked code must not
    # be mistaken for "another instance is running".
    lock = withlock.lock("build", dir=tmp_path)
    mine = FileNotFoundError(errno.ENOENT, "no such file", "/tmp/this/path/does/not/exist")
    with pytest.raises(FileNotFoundError) as caught:
        with lock:
            raise mine
    assert caught.value is mine
    assert caught.value.__context__ is None and caught.value.__cause__ is None
    assert not lock.locked and lock.holders() == []


def test_the_decorator_holds_the_lock_for_each_call(tmp_path: Path) -> None:
    lock = withlock.lock("artifacts", dir=tmp_path)

    @lock
    def build(x: int) -> int:
        """Builds."""
        assert [h.pid for h in lock.holders()] == [os.getpid()]
        return x * 2

    assert build(21) == 42
    assert build.__name__ == "build" and build.__doc__ == "Builds."
    assert lock.holders() == []

    @lock
    def fail() -> None:
        raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        fail()
    assert lock.holders() == []


def test_decorated_calls_from_threads_take_turns(tmp_path: Path) -> None:
    inside = []
    overlaps = []

    @withlock.lock("counter", dir=tmp_path)
    def locked_step() -> None:
        inside.append(1)
        overlaps.append(len(inside))
        inside.pop()

    threads = [threading.Thread(target=lambda: [locked_step() for _ in range(50)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == [1] * 200


def test_acquire_and_release(tmp_path: Path) -> None:
    lock = withlock.lock("x", dir=tmp_path)
    assert lock.acquire() is lock
    assert lock.locked and lock.held_for is not None
    lock.release()
    assert not lock.locked and lock.held_for is None
    with pytest.raises(RuntimeError, match="not held"):
        lock.release()


def test_one_object_cannot_be_acquired_twice(tmp_path: Path) -> None:
    lock = withlock.lock("x", dir=tmp_path)
    with lock:
        with pytest.raises(RuntimeError, match="already held"):
            lock.acquire()
        assert lock.locked


def test_two_objects_in_one_process_exclude_each_other(tmp_path: Path) -> None:
    with withlock.lock("x", dir=tmp_path):
        with pytest.raises(withlock.Busy) as caught:
            withlock.lock("x", dir=tmp_path).acquire(timeout=0)
        assert caught.value.holder.pid == os.getpid()
        # Waiting forever for a lock this thread holds could never end.
        with pytest.raises(RuntimeError, match="wait for itself"):
            withlock.lock("x", dir=tmp_path).acquire()


def test_shared_locks_coexist_and_exclude_an_exclusive_one(tmp_path: Path, python_holder) -> None:
    holder = python_holder("artifacts", shared=True)
    with withlock.lock("artifacts", dir=tmp_path, shared=True, timeout=0) as lock:
        assert sorted(h.pid for h in lock.holders()) == sorted([holder.pid, os.getpid()])
        assert {h.mode for h in lock.holders()} == {"shared"}
        with pytest.raises(withlock.Busy):
            withlock.lock("artifacts", dir=tmp_path, timeout=0).acquire()
    holder.release()


def test_other_threads_run_while_one_waits(tmp_path: Path, python_holder) -> None:
    # If the wait kept the GIL, this thread could not run Python code to see
    # the waiter and let the holder go.
    holder = python_holder("gil")
    lock = withlock.lock("gil", dir=tmp_path)
    waiter = Background(lambda: lock.acquire() and None)
    try:
        wait_for_waiter(lock, os.getpid())
    finally:
        holder.release()
    waiter.join()
    assert lock.locked
    lock.release()


WAIT_THEN_REPORT = """
import sys, withlock
timeout = None if sys.argv[3] == "forever" else float(sys.argv[3])
try:
    withlock.lock(sys.argv[1], dir=sys.argv[2], timeout=timeout).acquire()
except KeyboardInterrupt:
    print("KeyboardInterrupt", flush=True)
    sys.exit(3)
print("acquired", flush=True)
"""


@pytest.mark.parametrize("timeout", ["forever", "600"])
def test_ctrl_c_ends_the_wait_with_keyboard_interrupt(tmp_path: Path, timeout: str) -> None:
    with withlock.lock("long", dir=tmp_path) as lock:
        waiter = subprocess.Popen(
            [sys.executable, "-c", WAIT_THEN_REPORT, "long", str(tmp_path), timeout],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for_waiter(lock, waiter.pid)
        waiter.send_signal(signal.SIGINT)
        out, err = waiter.communicate(timeout=EVENT_DEADLINE)
        assert (waiter.returncode, out) == (3, "KeyboardInterrupt\n"), err
        # We still hold it: the wait was abandoned, not satisfied.
        assert [h.pid for h in lock.holders()] == [os.getpid()]


INTERRUPT_AT_MANY_MOMENTS = """
import random, signal, sys, threading, time, withlock
lock = withlock.lock(sys.argv[1], dir=sys.argv[2])
main = threading.get_ident()
caught = 0
for _ in range(int(sys.argv[3])):
    delay = random.uniform(0, 0.002)
    def interrupt():
        time.sleep(delay)
        signal.pthread_kill(main, signal.SIGINT)
    sender = threading.Thread(target=interrupt)
    try:
        sender.start()
        lock.acquire()
    except KeyboardInterrupt:
        caught += 1
    sender.join()
print(caught)
"""


def test_ctrl_c_at_any_moment_of_the_wait_ends_it(tmp_path: Path) -> None:
    # Each Ctrl-C lands at another moment: before the wait, while it enters
    # the queue, just before it blocks, or once it sleeps in the kernel. A
    # lost one leaves the child waiting for a lock we never release.
    rounds = 500
    with withlock.lock("busy", dir=tmp_path):
        waiter = subprocess.Popen(
            [sys.executable, "-c", INTERRUPT_AT_MANY_MOMENTS, "busy", str(tmp_path), str(rounds)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            out, err = waiter.communicate(timeout=3 * EVENT_DEADLINE)
        except subprocess.TimeoutExpired:
            waiter.kill()
            waiter.communicate()
            pytest.fail("a Ctrl-C was lost: the waiter never raised KeyboardInterrupt")
        assert (waiter.returncode, out) == (0, f"{rounds}\n"), err


def test_a_signal_whose_handler_returns_does_not_end_the_wait(tmp_path: Path, python_holder) -> None:
    holder = python_holder("usr1")
    lock = withlock.lock("usr1", dir=tmp_path)
    handled = threading.Event()
    main = threading.get_ident()

    def interrupt_then_release() -> None:
        try:
            wait_for_waiter(lock, os.getpid())
            signal.pthread_kill(main, signal.SIGUSR1)
            assert handled.wait(EVENT_DEADLINE)
            # The handler ran after flock() returned EINTR: the main thread
            # is blocked again once it shows up as a waiter again.
            wait_for_waiter(lock, os.getpid())
        finally:
            holder.release()

    previous = signal.signal(signal.SIGUSR1, lambda *_: handled.set())
    try:
        helper = Background(interrupt_then_release)
        with lock:
            assert handled.is_set()
        helper.join()
    finally:
        signal.signal(signal.SIGUSR1, previous)


def _fork(child) -> int:
    """Runs `child()` in a forked child; returns its exit status."""
    pid = os.fork()
    if pid == 0:
        try:
            code = child()
        except BaseException:
            code = 99
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _open_fds_to(path: str) -> int:
    return sum(
        1 for fd in os.listdir("/proc/self/fd") if os.path.realpath(f"/proc/self/fd/{fd}") == path
    )


def test_a_fork_child_does_not_hold_the_lock_nor_release_the_parents(tmp_path: Path) -> None:
    with withlock.lock("forked", dir=tmp_path) as lock:
        assert _open_fds_to(lock.path) == 1

        def child() -> int:
            # The child's copy of the descriptor was closed at the fork.
            if lock.locked or _open_fds_to(lock.path) != 0:
                return 1
            lock.release()  # a no-op in the child
            return 0

        assert _fork(child) == 0
        assert lock.locked
        assert [h.pid for h in lock.holders()] == [os.getpid()]
        with pytest.raises(withlock.Busy):
            withlock.lock("forked", dir=tmp_path, timeout=0).acquire()
    assert lock.holders() == []


def test_leaving_the_with_block_in_a_fork_child_keeps_the_parents_lock(tmp_path: Path) -> None:
    lock = withlock.lock("forked", dir=tmp_path)
    read_end, write_end = os.pipe()
    pid = -1
    try:
        with lock:
            pid = os.fork()
            if pid != 0:
                os.close(write_end)
                # The child writes once it has left the with block.
                assert os.read(read_end, 1) == b"x"
                _, status = os.waitpid(pid, 0)
                assert os.waitstatus_to_exitcode(status) == 0
                assert lock.locked
                assert [h.pid for h in lock.holders()] == [os.getpid()]
        if pid == 0:
            os.write(write_end, b"x")
            os._exit(0)
    except BaseException:
        if pid == 0:
            os._exit(1)  # never run the rest of the test session in the child
        raise
    os.close(read_end)
    assert lock.holders() == []
