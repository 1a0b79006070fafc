"""The ``withlock`` logger: slow waits with the holder (INFO), acquisitions
with their wait and releases with their hold time (DEBUG). No timing is
asserted: a slow-wait line is waited for once the waiter has waited."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable, List

import pytest

import withlock
from withlock import _log
from conftest import Background, Holder, wait_until


def messages(caplog: pytest.LogCaptureFixture, level: int) -> List[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == "withlock" and r.levelno == level
    ]


def test_acquire_and_release_are_logged_with_wait_and_hold_times(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="withlock")
    with withlock.lock("build", dir=tmp_path, shared=True):
        pass
    debug = messages(caplog, logging.DEBUG)
    assert len(debug) == 2, debug
    assert debug[0].startswith("acquired build (shared) after waiting ")
    assert debug[0].endswith("s")
    assert debug[1].startswith("released build after holding it ")


def test_nothing_is_logged_when_the_logger_is_not_enabled(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="withlock")
    with withlock.lock("quiet", dir=tmp_path):
        pass
    assert [r for r in caplog.records if r.name == "withlock"] == []


@pytest.mark.parametrize("kind", ["thread", "task"])
def test_a_long_wait_is_logged_while_it_lasts_naming_the_holder(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    python_holder: Callable[..., Holder],
    kind: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="withlock")
    # Shorter than the default second, so the test does not sit through it.
    monkeypatch.setattr(_log, "SLOW_WAIT", 0.05)
    holder = python_holder("slow")

    def wait() -> None:
        if kind == "thread":
            withlock.lock("slow", dir=tmp_path).acquire().release()
        else:
            import asyncio

            async def take() -> None:
                async with withlock.async_lock("slow", dir=tmp_path):
                    pass

            asyncio.run(take())

    waiter = Background(wait)
    try:
        wait_until("the slow-wait line", lambda: bool(messages(caplog, logging.INFO)))
    finally:
        holder.release()
    waiter.join()
    (line,) = messages(caplog, logging.INFO)
    assert line.startswith("waiting for slow for ")
    assert f"held by pid {holder.pid} " in line
    # The line came while the wait went on: before the acquisition's.
    debug_lines = messages(caplog, logging.DEBUG)
    assert debug_lines[0].startswith("acquired slow (exclusive) after waiting ")
    order = [r.getMessage() for r in caplog.records if r.name == "withlock"]
    assert order.index(line) < order.index(debug_lines[0])
