"""`debship diff` reads both packages at once and decodes a multi-block data.tar.xz on
more threads; the result must be exactly the single-threaded one.  Packages from our
writer (8 MiB xz blocks) and from the real dpkg-deb: one block (-z6: liblzma's 24 MiB
blocks hold the whole ~10 MB archive) and several (-z1 with --threads-max=4: 3 MiB blocks)."""

from __future__ import annotations

import json
import random
import subprocess
from pathlib import Path

import pytest

from builder import debdiff, debfile
from builder.debdiff import compare
from tests.harness.helpers import require_tool

CONTROL = (
    "Package: bulk\nVersion: {v}\nArchitecture: all\nMaintainer: T <t@example.com>\n"
    "Description: bulk payload\n for the threaded diff test\n"
)
WORDS = b"deploy service unit config restart health agent fleet host package version rollback ".split()


def _tree(root: Path, version: str) -> None:
    """~10 MB in 120 files (text and random bytes); 2.0 changes, removes, adds and re-modes some."""
    rng = random.Random(7)
    base = root / "usr/lib/bulk"
    for i in range(120):
        path = base / f"d{i % 6}" / f"f{i:03d}"
        path.parent.mkdir(parents=True, exist_ok=True)
        size = rng.randrange(20_000, 150_000)
        if i % 3:
            data = b" ".join(rng.choice(WORDS) for _ in range(size // 7))[:size]
        else:
            data = rng.randbytes(size)
        if version == "2.0" and i in (5, 61, 119):
            data = data[:100] + b"changed" + data[107:]
        if version == "2.0" and i == 30:
            continue
        path.write_bytes(data)
        path.chmod(0o755 if (i == 8 and version == "2.0") else 0o644)
    if version == "2.0":
        (base / "new-file").write_text("added in 2.0\n")
    etc = root / "etc/bulk"
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "bulk.conf").write_text(f"port = {8080 if version == '1.0' else 9090}\n")


@pytest.fixture(scope="module")
def trees(tmp_path_factory):
    base = tmp_path_factory.mktemp("trees")
    out = {}
    for v in ("1.0", "2.0"):
        _tree(base / v, v)
        out[v] = base / v
    return out


def _ours(root: Path, version: str, out: Path) -> Path:
    files = sorted(p for p in root.rglob("*") if p.is_file() and "DEBIAN" not in p.parts)
    data = [debfile.Member(p.relative_to(root).as_posix(), p.stat().st_mode, source=p) for p in files]
    control = [
        debfile.Member("control", 0o644, data=CONTROL.format(v=version).encode()),
        debfile.Member("conffiles", 0o644, data=b"/etc/bulk/bulk.conf\n"),
    ]
    return debfile.write(control, data, out, name="bulk", version=version, compression="xz", mtime=1_700_000_000).path


def _dpkg_deb(root: Path, version: str, out: Path, threads: int) -> Path:
    """threads=1: -z6, one block; more: -z1, one block per 3 MiB."""
    (root / "DEBIAN").mkdir(exist_ok=True)
    (root / "DEBIAN/control").write_text(CONTROL.format(v=version))
    (root / "DEBIAN/conffiles").write_text("/etc/bulk/bulk.conf\n")
    out.mkdir(parents=True, exist_ok=True)
    deb = out / f"bulk_{version}_all.deb"
    subprocess.run(
        [
            "dpkg-deb",
            "--root-owner-group",
            "-Zxz",
            "-z6" if threads == 1 else "-z1",
            f"--threads-max={threads}",
            "--build",
            str(root),
            str(deb),
        ],
        check=True,
        capture_output=True,
    )
    return deb


def _same_both_ways(old: Path, new: Path) -> None:
    one = compare(old, new, workers=1)
    assert compare(old, new, workers=2) == one  # the two packages at once, each as one stream
    many = compare(old, new, workers=4)  # and the blocks of each on two more threads
    assert many == one
    assert json.dumps(many.as_dict(), sort_keys=True) == json.dumps(one.as_dict(), sort_keys=True)
    paths = {f.path for f in one.changed}
    assert {
        "/usr/lib/bulk/d5/f005",
        "/usr/lib/bulk/d1/f061",
        "/usr/lib/bulk/d5/f119",
        "/usr/lib/bulk/d2/f008",
        "/etc/bulk/bulk.conf",
    } <= paths
    assert "/usr/lib/bulk/d0/f030" in one.removed and "/usr/lib/bulk/new-file" in one.added


@pytest.fixture(scope="module")
def ours(trees, tmp_path_factory):
    out = tmp_path_factory.mktemp("ours")
    return tuple(_ours(trees[v], v, out / v) for v in ("1.0", "2.0"))


def test_threaded_diff_equals_single_threaded_on_debship_packages(ours):
    old, new = ours
    assert len(debdiff._xz_blocks(old)[1]) > 1  # the threaded path is the one taken
    _same_both_ways(old, new)


@pytest.mark.parametrize("threads, blocks", [(1, False), (4, True)])
def test_threaded_diff_equals_single_threaded_on_dpkg_deb_packages(trees, tmp_path, threads, blocks):
    require_tool("dpkg-deb")
    old, new = (_dpkg_deb(trees[v], v, tmp_path / v, threads) for v in ("1.0", "2.0"))
    assert (debdiff._xz_blocks(old) is not None) == blocks
    _same_both_ways(old, new)
    if blocks:  # and a mix: one package in blocks, the other single-block
        single = _dpkg_deb(trees["2.0"], "2.0", tmp_path / "single", 1)
        _same_both_ways(old, single)


def test_a_damaged_block_is_a_one_line_package_error(ours, tmp_path):
    old, good = ours
    flags, blocks = debdiff._xz_blocks(good)
    start, padded, _, _ = blocks[1]
    data = bytearray(good.read_bytes())
    new = tmp_path / good.name
    data[start + padded // 2] ^= 0xFF
    new.write_bytes(bytes(data))
    with pytest.raises(debdiff.PackageError, match=r"not a readable Debian package"):
        compare(old, new, workers=4)
