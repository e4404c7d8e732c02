"""The compressors behind ``control.tar.*`` and ``data.tar.*``: deterministic, and on all cores.

Each is a write-only sink: ``write(bytes)`` as tarfile produces the stream (``tell()``
counts what was written), ``finish()`` at the end, ``close()`` always (it stops worker
threads after a failure).

xz: a stream of at most ``XZ_BLOCK`` bytes is one block compressed as ``xz -6`` would
(dictionary cut to the input's size).  A longer one is cut into ``XZ_BLOCK``-byte blocks,
each compressed (xz -6's dictionary, LZMA2's fast mode) on a thread pool (liblzma
releases the GIL) and laid out as ``xz -T``
lays out its streams: one stream header, blocks whose headers carry their compressed
and uncompressed sizes, one index, one footer (the .xz file format, version 1.1.0).  The
block size is a constant and blocks are written in order, so the bytes never depend on
the number of workers.  zstd: libzstd's own workers; its output is the same for any
worker count of 1 or more (tests/unit/test_compress.py checks both).
"""

from __future__ import annotations

import collections
import lzma
import os
import zlib
from typing import IO, TYPE_CHECKING

from .errors import BuildError

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

# xz -6's dictionary: a block shorter than the dictionary could not use all of it, and
# xz -T's own default (3 dictionaries, 24 MiB) leaves a second core idle below 48 MiB.
XZ_BLOCK = 8 << 20
COMPRESSIONS = ("xz", "gzip", "zstd", "none")  # of data.tar and control.tar (debfile.write)
MAX_WORKERS = 16  # each xz -6 encoder needs ~94 MiB; more blocks at once rarely help

_GATHER = 1 << 20
_XZ_MAGIC = b"\xfd7zXZ\x00"
_XZ_FLAGS = b"\x00\x04"  # check type 4: CRC64, as xz writes by default
_CHECK_SIZE = 8


def default_workers() -> int:
    """The cores this process may run on, at most ``MAX_WORKERS``."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS))


def sink(out: IO[bytes], compression: str, size: int, workers: int):
    """A sink compressing into ``out``; ``size`` is the expected uncompressed size."""
    if compression == "xz":
        return XzSink(out, size, workers)
    if compression == "gzip":  # wbits 31: gzip header with mtime 0 and no file name
        return _Streaming(out, zlib.compressobj(9, zlib.DEFLATED, 31))
    if compression == "zstd":  # with a content checksum, as the zstd CLI and dpkg-deb write
        compressor = zstandard().ZstdCompressor(level=3, write_checksum=True, threads=max(1, workers))
        return _Streaming(out, compressor.compressobj(), gather=_GATHER)
    return _Streaming(out, None)


def zstandard():
    try:
        import zstandard
    except ImportError as e:
        raise BuildError("zstd compression needs the 'zstandard' package: pip install 'debship[zstd]'") from e
    return zstandard


class _Streaming:
    """One compressor object fed as the data comes (``None``: no compression).

    ``gather``: hand the compressor pieces of at least this many bytes, not each 512-byte
    tar header on its own (only for a compressor whose output does not depend on the pieces).
    """

    def __init__(self, out: IO[bytes], compressor, gather: int = 0) -> None:
        self._out, self._compressor, self._gather = out, compressor, gather
        self._buf, self._written = bytearray(), 0

    def write(self, b: bytes) -> int:
        self._written += len(b)
        if self._gather:
            self._buf += b
            if len(self._buf) >= self._gather:
                self._out.write(self._compressor.compress(bytes(self._buf)))
                self._buf.clear()
        else:
            self._out.write(self._compressor.compress(b) if self._compressor else b)
        return len(b)

    def tell(self) -> int:
        return self._written

    def finish(self) -> None:
        if self._compressor:
            self._out.write(self._compressor.compress(bytes(self._buf)) + self._compressor.flush())

    def close(self) -> None:
        pass


def dict_size(size: int) -> int:
    """A dictionary larger than the input compresses no better but costs ~5 ms to set up:
    the next power of two at or above ``size``, between 64 KiB and xz -6's 8 MiB."""
    return max(64 << 10, min(8 << 20, 1 << max(0, size - 1).bit_length()))


def _filters(size: int) -> list:
    """``xz -6`` (dpkg-deb's default) with its dictionary cut to ``size``."""
    return [{"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": dict_size(size)}]


class XzSink:
    """One .xz stream: a single block for short input, else ``XZ_BLOCK``-sized blocks in parallel."""

    def __init__(self, out: IO[bytes], size: int, workers: int) -> None:
        self._out, self._size, self._workers = out, size, max(1, workers)
        self._buf, self._written = bytearray(), 0
        self._pool: ThreadPoolExecutor | None = None
        self._pending: collections.deque[Future] = collections.deque()  # in block order
        self._records: list[tuple[int, int]] = []  # (unpadded size, uncompressed size) per block

    def write(self, b: bytes) -> int:
        self._buf += b
        self._written += len(b)
        while len(self._buf) > XZ_BLOCK:  # more than one block's worth: the stream will have several
            block = bytes(self._buf[:XZ_BLOCK])
            del self._buf[:XZ_BLOCK]
            self._submit(block)
        return len(b)

    def tell(self) -> int:
        return self._written

    def finish(self) -> None:
        if self._pool is None:  # it all fitted in one block: exactly what `xz -6` would write
            self._out.write(
                lzma.compress(
                    bytes(self._buf), format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, filters=_filters(self._size)
                )
            )
            return
        if self._buf:
            self._submit(bytes(self._buf))
            self._buf.clear()
        while self._pending:
            self._drain_one()
        index = xz_index(self._records)
        self._out.write(index + xz_footer(index))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _submit(self, block: bytes) -> None:
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor  # only big packages need it (~4 ms)

            self._out.write(xz_stream_header())
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="debship-xz")
        self._pending.append(self._pool.submit(xz_block, block))
        while len(self._pending) > 2 * self._workers:  # bounded memory: write out the oldest
            self._drain_one()

    def _drain_one(self) -> None:
        block, unpadded, usize = self._pending.popleft().result()
        self._out.write(block)
        self._records.append((unpadded, usize))


# -- the .xz format, for the multi-block case -------------------------------------


def xz_block(data: bytes) -> tuple[bytes, int, int]:
    """``data`` as one .xz block with both sizes in its header: (bytes, unpadded size, len(data)).

    liblzma compresses it as a single-block stream (computing the CRC64 in C); the LZMA2
    data and the check are taken from that stream and given a header that names the sizes.
    """
    raw = lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC64, filters=_block_filters())
    header_size = (raw[12] + 1) * 4
    filter_flags = _filter_flags(raw[14 : 12 + header_size - 4])
    index = raw[-12 - _backward_size(raw[-12:]) : -12]
    _count, pos = _read_vli(index, 1)
    unpadded, pos = _read_vli(index, pos)
    compressed = unpadded - header_size - _CHECK_SIZE
    start = 12 + header_size
    check_at = start + compressed + (-compressed % 4)
    header = _block_header(compressed, len(data), filter_flags)
    block = header + raw[start : start + compressed] + bytes(-compressed % 4) + raw[check_at : check_at + _CHECK_SIZE]
    return block, len(header) + compressed + _CHECK_SIZE, len(data)


def _block_filters() -> list:
    """The blocks of a long stream: xz -6's dictionary and match finder in LZMA2's fast mode
    (greedy parsing); on bench/build.py's 50 MB payload 25% less CPU for 1% more bytes."""
    return [{"id": lzma.FILTER_LZMA2, "preset": 6, "dict_size": XZ_BLOCK, "mode": lzma.MODE_FAST}]


def _filter_flags(b: bytes) -> bytes:
    """The one filter's flags (id, size of properties, properties) without the header padding."""
    _id, pos = _read_vli(b, 0)
    props, pos = _read_vli(b, pos)
    return b[: pos + props]


def _block_header(compressed: int, uncompressed: int, filter_flags: bytes) -> bytes:
    flags = 0x40 | 0x80  # one filter; compressed size and uncompressed size present
    body = bytes([flags]) + _vli(compressed) + _vli(uncompressed) + filter_flags
    size = -(-(1 + len(body) + 4) // 4) * 4  # size byte + body + CRC32, padded to 4
    header = bytes([size // 4 - 1]) + body + bytes(size - 1 - len(body) - 4)
    return header + _crc32(header)


def xz_stream_header() -> bytes:
    return _XZ_MAGIC + _XZ_FLAGS + _crc32(_XZ_FLAGS)


def xz_index(records: list[tuple[int, int]]) -> bytes:
    body = b"\x00" + _vli(len(records)) + b"".join(_vli(u) + _vli(n) for u, n in records)
    body += bytes(-len(body) % 4)
    return body + _crc32(body)


def xz_footer(index: bytes) -> bytes:
    backward = (len(index) // 4 - 1).to_bytes(4, "little")
    return _crc32(backward + _XZ_FLAGS) + backward + _XZ_FLAGS + b"YZ"


def _backward_size(footer: bytes) -> int:
    return (int.from_bytes(footer[4:8], "little") + 1) * 4


def _crc32(b: bytes) -> bytes:
    return zlib.crc32(b).to_bytes(4, "little")


def _vli(n: int) -> bytes:
    """The .xz variable-length integer: 7 bits a byte, low first, high bit = more."""
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def _read_vli(b: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = b[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not byte & 0x80:
            return value, pos


# -- reading a multi-block .xz stream, block by block (debship diff) -------------------


def xz_block_table(f, offset: int, size: int) -> tuple[bytes, list[tuple[int, int, int, int]]] | None:
    """The blocks of the one .xz stream in ``f[offset:offset+size]``, from its index:
    (stream flags, [(start, padded size, unpadded size, uncompressed size)]), or None when
    the member is not exactly one stream with an index that accounts for every byte
    (several streams, stream padding, a damaged file: read it the ordinary way)."""
    if size < 32:
        return None
    f.seek(offset)
    head = f.read(12)
    f.seek(offset + size - 12)
    foot = f.read(12)
    if (
        len(head) < 12
        or len(foot) < 12
        or head[:6] != _XZ_MAGIC
        or foot[10:] != b"YZ"
        or head[6:8] != foot[8:10]
        or _crc32(head[6:8]) != head[8:12]
    ):
        return None
    index_size = _backward_size(foot)
    if index_size > size - 24:
        return None
    f.seek(offset + size - 12 - index_size)
    index = f.read(index_size)
    try:
        if index[0] != 0 or _crc32(index[:-4]) != index[-4:]:
            return None
        count, pos = _read_vli(index, 1)
        blocks, start = [], offset + 12
        for _ in range(count):
            unpadded, pos = _read_vli(index, pos)
            usize, pos = _read_vli(index, pos)
            padded = unpadded + (-unpadded % 4)
            blocks.append((start, padded, unpadded, usize))
            start += padded
    except IndexError:
        return None
    if start != offset + size - 12 - index_size:
        return None
    return head[6:8], blocks


def xz_decode_block(flags: bytes, block: bytes, unpadded: int, usize: int) -> bytes:
    """One block of a stream (its padded bytes, from the block header to the check) decoded
    on its own: wrapped as a one-block stream, so liblzma checks sizes and the check too
    (and releases the GIL while it decodes)."""
    index = xz_index([(unpadded, usize)])
    backward = (len(index) // 4 - 1).to_bytes(4, "little")
    stream = _XZ_MAGIC + flags + _crc32(flags) + block + index + _crc32(backward + flags) + backward + flags + b"YZ"
    data = lzma.decompress(stream, format=lzma.FORMAT_XZ)
    if len(data) != usize:
        raise lzma.LZMAError(f"an xz block decoded to {len(data)} bytes, its index says {usize}")
    return data
