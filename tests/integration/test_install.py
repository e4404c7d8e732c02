"""The sample .deb installed and purged with real apt/dpkg inside a throwaway
Debian root (mmdebstrap, cached; an overlay per test)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from builder.build import build_deb
from tests.harness.helpers import require_tool
from tests.harness.hoststate import BOOKKEEPING
from tests.harness.project import REPO

pytestmark = pytest.mark.root


@pytest.fixture
def root():
    if os.geteuid() != 0:
        from tests.harness.helpers import _missing

        _missing("root (the tests mount overlays and chroot)")
    require_tool("mmdebstrap")
    from hostlab.rootfs import Root, cached_root

    with Root(cached_root()) as r:
        yield r


def install(root, deb: Path, *extra: str):
    shutil.copy(deb, root.path / "var/tmp" / deb.name)
    return root.run(
        ["apt-get", "install", "-y", "-q", *extra, f"/var/tmp/{deb.name}"],
        env={"DEBIAN_FRONTEND": "noninteractive"},
        check=False,
    )


def test_install_puts_files_where_the_readme_says_and_purge_removes_them(root, tmp_path):
    deb = build_deb(REPO, tmp_path).path
    before = root.files() | {f"var/tmp/{deb.name}"}  # the copied .deb is ours, not the package's
    proc = install(root, deb)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    p = root.path
    assert (p / "usr/lib/systemd/system/fleet-agent.service").is_file()
    assert (p / "usr/lib/fleet-agent/agent.py").stat().st_mode & 0o777 == 0o755
    assert (p / "etc/fleet-agent/agent.conf").is_file()
    assert (p / "usr/share/doc/fleet-agent/copyright").is_file()
    assert (p / "etc/systemd/system/multi-user.target.wants/fleet-agent.service").is_symlink()
    assert (p / "var/log/fleet-agent/deploy.log").is_file()
    status = root.run(["dpkg-query", "-W", "-f=${Status} ${Version}", "fleet-agent"]).stdout
    assert status == "install ok installed 1.0.0"

    proc = root.run(
        ["apt-get", "purge", "-y", "-q", "fleet-agent"], env={"DEBIAN_FRONTEND": "noninteractive"}, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = root.files()
    leftovers = sorted(after - before)
    leftovers = [f for f in leftovers if not f.startswith(BOOKKEEPING)]
    assert leftovers == [], leftovers
    assert sorted(before - after) == []


def test_multi_block_xz_package_installs_with_dpkg(root, tmp_path):
    """A data.tar.xz of three 8 MiB blocks, compressed on two workers, unpacked by real dpkg."""
    import hashlib
    import random

    from builder import compress, debfile

    rng = random.Random(12)
    src = tmp_path / "src"
    src.mkdir()
    members = []
    for i in range(40):  # 40 × 512 KiB: over two blocks; repeated runs compress quickly
        p = src / f"part{i:02d}.bin"
        p.write_bytes(rng.randbytes(2048) * 256)
        members.append(debfile.Member(f"usr/share/bigpkg/part{i:02d}.bin", 0o644, source=p))
    md5sums = "".join(f"{hashlib.md5(m.source.read_bytes()).hexdigest()}  {m.path}\n" for m in members)
    control = [
        debfile.Member(
            "control",
            0o644,
            data=(
                b"Package: bigpkg\nVersion: 1.0\nArchitecture: all\nMaintainer: T <t@example.com>\n"
                b"Description: multi-block test\n three xz blocks\n"
            ),
        ),
        debfile.Member("md5sums", 0o644, data=md5sums.encode()),
    ]
    deb = debfile.write(control, members, tmp_path, name="bigpkg", version="1.0", mtime=1_700_000_000, workers=2).path
    assert deb.stat().st_size < 4 << 20 and 40 * (512 << 10) > 2 * compress.XZ_BLOCK
    shutil.copy(deb, root.path / "var/tmp" / deb.name)
    proc = root.run(["dpkg", "-i", f"/var/tmp/{deb.name}"], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert root.run(["dpkg", "--verify", "bigpkg"], check=False).stdout == ""  # md5sums match what landed
    for m in members:
        assert (root.path / m.path).read_bytes() == m.source.read_bytes()
