"""The README's build/deploy script does what the README says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import EVENT_DEADLINE, command_holder

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_script(tmp_path: Path) -> Path:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    (script,) = [b for b in blocks if b.startswith("#!/usr/bin/env python3")]
    path = tmp_path / "script.py"
    path.write_text(script)
    return path


def run(script: Path, tmp_path: Path, step: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(script), step],
        capture_output=True,
        text=True,
        timeout=EVENT_DEADLINE,
        env={**os.environ, "WITHLOCK_DIR": str(tmp_path)},
    )


def test_the_script_runs_when_the_artifacts_are_free(tmp_path: Path) -> None:
    script = readme_script(tmp_path)
    assert run(script, tmp_path, "build").stdout == "built\n"
    assert run(script, tmp_path, "deploy").stdout == "deployed\n"


def test_the_script_skips_naming_a_python_holder(tmp_path: Path, python_holder) -> None:
    script = readme_script(tmp_path)
    holder = python_holder("artifacts")
    result = run(script, tmp_path, "deploy")
    assert result.returncode == 75
    assert result.stdout == ""
    assert result.stderr.startswith("deploy skipped: artifacts is busy: held exclusive by pid")
    assert f"pid {holder.pid} (root)" in result.stderr
    holder.release()


def test_the_script_skips_naming_the_command_holding_the_lock_in_ci(
    tmp_path: Path, withlock_command: str
) -> None:
    script = readme_script(tmp_path)
    holder = command_holder(withlock_command, tmp_path, "artifacts")
    result = run(script, tmp_path, "deploy")
    assert result.returncode == 75
    assert f"pid {holder.pid} (root)" in result.stderr and "withlock" in result.stderr
    holder.release()


def test_withlock_dir_is_the_default_directory(tmp_path: Path, monkeypatch) -> None:
    import withlock

    monkeypatch.setenv("WITHLOCK_DIR", str(tmp_path))
    assert withlock.lock("x").path == str(tmp_path / "x.lock")
