"""A throwaway PostgreSQL server for the tests, started the way the Rust
tests start theirs (crates/withlock-pg-testing): initdb into its own
temporary directory as an unprivileged user (the `postgres` system user when
the tests run as root, since the server refuses root), trust
authentication, listening on a free port on 127.0.0.1 only, started with
pg_ctl and stopped in immediate mode. The binaries come from
$WITHLOCK_PG_BIN, else /usr/lib/postgresql/15/bin; missing ones fail the
tests with the command that installs them, never skip them."""

from __future__ import annotations

import os
import pwd
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Optional

import pytest

DEFAULT_BIN = "/usr/lib/postgresql/15/bin"
START_TIMEOUT = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """A running server; stop() ends it."""

    def __init__(self) -> None:
        self.bin = Path(os.environ.get("WITHLOCK_PG_BIN") or DEFAULT_BIN)
        for tool in ["initdb", "pg_ctl", "postgres", "psql"]:
            if not (self.bin / tool).is_file():
                pytest.fail(
                    f"PostgreSQL server binaries not found ({self.bin / tool} is missing): install "
                    "them with `apt-get install -y postgresql-15` (or set WITHLOCK_PG_BIN to their directory)"
                )
        self.uid, self.gid = _server_user()
        self._tmp = tempfile.TemporaryDirectory(prefix="withlock-pg-")
        self.dir = Path(self._tmp.name)
        os.chown(self.dir, self.uid, self.gid)
        self.data = self.dir / "data"
        self._run(["initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "-N"])
        self.port = 0
        # A free port may be taken by someone else before the server binds it.
        for _ in range(5):
            self.port = _free_port()
            if self._start():
                return
        log = (self.dir / "server.log").read_text(errors="replace")
        pytest.fail(f"the test server did not start; log:\n{log}")

    @property
    def url(self) -> str:
        """The URL withlock connects with."""
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def sql(self, query: str) -> List[List[str]]:
        """Runs `query` in a new administrative session: rows of fields."""
        out = subprocess.run(
            [str(self.bin / "psql"), "-X", "-A", "-t", "-F", "\t", "-d", self.url, "-c", query],
            capture_output=True,
            text=True,
            timeout=60,
            env=_without_pg_settings(),
        )
        if out.returncode != 0:
            pytest.fail(f"psql failed: {out.stderr}")
        return [line.split("\t") for line in out.stdout.splitlines() if line]

    def backends_holding(self, key_sql: str = "") -> List[int]:
        """Backend pids of sessions that hold a withlock advisory lock."""
        rows = self.sql(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
            + key_sql
        )
        return [int(r[0]) for r in rows]

    def backends_of(self, client_pid: int) -> List[int]:
        """Backend pids of the withlock sessions declaring client pid `client_pid`."""
        rows = self.sql(
            "SELECT pid FROM pg_stat_activity "
            f"WHERE application_name LIKE 'withlock {client_pid} %'"
        )
        return [int(r[0]) for r in rows]

    def terminate(self, backend_pids: List[int]) -> None:
        for pid in backend_pids:
            self.sql(f"SELECT pg_terminate_backend({pid})")

    def waiting(self) -> int:
        """Sessions waiting for an advisory lock."""
        return int(self.sql("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")[0][0])

    def stop(self) -> None:
        self._pg_ctl(["stop", "-m", "immediate"])
        self._tmp.cleanup()

    def _start(self) -> bool:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c synchronous_commit=off -c max_connections=100 "
            "-c shared_buffers=16MB"
        )
        return self._pg_ctl(["start", "-l", str(self.dir / "server.log"), "-o", options]).returncode == 0

    def _pg_ctl(self, args: List[str]) -> "subprocess.CompletedProcess[str]":
        return self._command(["pg_ctl", *args, "-w", "-t", str(START_TIMEOUT), "-D", str(self.data)])

    def _run(self, argv: List[str]) -> None:
        done = self._command(argv)
        if done.returncode != 0:
            pytest.fail(f"{argv[0]} failed: {done.stdout}{done.stderr}")

    def _command(self, argv: List[str]) -> "subprocess.CompletedProcess[str]":
        user: Optional[Callable[[], None]] = None
        if self.uid != os.getuid():
            uid, gid = self.uid, self.gid

            def user() -> None:
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)

        return subprocess.run(
            [str(self.bin / argv[0]), *argv[1:]],
            cwd=self.dir,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT + 30,
            env=_without_pg_settings(),
            preexec_fn=user,
        )


def _without_pg_settings() -> "dict[str, str]":
    return {k: v for k, v in os.environ.items() if not k.startswith("PG") and k != "WITHLOCK_URL"}


def _server_user() -> "tuple[int, int]":
    """This user, or `postgres` for root (the server refuses root)."""
    if os.getuid() != 0:
        return os.getuid(), os.getgid()
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail(
            "the tests run as root and need the unprivileged `postgres` user to run the server: "
            "install PostgreSQL with `apt-get install -y postgresql-15` (it creates that user)"
        )
    return entry.pw_uid, entry.pw_gid


def wait_until(what: str, condition: Callable[[], bool], deadline: float = 20.0) -> None:
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.01)
