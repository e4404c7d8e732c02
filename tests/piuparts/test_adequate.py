"""Debian's adequate on the corpus (tests/harness/corpus.py): every package installed with apt in a
fresh root of a cached bookworm host, the upgrade that drops a unit and a conffile done on top, and
then adequate run over all of them, which must find nothing (no broken symlink, no obsolete
conffile left by the upgrade, no missing copyright file, no file that is not byte-compiled where
Python wants it).  A package built to be wrong (a symlink to nothing) proves adequate really
looks.  Needs root and mmdebstrap; skipped otherwise unless DEBSHIP_REQUIRE_ALL=1.
"""

from __future__ import annotations

import subprocess

import pytest

from hostlab.rootfs import ROOT_PACKAGES, Root, cached_root
from tests.harness.corpus import UPGRADES, build_all
from tests.harness.helpers import require_root, require_tool

pytestmark = pytest.mark.root

ADEQUATE_PACKAGES = tuple(sorted({*ROOT_PACKAGES, "adequate"}))


def _install(root: Root, debs) -> None:
    names = []
    for deb in debs:
        dest = root.path / "tmp" / deb.name
        dest.write_bytes(deb.read_bytes())
        names.append(f"/tmp/{deb.name}")
    r = root.run(["apt-get", "install", "-y", *names], check=False, offline=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _adequate(root: Root, packages) -> str:
    r = root.run(["adequate", *packages], check=False, offline=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def adequate_root():
    require_root()
    require_tool("mmdebstrap")
    with Root(cached_root(ADEQUATE_PACKAGES)) as root:
        yield root


def test_the_corpus_gives_adequate_nothing_to_report(adequate_root, tmp_path):
    built = build_all(tmp_path / "debs")
    upgraded = {new for _, new in UPGRADES}
    first = [b.deb for bundle, b in built.items() if bundle not in upgraded]
    _install(adequate_root, first)
    # then each upgrade (v1 -> v2), which drops a unit and a conffile
    _install(adequate_root, [built[new].deb for _, new in UPGRADES])

    names = sorted({b.name for b in built.values()})
    status = adequate_root.run(["dpkg-query", "-W", "-f=${Package} ${Version}\n", *names]).stdout
    assert len(status.splitlines()) == len(names), status
    for _, new in UPGRADES:
        assert f"{built[new].name} {built[new].version}" in status
    assert _adequate(adequate_root, names) == ""


def test_adequate_does_report_a_broken_package(adequate_root, tmp_path):
    """The control: a package (made with dpkg-deb by hand; debship writes no symlinks) whose
    program is a symlink to a file no package has."""
    tree = tmp_path / "broken"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(
        "Package: adequate-broken\nVersion: 1.0\nArchitecture: all\n"
        "Maintainer: Test <test@example.com>\nDescription: a package adequate must flag\n"
    )
    (tree / "usr" / "bin").mkdir(parents=True)
    (tree / "usr" / "bin" / "adequate-broken").symlink_to("/usr/lib/no-such-package/tool")
    deb = tmp_path / "adequate-broken_1.0_all.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(deb)], check=True, capture_output=True)
    _install(adequate_root, [deb])
    report = _adequate(adequate_root, ["adequate-broken"])
    assert "adequate-broken: broken-symlink /usr/bin/adequate-broken" in report, report
