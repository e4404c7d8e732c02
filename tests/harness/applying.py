"""debship installed inside a loopback host (for ``debship apply`` and the Ansible module), and
the sample's versions those tests install: 1.0.0, 2.0.0 and a 3.0.0 whose startup fails."""

from __future__ import annotations

import shutil
import sysconfig

import pytest

from builder.build import build_deb
from tests.harness.project import REPO, break_startup, copy_sample

LAUNCHER = """#!/usr/bin/python3
import sys
sys.path[:0] = ["/opt/debship/src", "/opt/debship/site"]
from builder.cli import main
sys.exit(main())
"""


@pytest.fixture(scope="module")
def apply_debs(tmp_path_factory):
    base = tmp_path_factory.mktemp("apply-debs")
    project = copy_sample(base / "project")
    out = {v: build_deb(project, base / v, version=v).path for v in ("1.0.0", "2.0.0")}
    break_startup(project)
    out["3.0.0-bad"] = build_deb(project, base / "3.0.0", version="3.0.0").path
    return out


def install_debship(host) -> None:
    """debship in the host as /usr/bin/debship: this checkout's builder/ and the venv's libraries
    (same Debian 12 and Python 3.11 as the host)."""
    opt = host.root.path / "opt/debship"
    shutil.copytree(REPO / "builder", opt / "src/builder", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        sysconfig.get_paths()["purelib"],
        opt / "site",
        ignore=shutil.ignore_patterns(
            "__pycache__", "pip*", "setuptools*", "_pytest", "pytest*", "ansible*", "__editable__*", "*.pth"
        ),
    )
    launcher = host.root.path / "usr/bin/debship"
    launcher.write_text(LAUNCHER)
    launcher.chmod(0o755)
