"""A child forked while a thread waits for a lock never holds nor receives
the parent's lock: with the parent SIGKILLed, the next client gets the lock
while the child still lives, whether the fork came before the grant or the
grant after the fork; and that through os.fork() (multiprocessing's fork
start method) as through a fork() that runs no Python hook."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List

import pytest

import withlock
from conftest import EVENT_DEADLINE, wait_for_waiter

# A process whose thread waits for the lock argv[1] in argv[2], saying
# "acquired" once it has it. Each "fork" line on stdin forks (argv[3]:
# os.fork, or libc's fork(), which runs no Python hook); the child says
# "child PID" and lives on, doing nothing, until killed.
FORKING_WAITER = """
import ctypes, os, signal, sys, threading, withlock
lock = withlock.lock(sys.argv[1], dir=sys.argv[2])
def wait():
    lock.acquire()
    print("acquired", flush=True)
threading.Thread(target=wait, daemon=True).start()
fork = os.fork if sys.argv[3] == "os.fork" else ctypes.CDLL(None).fork
for line in sys.stdin:
    if fork() == 0:
        os.write(1, b"child %d\\n" % os.getpid())
        while True:
            signal.pause()
"""


def _fds_to(pid: int, path: str) -> int:
    """How many of process `pid`'s descriptors are open on `path`."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}") == path
        except FileNotFoundError:
            pass
    return count


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class ForkingWaiter:
    def __init__(self, tmp_path: Path, name: str, fork: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", FORKING_WAITER, name, str(tmp_path), fork],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.children: List[int] = []

    def expect(self, word: str) -> str:
        line = self.proc.stdout.readline()
        assert line.split()[:1] == [word], f"expected {word!r} from the waiter, got {line!r}"
        return line

    def fork(self) -> int:
        self.proc.stdin.write("fork\n")
        self.proc.stdin.flush()
        child = int(self.expect("child").split()[1])
        self.children.append(child)
        return child

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(EVENT_DEADLINE)

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        for child in self.children:
            if _alive(child):
                os.kill(child, signal.SIGKILL)


@pytest.fixture
def forking_waiter(tmp_path: Path) -> Iterator:
    started: List[ForkingWaiter] = []

    def start(name: str, fork: str) -> ForkingWaiter:
        waiter = ForkingWaiter(tmp_path, name, fork)
        started.append(waiter)
        return waiter

    yield start
    for waiter in started:
        waiter.cleanup()


def _next_client_gets_it_while_the_child_lives(tmp_path: Path, name: str, child: int) -> None:
    """The parent is dead and the holder gone: a new client gets the lock at
    once (the bound is for a slow machine), although the child still runs,
    with no descriptor on the lock file."""
    with withlock.lock(name, dir=tmp_path, timeout=EVENT_DEADLINE) as lock:
        assert [h.pid for h in lock.holders()] == [os.getpid()]
    assert _alive(child), "the forked child should still be running"
    assert _fds_to(child, lock.path) == 0, "the child has a descriptor on the lock file"


FORKS = ["os.fork", "libc fork"]


@pytest.mark.parametrize("fork", FORKS)
def test_a_child_forked_during_a_wait_keeps_no_place_in_the_queue(
    tmp_path: Path, python_holder, forking_waiter, fork: str
) -> None:
    holder = python_holder("w")
    lock = withlock.lock("w", dir=tmp_path)
    waiter = forking_waiter("w", fork)
    wait_for_waiter(lock, waiter.proc.pid)
    child = waiter.fork()
    waiter.kill()
    holder.release()
    _next_client_gets_it_while_the_child_lives(tmp_path, "w", child)


@pytest.mark.parametrize("fork", FORKS)
def test_a_lock_granted_after_a_fork_is_never_the_childs(
    tmp_path: Path, python_holder, forking_waiter, fork: str
) -> None:
    holder = python_holder("g")
    lock = withlock.lock("g", dir=tmp_path)
    waiter = forking_waiter("g", fork)
    wait_for_waiter(lock, waiter.proc.pid)
    child = waiter.fork()
    holder.release()
    waiter.expect("acquired")
    assert [h.pid for h in lock.holders()] == [waiter.proc.pid]
    waiter.kill()
    _next_client_gets_it_while_the_child_lives(tmp_path, "g", child)
