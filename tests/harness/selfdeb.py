"""python3-debship as a real user's instance gets it: the package ``make deb-self`` builds, and the
Debian packages apt needs to install it on a given root, downloaded from Debian once and cached.

A real instance installs python3-debship from an archive that also has its dependencies (Debian's
python3-click, python3-paramiko, python3-debian …).  A test instance has no archive but the local
repository its user-data names, so the test publishes the dependencies there beside the package:
``deps_for(deb, root)`` asks apt, in a throwaway overlay of that root, which packages installing
``deb`` downloads (after an ``apt-get update`` against Debian: the only download), and keeps the
files in ``~/.cache/debship/debs/<key>``, keyed by the root and the package's Depends."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.harness.helpers import _missing, require_tool
from tests.harness.project import REPO

DEPS_LAYOUT = "1"  # bump when the way the dependency set is made changes


def build_self_deb(out: Path) -> Path:
    """``tools/deb-self.sh out`` (what ``make deb-self`` runs): the path of python3-debship_*.deb."""
    for tool in ("dpkg-buildpackage", "dh_python3", "fakeroot", "help2man"):
        require_tool(tool)
    if subprocess.run(["/usr/bin/python3", "-c", "import stdeb"], capture_output=True).returncode != 0:
        _missing("Debian's python3-stdeb (for /usr/bin/python3)")
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        ["bash", str(REPO / "tools/deb-self.sh"), str(out)], capture_output=True, text=True, stdin=subprocess.DEVNULL
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (deb,) = sorted(out.glob("python3-debship_*_all.deb"))
    return deb


def _field(deb: Path, name: str) -> str:
    return subprocess.run(
        [require_tool("dpkg-deb"), "--field", str(deb), name], check=True, capture_output=True, text=True
    ).stdout.strip()


def deps_for(deb: Path, lower: Path) -> list[Path]:
    """The .debs apt downloads to install ``deb`` on the cached root ``lower`` (cached by root and Depends)."""
    from hostlab.rootfs import Root, cache_dir

    key = hashlib.sha256("\n".join([DEPS_LAYOUT, lower.name, _field(deb, "Depends")]).encode()).hexdigest()[:16]
    final = cache_dir() / "debs" / key
    if not final.is_dir():
        final.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=key + ".", dir=final.parent))
        try:
            with Root(lower, workdir=work) as root:
                shutil.copy(deb, root.path / "var/tmp" / deb.name)
                dl = root.path / "var/tmp/dl"
                (dl / "partial").mkdir(parents=True)
                for argv in (
                    ["apt-get", "update", "-q"],
                    [
                        "apt-get",
                        "install",
                        "-y",
                        "-q",
                        "--download-only",
                        "-o",
                        "Dir::Cache::Archives=/var/tmp/dl",
                        f"/var/tmp/{deb.name}",
                    ],
                ):
                    proc = root.run(argv, check=False, env={"DEBIAN_FRONTEND": "noninteractive"})
                    assert proc.returncode == 0, f"{' '.join(argv)}: {proc.stdout}{proc.stderr}"
                (work / "debs").mkdir()
                for got in dl.glob("*.deb"):
                    shutil.copy(got, work / "debs" / got.name)
            os.replace(work / "debs", final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return sorted(final.glob("*.deb"))
