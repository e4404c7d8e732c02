"""The sample bundle and a second bundle, built by our writer and read back by
other people's readers: dpkg-deb, python-debian and lintian."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from builder.build import build_deb
from tests.harness.helpers import require_module, require_tool
from tests.harness.project import REPO

SAMPLE_FILES = {
    "./usr/lib/systemd/system/fleet-agent.service": 0o644,
    "./usr/lib/systemd/system/fleet-agent-startup.service": 0o644,
    "./usr/lib/fleet-agent/agent.py": 0o755,
    "./usr/lib/fleet-agent/startup.py": 0o755,
    "./usr/lib/fleet-agent/healthcheck.py": 0o755,
    "./etc/fleet-agent/agent.conf": 0o644,
    "./etc/fleet-agent/startup.conf": 0o644,
    "./usr/share/doc/fleet-agent/copyright": 0o644,
    "./usr/share/doc/fleet-agent/changelog.gz": 0o644,
    "./usr/share/debship/fleet-agent.json": 0o644,
}


@pytest.fixture(scope="module")
def sample_deb(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    os.environ.setdefault("SOURCE_DATE_EPOCH", "1767225600")
    return build_deb(REPO, out).path


def dpkg_deb(*args) -> str:
    require_tool("dpkg-deb")
    return subprocess.run(["dpkg-deb", *map(str, args)], check=True, capture_output=True, text=True).stdout


def test_dpkg_deb_reads_the_control_fields(sample_deb):
    assert sample_deb.name == "fleet-agent_1.0.0_all.deb"
    fields = {
        f: dpkg_deb("--field", sample_deb, f).strip()
        for f in ("Package", "Version", "Architecture", "Maintainer", "Depends", "Installed-Size")
    }
    assert fields["Package"] == "fleet-agent"
    assert fields["Version"] == "1.0.0"
    assert fields["Architecture"] == "all"
    assert fields["Maintainer"] == "Fleet Ops <ops@example.com>"
    assert "python3" in fields["Depends"]
    assert int(fields["Installed-Size"]) > 0
    info = dpkg_deb("--info", sample_deb)
    for member in ("control", "md5sums", "conffiles", "postinst", "prerm", "postrm"):
        assert f" {member}" in info


def test_dpkg_deb_lists_files_modes_and_owners(sample_deb):
    listing = {}
    for line in dpkg_deb("--contents", sample_deb).splitlines():
        perms, owner, _size, _date, _time, path = line.split(maxsplit=5)
        listing[path] = (perms, owner)
    assert all(owner == "root/root" for _perms, owner in listing.values())
    for path, mode in SAMPLE_FILES.items():
        assert path in listing, f"{path} missing from {sorted(listing)}"
        assert listing[path][0] == "-" + stat_string(mode), path
    assert listing["./usr/lib/fleet-agent/"][0] == "drwxr-xr-x"


def stat_string(mode: int) -> str:
    return "".join(c if mode & (1 << (8 - i)) else "-" for i, c in enumerate("rwxrwxrwx"))


def test_python_debian_reads_conffiles_and_md5sums(sample_deb):
    debfile = require_module("debian.debfile")
    deb = debfile.DebFile(str(sample_deb))
    control = deb.debcontrol()
    assert control["Package"] == "fleet-agent"
    conffiles = deb.control.get_content("conffiles").decode().split()
    assert conffiles == ["/etc/fleet-agent/agent.conf", "/etc/fleet-agent/startup.conf"]
    md5sums = deb.md5sums()
    data_files = {n.lstrip("./") for n in deb.data.tgz().getnames() if deb.data.tgz().getmember(n).isfile()}
    assert {k.decode() if isinstance(k, bytes) else k for k in md5sums} == data_files
    for name, digest in md5sums.items():
        name = name.decode() if isinstance(name, bytes) else name
        content = deb.data.get_content(name)
        assert hashlib.md5(content).hexdigest() == digest, name


def test_installed_size_matches_the_contents(sample_deb):
    data = io.BytesIO(
        subprocess.run(["dpkg-deb", "--fsys-tarfile", str(sample_deb)], check=True, capture_output=True).stdout
    )
    with tarfile.open(fileobj=data) as tar:
        members = [m for m in tar.getmembers() if m.name not in (".", "./")]
    expected = sum(-(-m.size // 1024) for m in members if m.isfile()) + sum(1 for m in members if m.isdir())
    assert int(dpkg_deb("--field", sample_deb, "Installed-Size")) == expected


def test_lintian_is_clean(sample_deb):
    require_tool("lintian")
    proc = subprocess.run(
        ["lintian", "--fail-on", "error,warning", "--display-info", str(sample_deb)], capture_output=True, text=True
    )
    tags = [l for l in proc.stdout.splitlines() if l[:2] in ("E:", "W:")]
    assert proc.returncode == 0 and not tags, proc.stdout + proc.stderr


def test_rebuild_is_byte_identical_and_a_change_is_not(tmp_path, sample_project):
    first = build_deb(sample_project, tmp_path / "a")
    second = build_deb(sample_project, tmp_path / "b")
    assert first.path.read_bytes() == second.path.read_bytes()
    assert first.sha256 == second.sha256 == hashlib.sha256(first.path.read_bytes()).hexdigest()
    conf = sample_project / "configs" / "agent.conf"
    conf.write_text(conf.read_text() + "\n# changed\n")
    third = build_deb(sample_project, tmp_path / "c")
    assert third.sha256 != first.sha256


def test_rebuild_from_the_same_commit_without_env_is_identical(tmp_path, sample_project, monkeypatch):
    """No SOURCE_DATE_EPOCH: the commit time is the mtime, so two builds match."""
    require_tool("git")
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_COMMITTER_DATE": "2026-01-02T03:04:05Z",
        "GIT_AUTHOR_DATE": "2026-01-02T03:04:05Z",
    }
    for args in (["init", "-q"], ["add", "."], ["commit", "-q", "-m", "v1"]):
        subprocess.run(["git", *args], cwd=sample_project, check=True, env=env)
    first = build_deb(sample_project, tmp_path / "a")
    os.utime(sample_project / "scripts" / "agent.py", (1, 1))  # a checkout gives files new mtimes
    second = build_deb(sample_project, tmp_path / "b")
    assert first.path.read_bytes() == second.path.read_bytes()
    listing = dpkg_deb("--contents", first.path)
    assert "2026-01-02 03:04" in listing


def test_compressions_are_all_readable(tmp_path, sample_project):
    for compression in ("xz", "gzip", "zstd", "none"):
        built = build_deb(sample_project, tmp_path / compression, compression=compression)
        assert "./usr/lib/fleet-agent/agent.py" in dpkg_deb("--contents", built.path)


def test_second_bundle_with_its_own_shape(tmp_path):
    built = build_deb(REPO / "tests" / "fixtures" / "nightly-backup", tmp_path)
    assert built.path.name == "nightly-backup_2.1.0~rc1_all.deb"
    listing = dpkg_deb("--contents", built.path)
    for path in (
        "./opt/nightly-backup/bin/snapshot.py",
        "./etc/nightly-backup/filters.d/default.conf",
        "./usr/lib/systemd/system/nightly-backup.timer",
        "./usr/lib/systemd/system/nightly-backup-restore@.service",
    ):
        assert path in listing
    assert "-rwxr-xr-x root/root" in next(l for l in listing.splitlines() if "snapshot.py" in l)
    conffiles = subprocess.run(["dpkg-deb", "--ctrl-tarfile", str(built.path)], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(conffiles)) as tar:
        text = tar.extractfile("./conffiles").read().decode()
        assert text.split() == ["/etc/nightly-backup/backup.conf", "/etc/nightly-backup/filters.d/default.conf"]
        assert "./preinst" in tar.getnames() or "./postinst" in tar.getnames()
