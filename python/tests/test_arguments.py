"""Bad arguments: a wrong type raises TypeError and an out-of-range or
invalid value ValueError, each naming the argument; never a panic
(pyo3's PanicException) and never a hang. Nothing is opened or taken."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Dict, Type

import pytest

import withlock

URL = "postgres://ci@db.invalid/ci"

BAD: Dict[str, "tuple[tuple[Any, ...], Dict[str, Any], Type[Exception], str]"] = {
    "name int": ((123,), {}, TypeError, "lock name"),
    "name bytes": ((b"x",), {}, TypeError, "lock name"),
    "name None": ((None,), {}, TypeError, "lock name"),
    "no name": ((), {}, TypeError, "lock name"),
    "empty list": (([],), {}, TypeError, "lock name"),
    "name in list int": ((["a", 1],), {}, TypeError, "lock name"),
    "name empty": (("",), {}, ValueError, "name"),
    "name with NUL": (("a\0b",), {}, ValueError, "lock name"),
    "path with NUL": (("./a\0b",), {}, ValueError, "lock name"),
    "name surrogate": (("a\udc80",), {}, ValueError, "lock name"),
    "name too long": (("x" * 129,), {}, ValueError, "128"),
    "unknown mode": (("x=readonly",), {}, ValueError, "shared or exclusive"),
    "socket shared": (("tcp:4711=shared",), {}, ValueError, "exclusive"),
    "socket shared by default": (("abstract:x",), {"shared": True}, ValueError, "exclusive"),
    "socket max": (("tcp:4711",), {"max": 2}, ValueError, "max"),
    "bad port": (("tcp:0",), {}, ValueError, "port"),
    "shared str": (("x",), {"shared": "yes"}, TypeError, "shared"),
    "shared int": (("x",), {"shared": 1}, TypeError, "shared"),
    "supersede str": (("x",), {"supersede": "yes"}, TypeError, "supersede"),
    "timeout str": (("x",), {"timeout": "5"}, TypeError, "timeout"),
    "timeout negative": (("x",), {"timeout": -1}, ValueError, "timeout"),
    "timeout nan": (("x",), {"timeout": math.nan}, ValueError, "timeout"),
    "max zero": (("x",), {"max": 0}, ValueError, "max"),
    "max huge": (("x",), {"max": 2**32}, ValueError, "max"),
    "max float": (("x",), {"max": 1.5}, TypeError, "max"),
    "max with shared": (("x",), {"max": 2, "shared": True}, ValueError, "max"),
    "dir int": (("x",), {"dir": 3}, TypeError, "dir"),
    "dir bytes": (("x",), {"dir": b"/tmp"}, TypeError, "dir"),
    "dir with NUL": (("x",), {"dir": "/tmp/a\0"}, ValueError, "dir"),
    "dir and url": (("x",), {"dir": "/tmp", "url": URL}, ValueError, "dir= is for locks on this machine"),
    "url int": (("x",), {"url": 5}, TypeError, "url"),
    "url empty": (("x",), {"url": ""}, ValueError, "url"),
    "url not a url": (("x",), {"url": "mysql://db/x"}, ValueError, "postgres"),
    "url with NUL": (("x",), {"url": "postgres://db/\0"}, ValueError, "url"),
    "path on a server": (("./x.lock",), {"url": URL}, ValueError, "with --url, locks are names on the server"),
    "socket on a server": (("tcp:4711",), {"url": URL}, ValueError, "names on the server"),
    "supersede on a server": (("x",), {"url": URL, "supersede": True}, ValueError, "supersede"),
    "max too large on a server": (("x",), {"url": URL, "max": 100000}, ValueError, "max"),
    "grace str": (("x",), {"grace": "10"}, TypeError, "grace"),
    "grace bool": (("x",), {"grace": True}, TypeError, "grace"),
    "grace negative": (("x",), {"grace": -1}, ValueError, "grace"),
    "grace too long": (("x",), {"grace": 3601}, ValueError, "grace"),
    "grace nan": (("x",), {"grace": math.nan}, ValueError, "grace"),
    "grace huge int": (("x",), {"grace": 10**400}, ValueError, "grace"),
    "on_lost not callable": (("x",), {"on_lost": 3}, TypeError, "on_lost"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_argument_is_refused_naming_it(case: str, tmp_path: Path) -> None:
    args, kwargs, error, words = BAD[case]
    if "url" not in kwargs and "dir" not in kwargs:
        kwargs = {**kwargs, "dir": tmp_path}
    with pytest.raises(error) as caught:
        withlock.lock(*args, **kwargs)
    assert words in str(caught.value), str(caught.value)
    # Refused before anything was opened.
    assert os.listdir(tmp_path) == []


def test_acquire_checks_its_timeout(tmp_path: Path) -> None:
    lock = withlock.lock("x", dir=tmp_path)
    with pytest.raises(TypeError, match="timeout"):
        lock.acquire(timeout="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        lock.acquire(timeout=-0.5)
    assert not lock.locked


def test_list_locks_checks_its_arguments(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="lock name"):
        withlock.list_locks(3, dir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="drop one"):
        withlock.list_locks(dir=tmp_path, url=URL)
    with pytest.raises(TypeError, match="url"):
        withlock.list_locks(url=7)  # type: ignore[arg-type]


def test_valid_forms_are_accepted(tmp_path: Path) -> None:
    # Every form of a valid argument, so the refusals above are not all.
    for names in [("a",), (["a", "b=shared"],), (("a", Path(tmp_path / "p.lock")),), ("a", "b")]:
        withlock.lock(*names, dir=tmp_path, grace=0, on_lost=print)
    withlock.lock("x", url=URL, grace=3600, max=3)
    withlock.lock("x", url=URL, grace=0.5)
