"""builder.compress: multi-block .xz and threaded zstd, read back by xz, zstd, dpkg-deb and
python-debian; the same bytes whatever the number of workers.

Most tests shrink ``XZ_BLOCK`` to 64 KiB so that a few hundred KiB make a many-block
stream in milliseconds; one test keeps the real 8 MiB block.
"""

from __future__ import annotations

import hashlib
import io
import lzma
import random
import subprocess
from pathlib import Path

import pytest

from builder import compress
from builder.debfile import Member, write
from builder.errors import BuildError
from tests.harness.helpers import require_module, require_tool

MTIME = 1_700_000_000
CONTROL = b"Package: t\nVersion: 1.0\nArchitecture: all\nMaintainer: A <a@example.com>\nDescription: t\n t\n"
SMALL_BLOCK = 64 << 10


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(compress, "XZ_BLOCK", SMALL_BLOCK)


def mixed(n: int, seed: int = 0) -> bytes:
    """n bytes: text that compresses and random runs that do not, interleaved."""
    rng = random.Random(seed)
    words = b"deploy service unit config restart health agent fleet host".split()
    out = bytearray()
    while len(out) < n:
        out += b" ".join(rng.choice(words) for _ in range(rng.randrange(50, 3000)))
        out += rng.randbytes(rng.randrange(0, 4000))
    return bytes(out[:n])


def xz(data: bytes, workers: int) -> bytes:
    out = io.BytesIO()
    s = compress.sink(out, "xz", len(data), workers)
    for i in range(0, len(data), 10_000):  # fed in pieces that are not block-aligned
        s.write(data[i : i + 10_000])
    s.finish()
    s.close()
    return out.getvalue()


def xz_blocks(path: Path) -> list[list[str]]:
    """`xz --robot -lvv`'s block lines: [..., header size, flags, ...]; flags 'cu' = both sizes in the header."""
    listing = subprocess.run(
        [require_tool("xz"), "--robot", "-lvv", str(path)], capture_output=True, text=True, check=True
    ).stdout
    return [line.split("\t") for line in listing.splitlines() if line.startswith("block")]


def test_multi_block_stream_is_read_by_xz_and_python(tmp_path, small_blocks):
    data = mixed(10 * SMALL_BLOCK + 1234)
    packed = xz(data, workers=3)
    path = tmp_path / "d.xz"
    path.write_bytes(packed)
    subprocess.run([require_tool("xz"), "-t", str(path)], check=True)
    assert subprocess.run(["xz", "-dc", str(path)], capture_output=True, check=True).stdout == data
    assert lzma.LZMADecompressor().decompress(packed) == data  # one stream: no concatenated-stream reading
    blocks = xz_blocks(path)
    assert len(blocks) == 11
    assert {b[12] for b in blocks} == {"cu"} and {b[15] for b in blocks} == {"--lzma2=dict=64KiB"}
    assert [int(b[7]) for b in blocks] == [SMALL_BLOCK] * 10 + [1234]


@pytest.mark.parametrize("size", [0, 1, 1000, SMALL_BLOCK])
def test_up_to_one_block_is_what_xz_6_writes(size, small_blocks):
    data = mixed(size)
    filters = [{"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": compress.dict_size(size)}]
    assert xz(data, workers=4) == lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, filters=filters)


def test_one_byte_over_a_block_makes_two(tmp_path, small_blocks):
    path = tmp_path / "d.xz"
    path.write_bytes(xz(mixed(SMALL_BLOCK + 1), workers=2))
    assert [int(b[7]) for b in xz_blocks(path)] == [SMALL_BLOCK, 1]


@pytest.mark.parametrize("workers", [2, 3, 8])
def test_xz_bytes_do_not_depend_on_the_workers(workers, small_blocks):
    data = mixed(20 * SMALL_BLOCK + 77, seed=workers)
    assert xz(data, workers) == xz(data, workers=1)


def test_zstd_bytes_do_not_depend_on_the_workers(tmp_path):
    """libzstd promises this for 1 worker or more (not for 0, its single-threaded mode)."""
    require_module("zstandard")
    data = mixed(12 << 20)  # over libzstd's job size at level 3, so several jobs
    outs = {}
    for workers in (1, 2, 5):
        out = io.BytesIO()
        s = compress.sink(out, "zstd", len(data), workers)
        s.write(data)
        s.finish()
        outs[workers] = out.getvalue()
    assert outs[1] == outs[2] == outs[5]
    path = tmp_path / "d.zst"
    path.write_bytes(outs[1])
    assert subprocess.run([require_tool("zstd"), "-dc", str(path)], capture_output=True, check=True).stdout == data


def files(tmp_path: Path, n: int) -> list[Member]:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    members = []
    for i in range(n):
        p = src / f"f{i:03d}.txt"
        p.write_bytes(mixed(9000 + 97 * i, seed=i))
        members.append(Member(f"usr/lib/big/d{i % 3}/f{i:03d}.txt", 0o755 if i % 5 == 0 else 0o644, source=p))
    return members


def build(tmp_path: Path, out: str, workers: int, data: list[Member], compression: str = "xz"):
    return write(
        [Member("control", 0o644, CONTROL)],
        data,
        tmp_path / out,
        name="t",
        version="1.0",
        compression=compression,
        mtime=MTIME,
        workers=workers,
    )


@pytest.mark.parametrize("compression", ["xz", "zstd"])
def test_multi_block_deb_is_read_by_dpkg_deb_and_python_debian(tmp_path, small_blocks, compression):
    if compression == "zstd":
        require_module("zstandard")
    data = files(tmp_path, 120)  # ~1.6 MB of tar: 25 blocks of 64 KiB
    built = build(tmp_path, "out", 2, data, compression)
    dpkg_deb = require_tool("dpkg-deb")
    listing = subprocess.run(
        [dpkg_deb, "--contents", str(built.path)], capture_output=True, text=True, check=True
    ).stdout
    assert sum(line.endswith(".txt") for line in listing.splitlines()) == 120
    assert len(listing.splitlines()) == 120 + 7  # ./, usr/, lib/, big/ and d0/ to d2/
    subprocess.run([dpkg_deb, "--extract", str(built.path), str(tmp_path / "x")], check=True)
    for m in data:
        assert (tmp_path / "x" / m.path).read_bytes() == m.source.read_bytes()
    debian = require_module("debian.debfile")
    deb = debian.DebFile(str(built.path))
    assert deb.data.has_file("./usr/lib/big/d0/f000.txt")
    assert deb.data.get_content("usr/lib/big/d2/f119.txt") == data[119].source.read_bytes()


def test_multi_block_deb_is_the_same_on_1_and_4_workers(tmp_path, small_blocks):
    data = files(tmp_path, 60)
    one, four = build(tmp_path, "one", 1, data), build(tmp_path, "four", 4, data)
    assert one.path.read_bytes() == four.path.read_bytes()


def test_real_block_size_on_1_and_2_workers(tmp_path):
    """The real 8 MiB block: a 17 MiB stream is three blocks, the same bytes either way."""
    src = tmp_path / "big.txt"
    src.write_bytes(random.Random(7).randbytes(4096) * (17 << 8))  # long matches: fast to compress
    data = [Member("usr/share/big/big.txt", 0o644, source=src)]
    one, two = build(tmp_path, "one", 1, data), build(tmp_path, "two", 2, data)
    assert hashlib.sha256(one.path.read_bytes()).hexdigest() == two.sha256
    subprocess.run([require_tool("ar"), "x", str(two.path), "data.tar.xz"], cwd=tmp_path, check=True)
    assert [int(b[7]) for b in xz_blocks(tmp_path / "data.tar.xz")][:2] == [8 << 20, 8 << 20]


def test_failure_mid_stream_stops_the_workers_and_leaves_nothing(tmp_path, small_blocks):
    """A source that vanishes after several blocks are on the pool: the error names it, no .part."""
    data = files(tmp_path, 80)
    gone = data[70].source
    gone.unlink()
    with pytest.raises(BuildError, match=f"cannot read {gone}"):
        build(tmp_path, "out", 2, data)
    assert list((tmp_path / "out").iterdir()) == []
