"""The .deb writer: ar + tar by hand, laid out as dpkg-deb lays it out, no dpkg-deb needed.

An ar archive of ``debian-binary``, ``control.tar.<ext>`` and ``data.tar.<ext>``:
reproducible (sorted by path components, root:root, permission bits only, one
clamped mtime, GNU tar without pax headers, deterministic compressors) and atomic
(a ``.*.deb.part`` temp file beside the result, fsynced, ``os.replace``-d, removed
on any failure).  Members are regular files; data parents are implied (0755).
A symlink kind can later be one more optional ``Member`` field.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Callable

from . import compress
from .errors import BuildError

if TYPE_CHECKING:
    from .debinfo import BuiltDeb

COMPRESSIONS = compress.COMPRESSIONS

_SUFFIX = {"xz": ".xz", "gzip": ".gz", "zstd": ".zst", "none": ""}
_MAX_MTIME = 8**11 - 1  # the largest mtime (year 2242) or size an 11-digit octal tar field holds
_RECORD = 20 * 512  # tar -b20, as tarfile and dpkg-deb pad the archive
_REGTYPE, _DIRTYPE = b"0", b"5"  # tarfile.REGTYPE, tarfile.DIRTYPE
_MAX_AR_SIZE = 10**10 - 1  # the ar header's size field has 10 decimal digits
_BUFSIZE = 1 << 20
_FILENAME_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+~:-]*\Z")

_Entry = tuple[str, "Member | None"]  # (path relative to './', member or None for a directory)


@dataclass(frozen=True)
class Member:
    """One regular file in the archive: content in ``data`` or streamed from ``source``.

    ``path`` is relative POSIX ('usr/lib/demo/startup.py', 'postinst'); ``mode``
    is reduced to its permission bits when written.
    """

    path: str
    mode: int
    data: bytes | None = None
    source: Path | None = None


@dataclass(frozen=True)
class _Format:
    """How the members are written: compression, the one mtime, compressing threads."""

    compression: str
    mtime: int
    workers: int


def write(
    control: Sequence[Member],
    data: Sequence[Member],
    out_dir: Path,
    *,
    name: str,
    version: str,
    architecture: str = "all",
    compression: str = "xz",
    mtime: int,
    workers: int | None = None,
    unlisted_dirs: Collection[str] = (),
) -> BuiltDeb:
    """Write ``out_dir/<deb_filename>`` atomically and return its path, sha256 and size.

    ``workers`` threads compress (default: one per core, see ``compress.default_workers``);
    the bytes written are the same for any number.  ``unlisted_dirs`` (like ``"opt"``): parent
    folders left out of data.tar, so that the package does not own them (they must exist on the
    host: dpkg unpacks into them but never removes them).
    """
    _check_compression(compression)
    _check_members(control, what="control", flat=True)
    _check_members(data, what="data", flat=False)
    _check_filename_parts(name=name, version=version, architecture=architecture)
    mtime = max(0, min(int(mtime), _MAX_MTIME))
    workers = compress.default_workers() if workers is None else max(1, int(workers))
    from .debinfo import BuiltDeb, deb_filename  # here: `build-deb --list` and start-up need neither

    final = Path(out_dir) / deb_filename(name, version, architecture)

    def fill(out: IO[bytes]) -> None:
        _write_ar(
            out, _control_entries(control), _data_entries(data, unlisted_dirs), _Format(compression, mtime, workers)
        )

    sha256, size = _write_atomically(final, fill)
    return BuiltDeb(final, name, version, architecture, sha256, size)


# -- checks (all before anything touches the disk) ---------------------------


def _check_compression(compression: str) -> None:
    if compression not in COMPRESSIONS:
        raise BuildError(f"unknown compression {compression!r}: use one of {', '.join(COMPRESSIONS)}")
    if compression == "zstd":
        compress.zstandard()  # a missing zstandard fails here, before any file exists


def _check_members(members: Sequence[Member], *, what: str, flat: bool) -> None:
    seen: set[str] = set()
    for m in members:
        _check_path(m.path, what)
        if flat and "/" in m.path:
            raise BuildError(f"{what} path {m.path!r} is in a subdirectory; control files must be top-level")
        if m.path in seen:
            raise BuildError(f"duplicate {what} path {m.path!r}: each path may appear only once")
        if (m.data is None) == (m.source is None):
            raise BuildError(f"{what} path {m.path!r} must give exactly one of data or source")
        seen.add(m.path)
    clashes = seen.intersection(p for path in seen for p in _parents(path))
    if clashes:
        raise BuildError(f"{what} path {min(clashes)!r} is both a file and a directory")


def _check_path(path: str, what: str) -> None:
    parts = path.split("/")
    if path.startswith("/"):
        raise BuildError(f"{what} path {path!r} is absolute: give it relative, e.g. 'usr/lib/x'")
    if ".." in parts:
        raise BuildError(f"{what} path {path!r} contains '..': it must stay inside the package")
    if not path or "\0" in path or any(p in ("", ".") for p in parts):
        raise BuildError(f"{what} path {path!r} is not a clean relative path (no './', '//' or trailing '/')")


def _check_filename_parts(**parts: str) -> None:
    for field, value in parts.items():
        if not _FILENAME_PART.match(value):
            raise BuildError(f"package {field} {value!r} cannot name a .deb: use letters, digits and . + ~ : - only")


# -- the ar container --------------------------------------------------------


def _write_atomically(final: Path, fill: Callable[[IO[bytes]], None]) -> tuple[str, int]:
    """Run ``fill`` on a temp file beside ``final``, then rename it; never leave the temp file."""
    from .reproducible import atomic_file  # here, like the record: only writing needs it

    try:
        with atomic_file(final, suffix=".deb.part", mode=0o644) as tmp:  # 0644: as dpkg-deb leaves it
            fill(tmp)
            tmp.flush()
            return _synced_digest(tmp)
    except OSError as e:
        raise BuildError(f"cannot write {final}: {e.strerror or e}") from e


def _write_ar(out: IO[bytes], control: list[_Entry], data: list[_Entry], fmt: _Format) -> None:
    ext, mtime = _SUFFIX[fmt.compression], fmt.mtime
    out.write(b"!<arch>\n")
    _ar_member(out, "debian-binary", mtime, lambda f: f.write(b"2.0\n"))
    _ar_member(out, "control.tar" + ext, mtime, lambda f: _write_tar(f, control, fmt))
    _ar_member(out, "data.tar" + ext, mtime, lambda f: _write_tar(f, data, fmt))


def _ar_member(out: IO[bytes], name: str, mtime: int, fill: Callable[[IO[bytes]], object]) -> None:
    """Stream a member after a placeholder header, then go back and write its real size."""
    start = out.tell()
    out.write(_ar_header(name, 0, mtime))
    fill(out)
    end = out.tell()
    size = end - start - 60
    if size > _MAX_AR_SIZE:
        raise BuildError(f"{name} is {size} bytes, more than an ar archive can hold")
    out.seek(start)
    out.write(_ar_header(name, size, mtime))
    out.seek(end)
    if size % 2:
        out.write(b"\n")


def _ar_header(name: str, size: int, mtime: int) -> bytes:
    """The 60-byte header dpkg-deb writes: name, mtime, uid 0, gid 0, mode 100644, size."""
    return f"{name:<16}{mtime:<12}{0:<6}{0:<6}{'100644':<8}{size:<10}`\n".encode("ascii")


# -- the tar members ---------------------------------------------------------


def _control_entries(members: Sequence[Member]) -> list[_Entry]:
    return [("", None)] + sorted(((m.path, m) for m in members), key=lambda e: e[0])


def _data_entries(members: Sequence[Member], unlisted_dirs: Collection[str] = ()) -> list[_Entry]:
    """'./', every implied parent directory but ``unlisted_dirs``, then the files; sorted by path components."""
    dirs = {p for m in members for p in _parents(m.path)}.difference(unlisted_dirs)
    entries: list[_Entry] = [(d, None) for d in dirs] + [(m.path, m) for m in members]
    return [("", None)] + sorted(entries, key=lambda e: e[0].split("/"))


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


def _write_tar(out: IO[bytes], entries: list[_Entry], fmt: _Format) -> None:
    """A GNU tar stream as tarfile writes it (and dpkg-deb reads it), straight into the compressor."""
    sink = compress.sink(out, fmt.compression, _tar_size(entries), fmt.workers)
    try:
        for path, member in entries:
            _write_entry(sink, "./" + path, member, fmt.mtime)
        sink.write(bytes(1024 + -(sink.tell() + 1024) % _RECORD))  # two zero blocks, then to a record
        sink.finish()
    finally:
        sink.close()


def _tar_size(entries: list[_Entry]) -> int:
    """The size of the uncompressed tar: a 512-byte header per entry, contents padded to 512."""
    total = 1024  # the end-of-archive blocks
    for _path, member in entries:
        size = 0 if member is None else len(member.data) if member.source is None else _size(member.source)
        total += 512 + -(-size // 512) * 512
    return total


def _size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0  # reported when the file is read


def _write_entry(sink, name: str, member: Member | None, mtime: int) -> None:
    if member is None:
        sink.write(_header(name if name.endswith("/") else name + "/", 0o755, 0, mtime, _DIRTYPE))
        return
    mode = stat.S_IMODE(member.mode)
    if member.source is None:
        sink.write(_header(name, mode, len(member.data), mtime, _REGTYPE))
        sink.write(member.data + bytes(-len(member.data) % 512))
        return
    with _open_source(member) as f:
        size = os.fstat(f.fileno()).st_size
        sink.write(_header(name, mode, size, mtime, _REGTYPE))
        _copy(f, sink, size, member)


def _copy(f: IO[bytes], sink, size: int, member: Member) -> None:
    """``size`` bytes of ``f`` and the padding to 512; an error or a short read names the file."""
    left = size
    while left:
        try:
            chunk = f.read(min(left, _BUFSIZE))
        except OSError as e:
            raise _read_error(member, e) from e
        if not chunk:
            raise BuildError(
                f"cannot read {member.source} (for {member.path}): it ended before its size; did it change?"
            )
        sink.write(chunk)
        left -= len(chunk)
    sink.write(bytes(-size % 512))


_ROOT = b"root".ljust(32, b"\0")


def _header(name: str, mode: int, size: int, mtime: int, kind: bytes) -> bytes:
    """The 512-byte GNU header tarfile writes for root:root (tarfile.TarInfo.tobuf at a
    tenth of the cost); names over 100 bytes and sizes over 11 octal digits go to tarfile."""
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) > 100 or size > _MAX_MTIME:
        import tarfile  # only here: the common case needs none of it

        info = tarfile.TarInfo(name)
        info.mode, info.size, info.mtime, info.type = mode, size, mtime, kind
        info.uname = info.gname = "root"
        return info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")
    buf = b"".join(
        (
            raw.ljust(100, b"\0"),
            b"%07o\0" % mode,
            b"0000000\0" * 2,
            b"%011o\0" % size,
            b"%011o\0" % mtime,
            b" " * 8,
            kind,
            bytes(100),
            b"ustar  \0",
            _ROOT,
            _ROOT,
        )
    ).ljust(512, b"\0")
    return buf[:148] + b"%06o\0" % sum(buf) + buf[155:]  # the checksum, summed with its field as spaces


def _open_source(member: Member) -> IO[bytes]:
    try:
        if not stat.S_ISREG(os.stat(member.source).st_mode):  # type: ignore[arg-type]
            raise BuildError(f"cannot read {member.source} (for {member.path}): not a regular file")
        return open(member.source, "rb")  # type: ignore[arg-type]
    except OSError as e:
        raise _read_error(member, e) from e


def _read_error(member: Member, e: OSError) -> BuildError:
    return BuildError(f"cannot read {member.source} (for {member.path}): {e.strerror or e}")


# -- helpers -----------------------------------------------------------------


def _synced_digest(f: IO[bytes]) -> tuple[str, int]:
    """fsync ``f`` on a thread while hashing it (both release the GIL): its sha256 and size."""
    failed: list[BaseException] = []

    def sync() -> None:
        try:
            os.fsync(f.fileno())
        except BaseException as e:  # raised below, in the caller's thread
            failed.append(e)

    syncing = threading.Thread(target=sync, name="debship-fsync")
    syncing.start()
    try:
        digest = _sha256_and_size(f)
    finally:
        syncing.join()
    if failed:
        raise failed[0]
    return digest


def _sha256_and_size(f: IO[bytes]) -> tuple[str, int]:
    f.seek(0)
    h, size = hashlib.sha256(), 0
    for chunk in iter(lambda: f.read(_BUFSIZE), b""):
        h.update(chunk)
        size += len(chunk)
    return h.hexdigest(), size
