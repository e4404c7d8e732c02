"""Reading a .deb back (``debinfo.read_package``, python-debian underneath): packages our writer
built, one dpkg-deb built, and files that are not packages."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from builder.build import build_deb
from builder.debinfo import read_package
from builder.errors import ShipError
from tests.harness.helpers import require_tool


@pytest.mark.parametrize("compression", ["xz", "gzip", "zstd", "none"])
def test_reads_what_build_deb_wrote_as_dpkg_deb_reads_it(project: Path, tmp_path: Path, compression: str):
    if compression == "zstd":
        require_tool("unzstd")
    dpkg_deb = require_tool("dpkg-deb")
    built = build_deb(project, tmp_path / "dist", compression=compression)
    info = read_package(built.path)
    fields = subprocess.run(
        [dpkg_deb, "-f", str(built.path), "Package", "Version", "Architecture"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert fields.splitlines() == [
        f"Package: {info.name}",
        f"Version: {info.version}",
        f"Architecture: {info.architecture}",
    ]
    assert (info.sha256, info.size) == (hashlib.sha256(built.path.read_bytes()).hexdigest(), built.path.stat().st_size)
    assert (info.name, info.version, info.filename) == ("demo-svc", "1.0.0", built.path.name)
    assert [u.name for u in info.manifest.units] == ["demo-svc.service"]
    assert set(info.conffiles) == {"/etc/demo-svc/demo.conf"}
    assert (
        info.conffiles["/etc/demo-svc/demo.conf"]
        == hashlib.md5((project / "configs" / "demo.conf").read_bytes()).hexdigest()
    )


def test_a_package_not_built_by_debship_has_an_empty_manifest(tmp_path: Path):
    dpkg_deb = require_tool("dpkg-deb")
    root = tmp_path / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: plain\nVersion: 2.0-1\nArchitecture: all\nMaintainer: A <a@example.com>\nDescription: plain\n"
    )
    (root / "usr" / "share" / "plain").mkdir(parents=True)
    (root / "usr" / "share" / "plain" / "x").write_text("x\n")
    deb = tmp_path / "plain.deb"
    subprocess.run([dpkg_deb, "--root-owner-group", "-b", str(root), str(deb)], capture_output=True, check=True)
    info = read_package(deb)
    assert (info.name, info.version, info.architecture, info.conffiles) == ("plain", "2.0-1", "all", {})
    assert info.manifest.units == () and info.health is None


def test_files_that_are_not_packages_fail_with_one_line(tmp_path: Path, project: Path):
    with pytest.raises(ShipError, match=r"missing.deb: cannot read the package \(No such file or directory\)"):
        read_package(tmp_path / "missing.deb")
    text = tmp_path / "text.deb"
    text.write_text("hello\n")
    with pytest.raises(ShipError, match=r"text.deb: not a Debian package \(no ar header\)"):
        read_package(text)
    built = build_deb(project, tmp_path / "dist").path
    cut = tmp_path / "cut.deb"
    cut.write_bytes(built.read_bytes()[:-300])  # the data archive ends early
    with pytest.raises(ShipError, match=r"cut.deb: not a readable Debian package .*damaged, rebuild it"):
        read_package(cut)


def test_a_zstd_package_without_unzstd_says_what_to_install(project: Path, tmp_path: Path, monkeypatch):
    """python-debian reads zstd members with the unzstd command: with none on PATH, say so."""
    built = build_deb(project, tmp_path / "dist", compression="zstd").path
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(ShipError, match=r"reading it needs unzstd, which is not installed; install zstd"):
        read_package(built)


def test_a_package_without_its_control_archive_is_named_damaged(tmp_path: Path):
    deb = tmp_path / "half.deb"
    data = b"2.0\n"
    header = f"{'debian-binary':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
    deb.write_bytes(b"!<arch>\n" + header + data)
    with pytest.raises(ShipError, match=r"half.deb: no control.tar.\* member; the package is damaged, rebuild it"):
        read_package(deb)
