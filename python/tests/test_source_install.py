"""`pip install ./python` on a machine without Rust: it stops at once, saying
what is missing and how to get it, and downloads no toolchain (maturin's own
backend would fetch one through puccinialin, hundreds of megabytes)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent


def path_without_rust() -> str:
    """PATH less every directory that holds cargo or rustc."""
    kept = [
        d
        for d in os.environ.get("PATH", "").split(os.pathsep)
        if d and not any(os.path.exists(os.path.join(d, tool)) for tool in ("cargo", "rustc"))
    ]
    return os.pathsep.join(kept)


def test_pip_install_from_source_without_rust_says_what_is_missing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, PATH=path_without_rust(), HOME=str(home), PIP_NO_CACHE_DIR="1")
    env.pop("CARGO_HOME", None)
    env.pop("RUSTUP_HOME", None)
    assert shutil.which("cargo", path=env["PATH"]) is None

    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-deps",
         "--target", str(tmp_path / "site"), str(SOURCE)],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=600,
    )

    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "needs Rust 1.85 or later, and there is no cargo on PATH" in output, output
    assert "https://rustup.rs" in output, output
    assert "prebuilt wheel" in output, output
    # Nothing was fetched to build with: no toolchain, no maturin.
    assert "puccinialin" not in output, output
    assert "Rust not found, installing" not in output, output
    assert "maturin" not in output, output
    assert not (home / ".cache" / "puccinialin").exists()
    assert not (tmp_path / "site").exists()
