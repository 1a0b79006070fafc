"""The same url= code path with an etcd server (etcd://): exclusion both
ways with the command, several locks, the fencing token and lock loss."""

from __future__ import annotations

import os
import subprocess
from typing import List

import pytest

import withlock
from conftest import EVENT_DEADLINE, Holder
from etcd_server import EtcdServer

BUSY = 75
# The etcd lease's detection bound for one member (withlock::etcd::lease):
# 5 s without a keepalive + 1 s between keepalives + 1 s per member.
ETCD_DETECTION_BOUND = 7.0


def test_an_etcd_lock_excludes_the_command_and_the_command_excludes_python(
    etcd_server: EtcdServer, lock_name: str, withlock_command: str
) -> None:
    with withlock.lock(lock_name, f"{lock_name}-b=shared", url=etcd_server.url, timeout=0) as held:
        assert held.url == etcd_server.url
        assert set(held.fences) == {lock_name, f"{lock_name}-b"}
        assert all(isinstance(token, int) for token in held.fences.values())
        run = subprocess.run(
            [withlock_command, "--url", etcd_server.url, "-n", lock_name, "--", "true"],
            capture_output=True, text=True, timeout=EVENT_DEADLINE,
        )
        assert run.returncode == BUSY, run.stderr
        assert f"pid {os.getpid()}" in run.stderr
    holder = Holder(
        [withlock_command, "--url", etcd_server.url, lock_name, "--", "sh", "-c", "echo ready; cat >/dev/null"]
    )
    with pytest.raises(withlock.Busy) as caught:
        withlock.lock(lock_name, url=etcd_server.url, timeout=0).acquire()
    assert caught.value.holder is not None and caught.value.holder.pid == holder.pid
    holder.release()
    with withlock.lock(lock_name, url=etcd_server.url, timeout=EVENT_DEADLINE) as again:
        assert again.fence is not None


def test_a_revoked_etcd_lease_is_a_lost_lock(etcd_server: EtcdServer, lock_name: str) -> None:
    seen: List[withlock.LockLost] = []
    with withlock.lock(lock_name, url=etcd_server.url, on_lost=seen.append) as held:
        leases = etcd_server.leases()
        assert leases, "the held lock has a lease"
        for lease in leases:
            etcd_server.ctl("lease", "revoke", lease)
        assert held.lost.wait(ETCD_DETECTION_BOUND), "the loss was not noticed within the bound"
        with pytest.raises(withlock.LockLost):
            held.check()
        assert seen and lock_name in str(seen[0])
