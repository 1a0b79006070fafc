"""One protocol: a Python holder and a withlock command holder exclude each
other, in both directions, and each names the other as the holder."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import withlock
from conftest import EVENT_DEADLINE, command_holder, release_once_waiting, wait_for_waiter

BUSY = 75


def test_the_command_is_busy_while_python_holds(tmp_path: Path, withlock_command: str) -> None:
    with withlock.lock("deploy", dir=tmp_path):
        run = subprocess.run(
            [withlock_command, "--dir", str(tmp_path), "-n", "deploy", "--", "true"],
            capture_output=True,
            text=True,
            timeout=EVENT_DEADLINE,
        )
    assert run.returncode == BUSY, run.stderr
    assert f"pid {os.getpid()}" in run.stderr
    assert "python" in run.stderr
    # Free again: the command gets it.
    again = subprocess.run(
        [withlock_command, "--dir", str(tmp_path), "-n", "deploy", "--", "true"],
        capture_output=True,
        text=True,
        timeout=EVENT_DEADLINE,
    )
    assert again.returncode == 0, again.stderr


def test_python_is_busy_while_the_command_holds(tmp_path: Path, withlock_command: str) -> None:
    holder = command_holder(withlock_command, tmp_path, "deploy")
    with pytest.raises(withlock.Busy) as caught:
        withlock.lock("deploy", dir=tmp_path, timeout=0).acquire()
    named = caught.value.holder
    assert named is not None and named.pid == holder.pid
    assert "withlock" in named.command and "deploy" in named.command
    assert named.since is not None, "the command stamps the time it took the lock"
    holder.release()
    withlock.lock("deploy", dir=tmp_path, timeout=0).acquire().release()


def test_a_python_waiter_gets_the_lock_when_the_command_ends(tmp_path: Path, withlock_command: str) -> None:
    holder = command_holder(withlock_command, tmp_path, "queue")
    lock = withlock.lock("queue", dir=tmp_path)
    releaser = release_once_waiting(lock, os.getpid(), holder)
    with lock:
        assert [h.pid for h in lock.holders()] == [os.getpid()]
    releaser.join()


def test_a_waiting_command_runs_when_python_releases(tmp_path: Path, withlock_command: str) -> None:
    lock = withlock.lock("queue", dir=tmp_path)
    with lock:
        waiter = subprocess.Popen(
            [withlock_command, "--dir", str(tmp_path), "queue", "--", "true"],
            stderr=subprocess.PIPE,
            text=True,
        )
        wait_for_waiter(lock, waiter.pid)
        assert waiter.poll() is None
    _, err = waiter.communicate(timeout=EVENT_DEADLINE)
    assert waiter.returncode == 0, err


def test_the_command_times_out_naming_python(tmp_path: Path, withlock_command: str) -> None:
    with withlock.lock("deploy", dir=tmp_path):
        run = subprocess.run(
            [withlock_command, "--dir", str(tmp_path), "-w", "0.05", "deploy", "--", "true"],
            capture_output=True,
            text=True,
            timeout=EVENT_DEADLINE,
        )
    assert run.returncode == BUSY
    assert f"pid {os.getpid()}" in run.stderr


def test_shared_holders_of_both_kinds_coexist(tmp_path: Path, withlock_command: str) -> None:
    holder = command_holder(withlock_command, tmp_path, "artifacts", "-s")
    with withlock.lock("artifacts", dir=tmp_path, shared=True, timeout=0) as lock:
        assert sorted(h.pid for h in lock.holders()) == sorted([holder.pid, os.getpid()])
        run = subprocess.run(
            [withlock_command, "--dir", str(tmp_path), "-n", "artifacts", "--", "true"],
            capture_output=True,
            text=True,
            timeout=EVENT_DEADLINE,
        )
        assert run.returncode == BUSY, "an exclusive command must wait for both"
    holder.release()


def test_a_lock_given_by_path_is_shared_with_the_command(tmp_path: Path, withlock_command: str) -> None:
    path = tmp_path / "by-path.lock"
    with withlock.lock(str(path)):
        run = subprocess.run(
            [withlock_command, "-n", str(path), "--", "true"],
            capture_output=True,
            text=True,
            timeout=EVENT_DEADLINE,
        )
    assert run.returncode == BUSY, run.stderr
