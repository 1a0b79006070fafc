"""The command's lock options in Python, on this machine: several locks,
per-lock modes, supersede and listing, each checked against the withlock
command both ways."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any, Dict, List

import pytest

import withlock
from conftest import EVENT_DEADLINE, Background, command_holder, is_blocked, wait_until

BUSY = 75
SUPERSEDED = 79


def run(withlock_command: str, tmp_path: Path, *args: str) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        [withlock_command, "--dir", str(tmp_path), *args],
        capture_output=True,
        text=True,
        timeout=EVENT_DEADLINE,
    )


def test_several_locks_are_all_or_none_against_the_command(tmp_path: Path, withlock_command: str) -> None:
    holder = command_holder(withlock_command, tmp_path, "b")
    with pytest.raises(withlock.Busy) as caught:
        withlock.lock("a", "b", dir=tmp_path, timeout=0).acquire()
    assert caught.value.lock == "b" and caught.value.holder is not None
    assert caught.value.holder.pid == holder.pid
    # None taken: the command gets a at once.
    assert run(withlock_command, tmp_path, "-n", "a", "--", "true").returncode == 0
    holder.release()
    with withlock.lock(["b", "a=shared"], dir=tmp_path, timeout=0) as both:
        assert both.path is None and both.names == ("b", "a=shared")
        assert sorted({h.mode for h in both.holders()}) == ["exclusive", "shared"]
        assert run(withlock_command, tmp_path, "-n", "-s", "a", "--", "true").returncode == 0
        assert run(withlock_command, tmp_path, "-n", "a", "--", "true").returncode == BUSY
        assert run(withlock_command, tmp_path, "-n", "b", "--", "true").returncode == BUSY
    assert run(withlock_command, tmp_path, "-n", "a", "b", "--", "true").returncode == 0


def test_the_command_holding_several_excludes_python(tmp_path: Path, withlock_command: str) -> None:
    holder = command_holder(withlock_command, tmp_path, "a", "b=shared")
    withlock.lock("b", dir=tmp_path, shared=True, timeout=0).acquire().release()
    for name in ["a", "b"]:
        with pytest.raises(withlock.Busy):
            withlock.lock(name, dir=tmp_path, timeout=0).acquire()
    holder.release()


def test_names_in_any_order_take_the_same_order(tmp_path: Path) -> None:
    one = withlock.lock("b", "a", dir=tmp_path)
    other = withlock.lock("a", "b", dir=tmp_path)
    assert [lock[0] for lock in one._locks] == [lock[0] for lock in other._locks] == ["a", "b"]


def test_socket_locks_are_taken_like_the_command_takes_them(tmp_path: Path, withlock_command: str) -> None:
    spec = f"abstract:withlock-py-{os.getpid()}-{tmp_path.name}"
    with withlock.lock(spec, timeout=0) as held:
        assert held.path is None
        assert run(withlock_command, tmp_path, "-n", spec, "--", "true").returncode == BUSY
    assert run(withlock_command, tmp_path, "-n", spec, "--", "true").returncode == 0


def _waiting_in_thread(lock: withlock.Lock) -> "tuple[Background, Dict[str, BaseException]]":
    caught: Dict[str, BaseException] = {}

    def wait() -> None:
        try:
            lock.acquire()
            lock.release()
        except withlock.Superseded as superseded:
            caught["error"] = superseded

    return Background(wait), caught


def test_a_newer_supersede_command_makes_a_waiting_python_request_give_up(
    tmp_path: Path, withlock_command: str
) -> None:
    holder = command_holder(withlock_command, tmp_path, "deploy")
    older = withlock.lock("deploy", dir=tmp_path, supersede=True)
    waiting, caught = _waiting_in_thread(older)
    wait_until("python to wait", lambda: len(older.waiters()) == 1)
    newer = subprocess.Popen(
        [withlock_command, "--dir", str(tmp_path), "--supersede", "deploy", "--", "true"],
        stderr=subprocess.PIPE,
        text=True,
    )
    waiting.join()
    superseded = caught["error"]
    assert isinstance(superseded, withlock.Superseded) and superseded.by is not None
    assert superseded.by.pid == newer.pid
    assert "superseded" in str(superseded)
    assert not older.locked
    holder.release()
    _, err = newer.communicate(timeout=EVENT_DEADLINE)
    assert newer.returncode == 0, err


def test_a_newer_supersede_python_request_makes_the_waiting_command_give_up(
    tmp_path: Path, withlock_command: str
) -> None:
    holder = command_holder(withlock_command, tmp_path, "deploy")
    older = subprocess.Popen(
        [withlock_command, "--dir", str(tmp_path), "--supersede", "deploy", "--", "true"],
        stderr=subprocess.PIPE,
        text=True,
    )
    path = str(tmp_path / "deploy.lock")
    wait_until("the command to wait", lambda: is_blocked(path, older.pid))
    newer = withlock.lock("deploy", dir=tmp_path, supersede=True)
    releaser = Background(lambda: (older.wait(EVENT_DEADLINE), holder.release()) and None)
    with newer:
        assert newer.locked
    releaser.join()
    _, err = older.communicate(timeout=EVENT_DEADLINE)
    assert older.returncode == SUPERSEDED, err
    assert f"pid {os.getpid()}" in err


def test_a_request_that_does_not_wait_is_never_superseded(tmp_path: Path) -> None:
    with withlock.lock("deploy", dir=tmp_path, supersede=True) as held:
        with pytest.raises(withlock.Busy):
            withlock.lock("deploy", dir=tmp_path, supersede=True, timeout=0).acquire()
        assert held.locked


def _json_listing(withlock_command: str, *args: str) -> List[Dict[str, Any]]:
    out = subprocess.run(
        [withlock_command, "--list", "--json", *args], capture_output=True, text=True, timeout=EVENT_DEADLINE
    )
    assert out.returncode == 0, out.stderr
    listing: List[Dict[str, Any]] = json.loads(out.stdout)
    return listing


def _same_as_json(info: withlock.LockInfo, doc: Dict[str, Any]) -> None:
    for field in ["name", "path", "server", "state", "exists", "mode", "unidentified", "hidden", "obstruction"]:
        assert getattr(info, field) == doc[field], field
    assert info.skipped == doc.get("skipped")
    for ours, theirs in [(info.holders, doc["holders"]), (info.waiters, doc["waiters"])]:
        assert [(h.pid, h.mode, h.user, h.host, h.role, h.client_addr) for h in ours] == [
            (p["pid"], p["mode"], p["user"], p["host"], p["role"], p["client_addr"]) for p in theirs
        ]
        assert [list(h.argv or []) for h in ours] == [p["command"] or [] for p in theirs]


def test_list_locks_returns_what_the_command_lists_as_json(tmp_path: Path, withlock_command: str) -> None:
    holder = command_holder(withlock_command, tmp_path, "build", "-s")
    with withlock.lock("deploy", "build=shared", dir=tmp_path):
        ours = withlock.list_locks(dir=tmp_path)
        theirs = _json_listing(withlock_command, "--dir", str(tmp_path))
        assert [i.name for i in ours] == [d["name"] for d in theirs] == ["build", "deploy"]
        for info, doc in zip(ours, theirs):
            _same_as_json(info, doc)
        (build,) = withlock.list_locks("build", dir=tmp_path)
        assert build.state == "held" and build.mode == "shared"
        assert sorted(h.pid for h in build.holders) == sorted([holder.pid, os.getpid()])
        (never,) = withlock.list_locks("never-used", dir=tmp_path)
        assert never.state == "free" and never.exists is False
    holder.release()


def test_list_locks_on_a_server_matches_the_command(pg_server: Any, lock_name: str, withlock_command: str) -> None:
    with withlock.lock(lock_name, url=pg_server.url):
        ours = [i for i in withlock.list_locks(url=pg_server.url) if i.name == lock_name]
        theirs = [d for d in _json_listing(withlock_command, "--url", pg_server.url) if d["name"] == lock_name]
        assert len(ours) == len(theirs) == 1
        _same_as_json(ours[0], theirs[0])
        assert ours[0].server is not None and ours[0].path is None
        assert ours[0].holders[0].pid == os.getpid() and ours[0].holders[0].role == "postgres"
        (named,) = withlock.list_locks(lock_name, url=pg_server.url)
        assert named.state == "held"


def test_each_max_holder_has_its_own_place_as_the_command_does(tmp_path: Path, withlock_command: str) -> None:
    holder = subprocess.Popen(
        [withlock_command, "--dir", str(tmp_path), "--max", "3", "gpu", "--", "sh", "-c",
         'echo "$WITHLOCK_SLOT_INDEX"; cat >/dev/null'],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout is not None and holder.stdin is not None
    theirs = int(holder.stdout.readline())
    try:
        with withlock.lock("gpu", dir=tmp_path, max=3, timeout=0) as first:
            with withlock.lock("gpu", dir=tmp_path, max=3, timeout=0) as second:
                places = {theirs, first.slot, second.slot}
                assert places == {0, 1, 2}, places
                assert second.slots == {"gpu": second.slot}
        with withlock.lock("plain", dir=tmp_path) as plain:
            assert plain.slot is None and plain.slots == {}
        with withlock.lock("a", "b", dir=tmp_path, max=2) as both:
            assert sorted(both.slots) == ["a", "b"]
            with pytest.raises(RuntimeError, match="slots"):
                both.slot
    finally:
        holder.stdin.close()
        holder.wait(timeout=EVENT_DEADLINE)
