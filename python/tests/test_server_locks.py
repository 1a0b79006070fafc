"""Locks on a real PostgreSQL server (url=): exclusion, several locks, max,
fencing tokens and lock loss, and interoperability with the withlock command
both ways. Each test names its own locks on one server per session."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, List

import pytest

import withlock
from conftest import EVENT_DEADLINE, Background, Holder
from pg_server import PgServer, wait_until

BUSY = 75


def command(withlock_command: str, *args: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [withlock_command, *args], capture_output=True, text=True, timeout=EVENT_DEADLINE
    )


def server_holder(withlock_command: str, url: str, *locks_and_options: str) -> Holder:
    """`withlock --url URL ... -- sh` that says "ready" (and its fencing
    token) once it holds the locks, and holds them until its stdin closes."""
    script = 'echo ready; echo "fence=${WITHLOCK_FENCE-} fences=${WITHLOCK_FENCES-}"; cat >/dev/null'
    return Holder([withlock_command, "--url", url, *locks_and_options, "--", "sh", "-c", script])


def test_a_server_lock_excludes_a_second_holder_and_names_the_first(
    pg_server: PgServer, lock_name: str
) -> None:
    with withlock.lock(lock_name, url=pg_server.url) as held:
        assert held.locked and held.path is None and held.url == pg_server.url
        with pytest.raises(withlock.Busy) as caught:
            withlock.lock(lock_name, url=pg_server.url, timeout=0).acquire()
        holder = caught.value.holder
        assert holder is not None and holder.pid == os.getpid()
        assert holder.host is not None and holder.role == "postgres"
        assert [h.pid for h in held.holders()] == [os.getpid()]
    # Released: free again.
    withlock.lock(lock_name, url=pg_server.url, timeout=0).acquire().release()


def test_a_wait_for_a_server_lock_times_out_naming_the_holder(
    pg_server: PgServer, lock_name: str
) -> None:
    with withlock.lock(lock_name, url=pg_server.url):
        with pytest.raises(withlock.Timeout) as caught:
            withlock.lock(lock_name, url=pg_server.url, timeout=0.2).acquire()
    assert caught.value.holder is not None and caught.value.holder.pid == os.getpid()
    assert caught.value.waited >= 0.2


def test_python_and_the_command_exclude_each_other_on_the_server(
    pg_server: PgServer, lock_name: str, withlock_command: str
) -> None:
    with withlock.lock(lock_name, url=pg_server.url):
        run = command(withlock_command, "--url", pg_server.url, "-n", lock_name, "--", "true")
        assert run.returncode == BUSY, run.stderr
        assert f"pid {os.getpid()}" in run.stderr
    holder = server_holder(withlock_command, pg_server.url, lock_name)
    with pytest.raises(withlock.Busy) as caught:
        withlock.lock(lock_name, url=pg_server.url, timeout=0).acquire()
    named = caught.value.holder
    assert named is not None and named.pid == holder.pid
    # The command announces the command it runs.
    assert named.argv is not None and named.argv[:2] == ("sh", "-c")
    holder.release()
    withlock.lock(lock_name, url=pg_server.url, timeout=0).acquire().release()


def test_withlock_url_from_the_environment_is_used_as_by_the_command(
    pg_server: PgServer, lock_name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WITHLOCK_URL", pg_server.url)
    with withlock.lock(lock_name) as held:
        assert held.url == pg_server.url
        assert held.fence is not None
    # dir= means a lock on this machine, as --dir beats WITHLOCK_URL.
    assert withlock.lock(lock_name, dir=tmp_path).url is None


def test_several_server_locks_are_all_or_none_with_their_own_modes(
    pg_server: PgServer, lock_name: str, withlock_command: str
) -> None:
    a, b = f"{lock_name}-a", f"{lock_name}-b"
    holder = server_holder(withlock_command, pg_server.url, b)
    with pytest.raises(withlock.Busy) as caught:
        withlock.lock(a, f"{b}=shared", url=pg_server.url, timeout=0).acquire()
    assert caught.value.lock is not None and caught.value.lock.startswith(b)
    # None taken: a is free.
    withlock.lock(a, url=pg_server.url, timeout=0).acquire().release()
    holder.release()
    with withlock.lock([a, f"{b}=shared"], url=pg_server.url, timeout=0) as both:
        assert both.names == (a, f"{b}=shared")
        # b is shared: the command shares it; a is exclusive: it may not.
        assert command(withlock_command, "--url", pg_server.url, "-n", "-s", b, "--", "true").returncode == 0
        assert command(withlock_command, "--url", pg_server.url, "-n", a, "--", "true").returncode == BUSY


def test_max_on_the_server_counts_python_and_command_holders(
    pg_server: PgServer, lock_name: str, withlock_command: str
) -> None:
    holder = server_holder(withlock_command, pg_server.url, "--max", "2", lock_name)
    with withlock.lock(lock_name, url=pg_server.url, max=2, timeout=0) as second:
        assert sorted(h.pid for h in second.holders()) == sorted([holder.pid, os.getpid()])
        assert {h.mode for h in second.holders()} == {"max"}
        with pytest.raises(withlock.Busy):
            withlock.lock(lock_name, url=pg_server.url, max=2, timeout=0).acquire()
        run = command(withlock_command, "--url", pg_server.url, "--max", "2", "-n", lock_name, "--", "true")
        assert run.returncode == BUSY, run.stderr
    holder.release()


def test_fencing_tokens_grow_across_python_and_command_grants(
    pg_server: PgServer, lock_name: str, withlock_command: str, tmp_path: Path
) -> None:
    with withlock.lock(lock_name, url=pg_server.url) as held:
        first = held.fence
        assert isinstance(first, int) and held.fences == {lock_name: first}
    assert held.fence is None, "no token once released"
    run = command(withlock_command, "--url", pg_server.url, lock_name, "--", "sh", "-c", 'echo "$WITHLOCK_FENCE"')
    assert run.returncode == 0, run.stderr
    by_command = int(run.stdout)
    assert by_command > first
    with withlock.lock(lock_name, url=pg_server.url) as again:
        assert again.fence is not None and again.fence > by_command
    # Local locks draw no token.
    with withlock.lock("local", dir=tmp_path) as local:
        assert local.fence is None and local.fences == {}


def test_several_server_locks_each_have_a_fence(pg_server: PgServer, lock_name: str) -> None:
    a, b = f"{lock_name}-a", f"{lock_name}-b"
    with withlock.lock(b, a, url=pg_server.url) as both:
        fences = both.fences
        assert sorted(fences) == [a, b] and all(isinstance(t, int) for t in fences.values())
        with pytest.raises(RuntimeError, match="fences"):
            both.fence


def _terminate_my_sessions(pg_server: PgServer) -> List[int]:
    backends = pg_server.backends_of(os.getpid())
    assert backends, "this process holds a server lock, so it has a session"
    pg_server.terminate(backends)
    return backends


def test_a_terminated_session_sets_lost_within_the_bound_and_check_raises(
    pg_server: PgServer, lock_name: str
) -> None:
    seen: List[withlock.LockLost] = []
    with withlock.lock(lock_name, url=pg_server.url, on_lost=seen.append) as held:
        assert not held.lost.is_set()
        held.check()  # not lost: quiet
        _terminate_my_sessions(pg_server)
        assert held.lost.wait(withlock.LOSS_DETECTION_BOUND), "the loss was not noticed within the bound"
        with pytest.raises(withlock.LockLost) as caught:
            held.check()
        assert lock_name in str(caught.value) and "terminated" in str(caught.value)
        assert not held.locked
        # The hook got the same exception, once.
        wait_until("the hook to run", lambda: len(seen) == 1)
        assert seen[0] is caught.value
    # Leaving the block released nothing (there was nothing left), quietly.
    assert not held.locked and held._guard is None


def test_by_default_a_loss_raises_lock_lost_in_the_main_thread(
    pg_server: PgServer, lock_name: str
) -> None:
    assert threading.current_thread() is threading.main_thread()
    started = threading.Event()
    killer = Background(lambda: (started.wait(EVENT_DEADLINE), _terminate_my_sessions(pg_server)) and None)
    try:
        with pytest.raises(withlock.LockLost) as caught:
            with withlock.lock(lock_name, url=pg_server.url) as held:
                started.set()
                # A blocking call is interrupted, as by Ctrl-C.
                time.sleep(withlock.LOSS_DETECTION_BOUND + EVENT_DEADLINE)
        assert held.lost.is_set()
        assert lock_name in str(caught.value)
    finally:
        started.set()
        killer.join()


def test_a_loss_after_the_block_ended_raises_nothing(pg_server: PgServer, lock_name: str) -> None:
    held = withlock.lock(lock_name, url=pg_server.url).acquire()
    held.release()
    # Nothing is held: no session to end, nothing to raise.
    assert pg_server.backends_of(os.getpid()) == []
    held.check()
    assert not held.lost.is_set()


def test_a_second_acquisition_gets_a_fresh_lost_event(pg_server: PgServer, lock_name: str) -> None:
    # grace=0: the next grant pauses least for the session that ended.
    lock = withlock.lock(lock_name, url=pg_server.url, on_lost=lambda lost: None, grace=0)
    with lock:
        _terminate_my_sessions(pg_server)
        assert lock.lost.wait(withlock.LOSS_DETECTION_BOUND)
    with lock:
        assert not lock.lost.is_set()
        lock.check()
        assert lock.locked


def test_a_supersede_request_on_a_server_is_refused(pg_server: PgServer, lock_name: str) -> None:
    with pytest.raises(ValueError, match="supersede works on one machine only"):
        withlock.lock(lock_name, url=pg_server.url, supersede=True)


def test_an_unreachable_server_is_unavailable_not_a_hang(lock_name: str) -> None:
    with socket_bound() as port:
        url = f"postgres://postgres@127.0.0.1:{port}/postgres?connect_timeout=5"
        with pytest.raises(withlock.Unavailable):
            withlock.lock(lock_name, url=url, timeout=0).acquire()


class socket_bound:
    """A port on 127.0.0.1 that nothing listens on, kept bound so that no
    one else takes it meanwhile."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def test_a_fork_child_leaves_the_parents_server_lock_alone(pg_server: PgServer, lock_name: str) -> None:
    with withlock.lock(lock_name, url=pg_server.url) as held:
        pid = os.fork()
        if pid == 0:
            # The child: not its lock; releasing it says nothing to the server.
            code = 0 if not held.locked and held.fence is None else 1
            held.release()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        # The parent still holds it, its session untouched.
        assert held.locked and not held.lost.is_set()
        with pytest.raises(withlock.Busy):
            withlock.lock(lock_name, url=pg_server.url, timeout=0).acquire()
        assert [h.pid for h in held.holders()] == [os.getpid()]
    withlock.lock(lock_name, url=pg_server.url, timeout=0).acquire().release()


def test_a_loss_interrupts_a_wait_for_another_lock_in_the_main_thread(
    pg_server: PgServer, lock_name: str, tmp_path: Path, python_holder: Any
) -> None:
    other = python_holder("local")
    killer_may_go = threading.Event()

    def terminate_once_waiting() -> None:
        killer_may_go.wait(EVENT_DEADLINE)
        local = withlock.lock("local", dir=tmp_path)
        wait_until("the main thread to wait", lambda: any(w.pid == os.getpid() for w in local.waiters()))
        _terminate_my_sessions(pg_server)

    killer = Background(terminate_once_waiting)
    try:
        with pytest.raises(withlock.LockLost):
            with withlock.lock(lock_name, url=pg_server.url):
                killer_may_go.set()
                # Waits for the other process's lock, forever but for the loss.
                withlock.lock("local", dir=tmp_path).acquire()
    finally:
        killer_may_go.set()
        killer.join()
        other.release()


LOST_IN_A_THREAD = """
import sys, threading, warnings, withlock
warnings.simplefilter("always")
def hold():
    with withlock.lock(sys.argv[1], url=sys.argv[2]) as held:
        print("ready", flush=True)
        held.lost.wait(60)
        print("lost" if held.lost.is_set() else "not lost", flush=True)
thread = threading.Thread(target=hold)
thread.start()
thread.join()
"""


def test_a_lock_taken_only_outside_the_main_thread_warns_of_a_loss_it_cannot_raise(
    pg_server: PgServer, lock_name: str
) -> None:
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-c", LOST_IN_A_THREAD, lock_name, pg_server.url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    pg_server.terminate(pg_server.backends_of(proc.pid))
    out, err = proc.communicate(timeout=EVENT_DEADLINE)
    assert out.strip() == "lost", err
    assert "RuntimeWarning" in err and "pass on_lost=" in err, err
