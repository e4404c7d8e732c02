"""Fixtures shared by every tier (the helpers they use are in tests/harness)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.harness.fixtures import make_ssh_hosts, ssh_host, suite_ssh_host  # noqa: F401  (fixtures: loopback SSH test hosts)
from tests.harness.project import MINIMAL, copy_sample, write_project


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A small, valid project (debship.toml, one unit, one script, one config) to break in tests."""
    return write_project(tmp_path / "project", MINIMAL)


@pytest.fixture
def sample_project(tmp_path: Path) -> Path:
    """A copy of this repository's sample bundle, to change in a test."""
    return copy_sample(tmp_path / "sample")


@pytest.fixture(autouse=True)
def _fixed_epoch(monkeypatch):
    """Builds in tests are reproducible without depending on a git commit time."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", os.environ.get("SOURCE_DATE_EPOCH", "1767225600"))
