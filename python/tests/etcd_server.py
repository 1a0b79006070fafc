"""A throwaway one-member etcd for the tests, started the way the Rust tests
start theirs (crates/withlock-etcd-testing): its own temporary data
directory, free ports on 127.0.0.1, no ETCD* settings inherited, killed at
the end. /usr/bin/etcd and /usr/bin/etcdctl must be installed; missing ones
fail the tests with the command that installs them, never skip them."""

from __future__ import annotations

import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import pytest

ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"
START_DEADLINE = 60.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD") and k != "WITHLOCK_URL"}
    env["ETCDCTL_API"] = "3"
    return env


class EtcdServer:
    """A running member; stop() ends it."""

    def __init__(self) -> None:
        for tool in [ETCD, ETCDCTL]:
            if not Path(tool).is_file():
                pytest.fail(f"etcd not found ({tool} is missing): install it with `apt-get install -y etcd-server etcd-client`")
        self._tmp = tempfile.TemporaryDirectory(prefix="withlock-etcd-")
        self.dir = Path(self._tmp.name)
        self.port, peer = _free_port(), _free_port()
        client_url, peer_url = f"http://127.0.0.1:{self.port}", f"http://127.0.0.1:{peer}"
        self._log = open(self.dir / "etcd.log", "wb")
        self.proc = subprocess.Popen(
            [
                ETCD, "--name", "m1", "--data-dir", str(self.dir / "data"),
                "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
                "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                "--initial-cluster", f"m1={peer_url}", "--initial-cluster-token", self.dir.name,
                "--initial-cluster-state", "new",
            ],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, env=_env(), cwd=self.dir,
        )
        end = time.monotonic() + START_DEADLINE
        while not self._healthy():
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                pytest.fail(f"etcd did not start; log:\n{(self.dir / 'etcd.log').read_text(errors='replace')}")
            time.sleep(0.05)

    @property
    def url(self) -> str:
        """The URL withlock connects with."""
        return f"etcd://127.0.0.1:{self.port}"

    def ctl(self, *args: str) -> str:
        out = subprocess.run(
            [ETCDCTL, f"--endpoints=127.0.0.1:{self.port}", *args],
            capture_output=True, text=True, timeout=30, env=_env(),
        )
        if out.returncode != 0:
            pytest.fail(f"etcdctl {' '.join(args)} failed: {out.stderr}")
        return out.stdout

    def leases(self) -> List[str]:
        """The ids of the leases granted now (hex, as etcdctl takes them)."""
        return [line.split()[0] for line in self.ctl("lease", "list").splitlines()[1:] if line.strip()]

    def _healthy(self) -> bool:
        out = subprocess.run(
            [ETCDCTL, f"--endpoints=127.0.0.1:{self.port}", "endpoint", "health", "--command-timeout=2s"],
            capture_output=True, text=True, timeout=30, env=_env(),
        )
        return out.returncode == 0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
        self._tmp.cleanup()
