"""What a package owns on the host: never a folder every Debian host has (/opt, /srv, /usr/local/*),
so that dpkg cannot remove one on purge; the one lintian override, for files under /opt."""

from __future__ import annotations

import subprocess

from builder.build import build_deb
from builder.layout import HOST_DIRS
from tests.harness.helpers import require_tool
from tests.harness.project import REPO


def _names(deb) -> list[str]:
    out = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
    return subprocess.run(["tar", "-t"], input=out, capture_output=True, check=True).stdout.decode().split()


def test_opt_is_used_but_not_owned_and_the_override_says_why(tmp_path):
    require_tool("dpkg-deb")
    deb = build_deb(REPO / "tests/fixtures/nightly-backup", tmp_path).path
    names = _names(deb)
    assert "./opt/" not in names  # dpkg would remove /opt on purge once empty
    assert "./opt/nightly-backup/" in names and "./opt/nightly-backup/bin/" in names
    assert "./usr/" in names and "./usr/lib/" in names  # base-files lists those: sharing them is safe
    override = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], capture_output=True, check=True).stdout
    text = subprocess.run(
        ["tar", "-xO", "./usr/share/lintian/overrides/nightly-backup"], input=override, capture_output=True, check=True
    ).stdout.decode()
    assert "nightly-backup: dir-or-file-in-opt [opt/*]" in text.splitlines()
    assert "nightly-backup: missing-intermediate-directory [opt/]" in text.splitlines()
    assert text.startswith("# A local package")


def test_no_override_without_opt(project, tmp_path):
    require_tool("dpkg-deb")
    names = _names(build_deb(project, tmp_path).path)
    assert not any("lintian" in n for n in names)
    assert not {n.strip("./").rstrip("/") for n in names} & HOST_DIRS


def test_units_go_to_usr_lib_systemd_system(project, tmp_path):
    require_tool("dpkg-deb")
    names = _names(build_deb(project, tmp_path).path)
    assert "./usr/lib/systemd/system/demo-svc.service" in names
    assert not any(n.startswith("./lib/") for n in names)
