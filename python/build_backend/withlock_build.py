"""The build backend of `pip install ./python` (and of the sdist): maturin's,
after a check that a Rust toolchain is on PATH.

Without `cargo` on PATH, maturin's own backend silently downloads a whole
Rust toolchain (through puccinialin: hundreds of megabytes, minutes) into a
cache. This one stops at once instead, before anything is downloaded, and
says what to install, or that the prebuilt wheel needs no Rust at all.
maturin is asked for only once cargo is found (as a requirement of the
build, not in pyproject.toml's static `requires`), so a build without Rust
downloads nothing."""

import os
import shutil
import sys

MATURIN = "maturin>=1.9.4,<2"
RUST_VERSION = "1.85"

NO_RUST = (
    "withlock: building the Python package from source needs Rust {version} "
    "or later, and there is no cargo on PATH: install Rust with rustup "
    "(https://rustup.rs) and open a new shell, or install the prebuilt wheel, "
    "which needs no Rust (scripts/dist builds it into target/dist/)\n"
)


def require_cargo():
    """Stops the build, naming the fix, when cargo is not on PATH."""
    if shutil.which("cargo") is None:
        sys.stderr.write(NO_RUST.format(version=RUST_VERSION))
        sys.stderr.flush()
        raise SystemExit(1)


def _requires(config_settings=None):
    require_cargo()
    return [MATURIN]


get_requires_for_build_wheel = _requires
get_requires_for_build_sdist = _requires
get_requires_for_build_editable = _requires


def _maturin():
    require_cargo()
    # Never let maturin fetch a toolchain of its own, whatever PATH its
    # processes see.
    os.environ["MATURIN_NO_INSTALL_RUST"] = "1"
    import maturin

    return maturin


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    return _maturin().prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _maturin().build_wheel(wheel_directory, config_settings, metadata_directory)


def build_sdist(sdist_directory, config_settings=None):
    return _maturin().build_sdist(sdist_directory, config_settings)


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _maturin().build_editable(wheel_directory, config_settings, metadata_directory)
