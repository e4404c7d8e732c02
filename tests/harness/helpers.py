"""Small helpers shared by the test tiers."""

from __future__ import annotations

import importlib
import os
import shutil
from types import ModuleType

import pytest


def _missing(what: str) -> None:
    """Skip the test, or fail it when DEBSHIP_REQUIRE_ALL=1 (CI that must run everything)."""
    if os.environ.get("DEBSHIP_REQUIRE_ALL") == "1":
        pytest.fail(f"{what} is missing and DEBSHIP_REQUIRE_ALL=1", pytrace=False)
    pytest.skip(f"{what} is missing")


def cli_runner():
    """A click CliRunner keeping stderr apart from stdout (click < 8.2 needs mix_stderr=False)."""
    from click.testing import CliRunner

    try:
        return CliRunner(mix_stderr=False)
    except TypeError:  # click >= 8.2 keeps them apart already
        return CliRunner()


def require_tool(name: str) -> str:
    """The path of the command ``name``; skips (or fails, see above) if it is not installed."""
    path = shutil.which(name)
    if path is None:
        _missing(f"the command {name!r}")
    return path  # type: ignore[return-value]


def require_module(name: str) -> ModuleType:
    """Import the Python module ``name``; skips (or fails, see above) if it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        _missing(f"the Python module {name!r}")
        raise  # not reached: _missing always raises


def require_root() -> None:
    """Skip (or fail, see above) unless running as root: the root tier mounts overlays and chroots."""
    if os.geteuid() != 0:
        _missing("root (the tests mount overlays and chroot)")
