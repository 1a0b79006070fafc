"""Helpers shared by the tests: processes that hold or wait for a lock, and
waiting for real events (a line on a pipe, a blocked waiter in /proc/locks)."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, List, Optional

import pytest

import withlock

if TYPE_CHECKING:
    from etcd_server import EtcdServer
    from pg_server import PgServer

# How long a test waits for an event before failing. Never a timing claim:
# the event normally comes within milliseconds.
EVENT_DEADLINE = 20.0


def wait_until(what: str, condition: Callable[[], bool]) -> None:
    """Waits for `condition` (a state the kernel reports, such as a blocked
    waiter in /proc/locks), failing the test if it never comes."""
    deadline = time.monotonic() + EVENT_DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.002)


def wait_for_waiter(lock: withlock.Lock, pid: int) -> None:
    """Waits until process `pid` is blocked in the kernel on `lock`."""
    wait_until(
        f"pid {pid} to block on {lock.path}",
        lambda: any(w.pid == pid for w in lock.waiters()),
    )


# The system calls a lock wait sleeps in: fcntl(2) (withlock's arrival
# queue, F_OFD_SETLKW) and flock(2), by machine.
LOCK_CALLS = {"x86_64": {"72", "73"}, "aarch64": {"25", "32"}}


def _sleeps_in_a_lock_call(pid: int) -> bool:
    """True when `pid`'s main thread sleeps in fcntl(2) or flock(2)."""
    calls = LOCK_CALLS.get(platform.machine())
    if calls is None:
        pytest.skip(f"the lock system calls of {platform.machine()} are not known")
    try:
        syscall = Path(f"/proc/{pid}/syscall").read_text().split()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat[stat.rfind(")") + 1 :].split()[:1]
    return syscall[:1] != [] and syscall[0] in calls and state == ["S"]


def lock_entries(path: str) -> List[List[str]]:
    """The /proc/locks lines on the file `path`, split into fields."""
    try:
        inode = f":{os.stat(path).st_ino}"
    except FileNotFoundError:
        return []
    entries = []
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if any(f.endswith(inode) and f.count(":") == 2 for f in fields):
            entries.append(fields)
    return entries


def is_blocked(path: str, pid: int) -> bool:
    """True when process `pid` is blocked in the kernel waiting for the lock
    file `path`: in flock(2), or in withlock's arrival queue, which it
    enters with a ticket and a stamp (a POSIX lock naming it, taken only
    once it has its place in the queue) and waits in fcntl(F_OFD_SETLKW)."""
    entries = lock_entries(path)
    if not _sleeps_in_a_lock_call(pid):
        return False
    pid_field = str(pid)
    if any(f[1] == "->" and f[2] == "FLOCK" and f[5] == pid_field for f in entries):
        return True
    holds_flock = any(f[1] == "FLOCK" and f[4] == pid_field for f in entries)
    stamped = any(f[1] == "POSIX" and f[4] == pid_field for f in entries)
    someone_blocked = any(f[1] == "->" for f in entries)
    return stamped and not holds_flock and someone_blocked


def wait_blocked(path: str, pid: int) -> None:
    """Waits until process `pid` is blocked in the kernel on the lock file
    `path` (its place in the arrival queue taken)."""
    wait_until(f"pid {pid} to block on {path}", lambda: is_blocked(path, pid))


class Background:
    """Runs `task` in a thread; join() re-raises what it raised, so a failed
    helper fails the test instead of leaving the test blocked."""

    def __init__(self, task: Callable[[], None]) -> None:
        self.error: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, args=(task,))
        self.thread.start()

    def _run(self, task: Callable[[], None]) -> None:
        try:
            task()
        except BaseException as error:
            self.error = error

    def join(self) -> None:
        self.thread.join(EVENT_DEADLINE)
        assert not self.thread.is_alive(), "the helper thread is stuck"
        if self.error is not None:
            raise self.error


def release_once_waiting(lock: withlock.Lock, pid: int, holder: "Holder") -> Background:
    """Lets `holder` go once `pid` is blocked on `lock` (and in any case, so
    the waiter never stays blocked)."""

    def task() -> None:
        try:
            wait_for_waiter(lock, pid)
        finally:
            holder.release()

    return Background(task)


# A Python process that takes a lock, prints "ready" and holds the lock until
# its stdin closes.
HOLDER = """
import sys, withlock
with withlock.lock(sys.argv[1], dir=sys.argv[2], shared=sys.argv[3] == "shared"):
    print("ready", flush=True)
    sys.stdin.read()
"""


class Holder:
    """A process holding a lock until `release()` closes its stdin."""

    def __init__(self, argv: List[str]) -> None:
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.kill()
            _, err = self.proc.communicate()
            pytest.fail(f"the holder did not get the lock: {line!r} {err}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    def release(self) -> int:
        _, err = self.proc.communicate(input="", timeout=EVENT_DEADLINE)
        assert self.proc.returncode == 0, err
        return self.proc.returncode


@pytest.fixture
def python_holder(tmp_path: Path) -> Iterator[Callable[..., Holder]]:
    """Starts Python processes that hold a lock in tmp_path."""
    started: List[Holder] = []

    def start(name: str, shared: bool = False) -> Holder:
        mode = "shared" if shared else "exclusive"
        holder = Holder([sys.executable, "-c", HOLDER, name, str(tmp_path), mode])
        started.append(holder)
        return holder

    yield start
    for holder in started:
        if holder.proc.poll() is None:
            holder.proc.kill()
            holder.proc.wait()


def command_holder(withlock_command: str, tmp_path: Path, name: str, *options: str) -> Holder:
    """`withlock NAME -- sh ...` whose command says "ready" once it runs
    (so the lock is held) and holds it until its stdin closes."""
    script = 'echo ready; cat >/dev/null'
    return Holder([withlock_command, "--dir", str(tmp_path), *options, name, "--", "sh", "-c", script])


@pytest.fixture(scope="session")
def withlock_command() -> str:
    """The withlock command: $WITHLOCK_BIN or the one on PATH. Its absence
    fails the interoperability tests rather than skipping them."""
    found = os.environ.get("WITHLOCK_BIN") or shutil.which("withlock")
    if not found:
        pytest.fail("the withlock command is not on PATH: build it with cargo build -p withlock-cli")
    return found


@pytest.fixture(scope="session")
def pg_server() -> Iterator["PgServer"]:
    """One private PostgreSQL server for the session's server-lock tests
    (each test uses lock names of its own)."""
    from etcd_server import EtcdServer
    from pg_server import PgServer

    server = PgServer()
    yield server
    server.stop()


@pytest.fixture
def lock_name(request: pytest.FixtureRequest) -> str:
    """A lock name of this test's own, for locks on the shared server."""
    return "t-" + request.node.name.replace("[", "-").replace("]", "")[-100:]


@pytest.fixture(scope="session")
def etcd_server() -> Iterator["EtcdServer"]:
    """One private etcd member for the session's etcd-lock tests."""
    from etcd_server import EtcdServer

    server = EtcdServer()
    yield server
    server.stop()
