"""builder/ has no import cycles (tools/import-cycles.py), and the check finds one when there is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.harness.project import REPO

SCRIPT = REPO / "tools" / "import-cycles.py"


def check(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), str(root)], capture_output=True, text=True)


def test_builder_has_no_import_cycles():
    r = check(REPO / "builder")
    assert (r.returncode, r.stdout) == (0, "")


def test_a_cycle_through_a_lazy_relative_import_in_a_subpackage_is_found(tmp_path: Path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from . import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..top import x\n")
    (pkg / "top.py").write_text("from pkg.sub.a import y\n")
    (pkg / "free.py").write_text("import pkg.top\n")
    r = check(pkg)
    assert r.returncode == 1
    assert r.stdout.splitlines() == [
        "import cycle: pkg.sub.a <-> pkg.sub.b",
        "import cycle: pkg.sub.a <-> pkg.top",
        "import cycle: pkg.sub.b <-> pkg.top",
    ]
