"""Two .debs → a ``Diff`` as plain data: what a host would see change on upgrade.

Control fields, files (content, mode, owner, symlink target), conffiles, systemd
units by directive and by debship's enable/start/on-upgrade, maintainer scripts
as unified diffs.  ``compare`` reads the two files and nothing else, each once and in
bounded memory (``read``); ``builder.dist`` finds ``NAME=VERSION`` in ``<project>/dist``.

Left out on purpose, because they differ between any two builds without changing
what lands on a host: tar mtimes, the compression, member order, and the
``md5sums`` control file (its every change is a file's content change, reported
as such).  What the version bump changes for real is reported: ``Version``, the
changelog under /usr/share/doc, the version inside debship's manifest and in the
maintainer scripts' comments and log lines.
"""

from __future__ import annotations

import collections
import difflib
import io
import json
import lzma
import os
import tarfile
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import NamedTuple

from .debinfo import read_errors
from .debsecrets import is_secret
from .errors import PackageError, PlanError
from .layout import Layout

UNIT_DIRS = (
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/etc/systemd/system",
    "/lib/systemd/user",
    "/usr/lib/systemd/user",
)
SCRIPT_ORDER = ("preinst", "postinst", "prerm", "postrm", "conffiles")
NOT_COMPARED = ("control", "md5sums")  # control: field by field; md5sums: implied by the files
FIX = "pass a .deb file (as debship build or dpkg-deb write them)"
SECRET = "(secret, not shown)"  # the old and new content of an admitted secret
TEXT_LIMIT = 1 << 20  # unit files, conffiles and manifests kept for diffs
CHUNK = 1 << 14  # bytes read, decoded and hashed at a time (bounded memory per side; 64 KiB: +0.8 MiB)
UNIT_SUFFIXES = (".service", ".socket", ".timer", ".path", ".mount", ".target")  # builder.units'


class _ArError(ValueError):
    """The ar container is not one (python-debian's messages, which debship has always shown)."""


READ_ERRORS = (*read_errors(), _ArError)  # what reading a damaged .deb raises


@dataclass(frozen=True)
class Package:
    """One side of the diff."""

    path: str
    name: str
    version: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Change:
    """One value that differs; ``None`` on the side that does not have it."""

    name: str
    old: object
    new: object


@dataclass(frozen=True)
class FileChange:
    path: str
    kind: str  # file, dir, symlink, hardlink, other (the new one)
    changes: tuple  # Change: type, content (sha256), size, mode, owner, target
    diff: str = ""  # unified diff of a changed conffile's text
    version_only: bool = False  # the text differs only in the version number (the manifest)
    secret: bool = False  # an admitted secret (not readable by others): contents never shown


@dataclass(frozen=True)
class Directive:
    """Every value of ``key`` in ``[section]`` on each side (systemd keys may repeat)."""

    section: str
    key: str
    old: tuple
    new: tuple


@dataclass(frozen=True)
class UnitChange:
    name: str
    status: str  # added, removed, changed
    directives: tuple = ()  # Directive
    options: tuple = ()  # Change: enable, start, on-upgrade (debship's manifest)
    diff: str = ""  # text diff when a side is not a unit our parser reads


@dataclass(frozen=True)
class ScriptChange:
    name: str  # preinst … postrm, conffiles, or any other control member
    status: str  # added, removed, changed
    diff: str
    version_only: bool = False  # differs only where the old version became the new one


@dataclass(frozen=True)
class Diff:
    old: Package
    new: Package
    control: tuple = ()  # Change per control field
    added: tuple = ()  # paths; folders end in '/'
    removed: tuple = ()
    changed: tuple = ()  # FileChange
    conffiles_changed: tuple = ()
    units: tuple = ()  # UnitChange
    scripts: tuple = ()  # ScriptChange
    manifest: tuple = ()  # Change of debship's manifest (health, keep_versions, startup)

    @property
    def empty(self) -> bool:
        return not (
            self.control or self.added or self.removed or self.changed or self.units or self.scripts or self.manifest
        )

    def as_dict(self) -> dict:
        """The --json object: lists of names first, details after."""
        pairs = lambda cs: {c.name: {"old": c.old, "new": c.new} for c in cs}  # noqa: E731
        return {
            "old": asdict(self.old),
            "new": asdict(self.new),
            "identical": self.empty,
            "control": [c.name for c in self.control],
            "added": list(self.added),
            "removed": list(self.removed),
            "changed": [f.path for f in self.changed],
            "conffiles_changed": list(self.conffiles_changed),
            "units_changed": [u.name for u in self.units],
            "scripts_changed": [s.name for s in self.scripts],
            "details": {
                "control": pairs(self.control),
                "files": {
                    f.path: {
                        "kind": f.kind,
                        "changes": pairs(f.changes),
                        "diff": f.diff,
                        "version_only": f.version_only,
                        "secret": f.secret,
                    }
                    for f in self.changed
                },
                "units": {
                    u.name: {
                        "status": u.status,
                        "options": pairs(u.options),
                        "diff": u.diff,
                        "directives": [asdict(d) for d in u.directives],
                    }
                    for u in self.units
                },
                "scripts": {
                    s.name: {"status": s.status, "diff": s.diff, "version_only": s.version_only} for s in self.scripts
                },
                "manifest": pairs(self.manifest),
            },
        }


# -- reading one side ---------------------------------------------------------


class _Entry(NamedTuple):  # one per member and side: a tuple, no per-object dict
    kind: str
    mode: int
    owner: str
    target: str = ""
    sha256: bytes = b""  # the raw digest (half the memory of its hex; 2,000 files a side add up)
    size: int = 0


@dataclass(frozen=True)
class _Side:
    package: Package
    fields: dict  # control field -> value, in the file's order
    control: dict  # other control members -> bytes
    conffiles: tuple
    files: dict  # host path -> _Entry
    texts: dict  # host path -> bytes (unit files, conffiles, the manifest)
    manifest: dict


def read(path: Path, pool=None, ahead: int = 1, digest: tuple[str, int] | None = None) -> _Side:
    """Everything ``compare`` looks at in the .deb at ``path``.  With ``pool`` (an Executor), a
    data.tar.xz of several blocks is decoded on it, ``ahead`` blocks in front of the reader.

    The .deb is read once, front to back: the ar members by their headers, the control
    archive into memory (it is small), the data archive as a stream (``CHUNK`` bytes at a
    time, each member hashed as it passes; no member list is kept).  python-debian is used
    only for what debship does not read itself: the control file's fields (after the data
    archive, when its decoder's memory is free again) and a data archive that is neither
    xz nor uncompressed (gzip, zstd, bzip2)."""
    sha, size = digest or _digest(path)
    try:
        with open(path, "rb") as f:
            parts = _ar_parts(f)
            cname = _part(parts, "control.tar")
            control = _control(f, cname, *parts[cname])
            text = control.pop("control", None)
            conffiles = tuple(
                line.strip() for line in control.get("conffiles", b"").decode().splitlines() if line.strip()
            )
            dname = _part(parts, "data.tar")
            files, texts = _read_data(path, f, dname, *parts[dname], pool, ahead, set(conffiles))
        if text is None:
            raise KeyError("no control file in control.tar")
        fields = _fields(text)
    except READ_ERRORS as e:
        raise PackageError(f"{path}: not a readable Debian package ({e}); {FIX}") from e
    missing = [k for k in ("Package", "Version") if k not in fields]
    if missing:
        raise PackageError(f"{path}: control file has no {missing[0]} field; {FIX}")
    package = Package(str(path), fields["Package"], fields["Version"], sha, size)
    return _Side(package, fields, control, conffiles, files, texts, _manifest(texts, package.name))


def _ar_parts(f) -> dict:
    """name -> (offset, size) of the members of the ar archive ``f``, as dpkg-deb reads them."""
    if f.read(8) != b"!<arch>\n":
        raise _ArError("Unable to find global header")
    parts, pos = {}, 8
    while True:
        f.seek(pos)
        header = f.read(60)
        if not header:
            return parts
        if len(header) < 60 or header[58:60] != b"`\n":
            raise _ArError("Unable to find the header of an ar member: the file is cut short or damaged")
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(header[48:58])
        parts.setdefault(name, (pos + 60, size))
        pos += 60 + size + size % 2


def _part(parts: dict, prefix: str) -> str:
    for name in parts:
        if name == prefix or name.startswith(prefix + "."):
            return name
    raise KeyError(f"no {prefix}.* member")


def _control(f, name: str, offset: int, size: int) -> dict:
    """The control archive's members, read whole (it is small); zstd through python-debian."""
    if name.endswith(".zst"):
        from debian.debfile import DebFile  # here: it decompresses zstd with the unzstd command

        with DebFile(f.name) as deb:
            return _control_members(deb.control.tgz())
    data = os.pread(f.fileno(), size, offset)
    if len(data) != size:
        raise EOFError(f"the file ends inside its {name} member")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
        return _control_members(tar)


def _read_data(path, f, name: str, offset: int, size: int, pool, ahead: int, conffiles: set):
    blocks = _xz_blocks(path) if pool is not None and name == "data.tar.xz" else None
    if blocks is not None:
        raw = _BlockReader(path, *blocks, pool, ahead)
        source = io.BufferedReader(raw, CHUNK)
    elif name in ("data.tar.xz", "data.tar"):
        raw = source = _Decoded(f.fileno(), name, offset, size)  # its read() hands over liblzma's bytes
    else:
        from debian.debfile import DebFile  # here: gzip, zstd, bzip2 data archives

        with DebFile(str(path)) as deb:
            return _data(deb.data.tgz(), conffiles)
    with raw, tarfile.open(fileobj=source, mode="r|", bufsize=CHUNK) as tar:
        return _data(tar, conffiles, direct=True)


def _fields(text: bytes) -> dict:
    from debian.deb822 import Deb822  # here: after the data archive's decoder is gone

    return dict(Deb822(text))


class _Decoded(io.RawIOBase):
    """The tar inside a data.tar.xz (or an uncompressed data.tar) member, decoded as it is
    read: ``CHUNK`` bytes of input at a time, never more output than asked for."""

    def __init__(self, fd: int, name: str, offset: int, size: int):
        self._fd, self._name, self._pos, self._end = fd, name, offset, offset + size
        self._xz = lzma.LZMADecompressor() if name.endswith(".xz") else None

    def readable(self) -> bool:
        return True

    def _input(self) -> bytes:
        data = os.pread(self._fd, min(CHUNK, self._end - self._pos), self._pos)
        if not data and self._pos < self._end:
            raise EOFError(f"the file ends inside its {self._name} member")
        self._pos += len(data)
        return data

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` decoded bytes (``CHUNK`` when not said), as liblzma hands them over."""
        size = size if size is not None and size > 0 else CHUNK
        if self._xz is None:
            data = os.pread(self._fd, min(size, self._end - self._pos), self._pos)
            self._pos += len(data)
            return data
        while True:
            if self._xz.eof:  # the end of one .xz stream: another may follow, after padding
                rest = self._xz.unused_data.lstrip(b"\0")
                while not rest and self._pos < self._end:
                    rest = self._input().lstrip(b"\0")
                if not rest:
                    return b""
                self._xz = lzma.LZMADecompressor()
                try:
                    data = self._xz.decompress(rest, size)
                except lzma.LZMAError:  # not a stream: trailing bytes, ignored as Python's lzma.open does
                    self._pos = self._end
                    return b""
            elif self._xz.needs_input:
                data = self._input()
                if not data:
                    raise EOFError(f"{self._name} ends before its xz stream does")
                data = self._xz.decompress(data, size)
            else:
                data = self._xz.decompress(b"", size)
            if data:
                return data

    def readinto(self, out) -> int:
        data = self.read(len(out))
        out[: len(data)] = data
        return len(data)


def _digest(path: Path) -> tuple[str, int]:
    try:
        with open(path, "rb") as f:
            return _hash(f, False)[0], os.fstat(f.fileno()).st_size
    except OSError as e:
        raise PackageError(f"{path}: cannot read the package ({e.strerror}); check the path and permissions") from e


def _xz_blocks(path: Path):
    """(stream flags, blocks) of the .deb's data.tar.xz when it has more than one block, else None."""
    with open(path, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            return None
        pos = 8
        while True:
            f.seek(pos)
            header = f.read(60)
            if len(header) < 60:
                return None
            name, size = header[:16].decode("ascii", "replace").strip().rstrip("/"), int(header[48:58])
            if name.startswith("data.tar"):
                from .compress import xz_block_table

                table = xz_block_table(f, pos + 60, size) if name == "data.tar.xz" else None
                return table if table is not None and len(table[1]) > 1 else None
            pos += 60 + size + size % 2


class _BlockReader(io.RawIOBase):
    """The decoded bytes of a multi-block .xz stream: the blocks are independent, so they are
    decoded on a thread pool, in order, at most ``ahead`` of them beyond the one being read
    (memory: that many decoded blocks, debship's are 8 MiB)."""

    def __init__(self, path: Path, flags: bytes, blocks: list, pool, ahead: int):
        self._file = open(path, "rb")
        self._flags, self._todo, self._pool = flags, iter(blocks), pool
        self._ahead = max(1, ahead)
        self._pending: collections.deque = collections.deque()
        self._current = memoryview(b"")

    def readable(self) -> bool:
        return True

    def _decode(self, block) -> bytes:
        from .compress import xz_decode_block

        start, padded, unpadded, usize = block
        data = os.pread(self._file.fileno(), padded, start)
        if len(data) != padded:
            raise EOFError("the data archive ends inside an xz block")
        return xz_decode_block(self._flags, data, unpadded, usize)

    def _fill(self) -> None:
        while len(self._pending) < self._ahead:
            block = next(self._todo, None)
            if block is None:
                return
            self._pending.append(self._pool.submit(self._decode, block))

    def readinto(self, out) -> int:
        while not len(self._current):
            self._fill()
            if not self._pending:
                return 0
            self._current = memoryview(self._pending.popleft().result())
            self._fill()  # the next block decodes while this one is read
        n = min(len(out), len(self._current))
        out[:n] = self._current[:n]
        self._current = self._current[n:]
        return n

    def close(self) -> None:
        for future in self._pending:
            future.cancel()
        for future in self._pending:
            if not future.cancelled():
                future.exception()  # wait: the file is still being read
        self._pending.clear()
        self._file.close()
        super().close()


def _control_members(tar: tarfile.TarFile) -> dict:
    """name -> bytes of the control archive's files; "control" too (its fields are read from it)."""
    found = {}
    for m in tar.getmembers():
        name = _norm(m.name)
        if m.isfile() and (name == "control" or name not in NOT_COMPARED):
            found.setdefault(name, tar.extractfile(m).read())
    return found


def _data(tar: tarfile.TarFile, conffiles: set, direct: bool = False) -> tuple[dict, dict]:
    """(files, texts) of a data archive.  ``direct``: ``tar`` is read as a stream, and a
    member's bytes are taken from the stream itself, right after its header (tarfile's
    file object per member, and its three layers of copies, cost more than the hashing)."""
    files, texts, owners = {}, {}, {}
    while True:
        m = tar.next()
        if m is None:
            break
        tar.members.clear()  # tarfile keeps every member it read; nothing here needs them
        if not _norm(m.name):
            continue  # the archive's root folder
        path = "/" + _norm(m.name)
        owner = f"{m.uname or m.uid}:{m.gname or m.gid}"
        owner = owners.setdefault(owner, owner)  # one string per owner, not per file
        if m.isfile():
            keep = (
                m.size <= TEXT_LIMIT
                and (path in conffiles or _maybe_unit(path) or _maybe_manifest(path))
                and not is_secret(m.mode)
            )  # an admitted secret's text is never kept
            member = _Member(tar.fileobj, m.size) if direct and not m.issparse() else tar.extractfile(m)
            sha, data = _hash(member, keep, raw=True)
            files[path] = _Entry("file", m.mode, owner, sha256=sha, size=m.size)
            if keep:
                texts[path] = data
        else:
            kind = "dir" if m.isdir() else "symlink" if m.issym() else "hardlink" if m.islnk() else "other"
            files[path] = _Entry(kind, m.mode, owner, target=m.linkname if kind in ("symlink", "hardlink") else "")
    return files, texts


class _Member:
    """The next ``size`` bytes of a tar stream: a member's contents, read after its header."""

    def __init__(self, stream, size: int):
        self._stream, self._left = stream, size

    def read(self, n: int) -> bytes:
        data = self._stream.read(min(n, self._left))
        if len(data) < min(n, self._left):
            raise tarfile.ReadError("unexpected end of data")
        self._left -= len(data)
        return data


def _hash(f, keep: bool, raw: bool = False) -> tuple:
    """sha256 of a member read in chunks (hex, or the digest's bytes when ``raw``), and its
    bytes when ``keep`` (small files only)."""
    h, kept = _sha256()(), []
    for chunk in iter(lambda: f.read(CHUNK), b""):
        h.update(chunk)
        if keep:
            kept.append(chunk)
    return h.digest() if raw else h.hexdigest(), b"".join(kept)


def _sha256():
    """hashlib's sha256, imported on first use (the digests --json shows).  Calling libcrypto's
    low-level SHA256_* through ctypes would save ~1.5 MiB of OpenSSL 3's provider tables, but
    those calls are deprecated and a hand-made binding is not worth that much."""
    import hashlib

    return hashlib.sha256


def _norm(name: str) -> str:
    """A tar member's name as a path below '/': './etc/x' and '/etc/x/' -> 'etc/x', './' -> ''."""
    name = name[2:] if name.startswith("./") else name
    return "" if name == "." else name.strip("/")


def _maybe_unit(path: str) -> bool:
    return path.endswith(UNIT_SUFFIXES)


def _maybe_manifest(path: str) -> bool:
    return path.startswith("/usr/share/debship/") and path.endswith(".json")


def _manifest(texts: dict, name: str) -> dict:
    try:
        data = json.loads(texts.get(Layout(name).manifest, b"{}"))
    except ValueError:
        return {}  # not debship's: no units options to compare
    return data if isinstance(data, dict) else {}


# -- comparing ----------------------------------------------------------------


def compare(old_path: Path, new_path: Path, workers: int | None = None) -> Diff:
    """What differs from the .deb at ``old_path`` to the one at ``new_path``.

    ``workers`` threads (default: one per CPU) share the work: with two, the packages
    are read at the same time, each decoded as a stream (liblzma releases the GIL);
    beyond two, the threads left over decode the blocks of a data.tar.xz that has
    several (debship's writer, ``xz -T``) ahead of the two readers, one block per side
    for every two threads (each block in flight holds its decoded bytes: 8 MiB for
    debship's).  ``workers=1`` reads one package after the other.  The result is the
    same either way."""
    workers = workers or os.cpu_count() or 1
    _give_back()
    if workers == 1:
        return _compare(*_read_both(Path(old_path), Path(new_path), None, False, 1))
    extra = workers - 2
    if extra <= 0:
        return _compare(*_read_both(Path(old_path), Path(new_path), None, True, 1))
    from concurrent.futures import ThreadPoolExecutor  # here: only the block decoders need a pool

    with ThreadPoolExecutor(extra, thread_name_prefix="debdiff-xz") as pool:
        return _compare(*_read_both(Path(old_path), Path(new_path), pool, True, max(1, extra // 2)))


def _give_back() -> None:
    """glibc's malloc_trim: the heap pages that imports left free go back to the system before
    the decoders take their dictionaries (~0.7 MiB of the CLI's peak; a few ms)."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (ImportError, OSError, AttributeError):  # not glibc: nothing to give back this way
        pass


class _Beside(threading.Thread):
    """``fn(*args)`` on a thread of its own; ``result()`` waits and returns or raises."""

    def __init__(self, fn, *args):
        super().__init__(name="debdiff-side", daemon=True)
        self._call, self._value, self._error = (fn, args), None, None
        self.start()

    def run(self) -> None:
        fn, args = self._call
        try:
            self._value = fn(*args)
        except BaseException as e:  # handed to result()
            self._error = e

    def result(self):
        self.join()
        if self._error is not None:
            raise self._error
        return self._value


def _read_both(old_path: Path, new_path: Path, pool, beside: bool, ahead: int) -> tuple[_Side, _Side]:
    if not beside:
        old = read(old_path)
        new_digest = _digest(new_path)
        if new_digest == (old.package.sha256, old.package.size):  # the same bytes: read once
            return old, replace(old, package=replace(old.package, path=str(new_path)))
        return old, read(new_path, digest=new_digest)
    other = _Beside(_digest, new_path)
    old_digest = _digest(old_path)
    new_digest = other.result()
    if new_digest == old_digest:
        old = read(old_path, pool, ahead, old_digest)
        return old, replace(old, package=replace(old.package, path=str(new_path)))
    new = _Beside(read, new_path, pool, ahead, new_digest)
    try:
        old = read(old_path, pool, ahead, old_digest)
    finally:
        new.join()  # on an error in the old package, that one is reported
    return old, new.result()


def _compare(old: _Side, new: _Side) -> Diff:
    changed = _changed_files(old, new)
    conffiles = set(old.conffiles) | set(new.conffiles)
    return Diff(
        old=old.package,
        new=new.package,
        control=_changes(old.fields, new.fields),
        added=tuple(_label(p, new.files[p]) for p in sorted(new.files.keys() - old.files.keys())),
        removed=tuple(_label(p, old.files[p]) for p in sorted(old.files.keys() - new.files.keys())),
        changed=changed,
        conffiles_changed=tuple(f.path for f in changed if f.path in conffiles),
        units=_unit_changes(old, new),
        scripts=_script_changes(old, new),
        manifest=_changes(
            _without(old.manifest, "name", "version", "units"), _without(new.manifest, "name", "version", "units")
        ),
    )


def _changes(old: dict, new: dict) -> tuple:
    """A Change per key whose value differs, in the new side's order, then the removed keys."""
    keys = list(new) + [k for k in old if k not in new]
    return tuple(Change(k, old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k))


def _without(d: dict, *keys: str) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def _label(path: str, entry: _Entry) -> str:
    return path + "/" if entry.kind == "dir" else path


def _changed_files(old: _Side, new: _Side) -> tuple:
    out = []
    for path in sorted(old.files.keys() & new.files.keys()):
        a, b = old.files[path], new.files[path]
        changes = _changes(_facts(a), _facts(b))
        secret = any(e.kind == "file" and is_secret(e.mode) for e in (a, b))
        if changes and secret:  # that it changed, never how: no text, digest or size of a secret
            hidden = tuple(
                Change(c.name, SECRET, SECRET) if c.name == "content" else c for c in changes if c.name != "size"
            )
            out.append(FileChange(_label(path, b), b.kind, hidden, secret=True))
        elif changes:
            diff = _text_diff(old.texts.get(path), new.texts.get(path), path, old, new) if path in new.conffiles else ""
            out.append(
                FileChange(
                    _label(path, b),
                    b.kind,
                    changes,
                    diff,
                    _version_only(old.texts.get(path), new.texts.get(path), old, new),
                )
            )
    return tuple(out)


def _facts(e: _Entry) -> dict:
    facts = {"type": e.kind, "mode": f"{e.mode:04o}", "owner": e.owner}
    if e.kind == "file":
        facts.update(content=e.sha256.hex(), size=e.size)
    if e.target:
        facts["target"] = e.target
    return facts


def _text_diff(a: bytes | None, b: bytes | None, name: str, old: _Side, new: _Side) -> str:
    """Unified diff of two texts (either may be missing); '' when either is not UTF-8 text."""
    try:
        a_lines = (a or b"").decode().splitlines()
        b_lines = (b or b"").decode().splitlines()
    except UnicodeDecodeError:
        return ""
    return "\n".join(
        difflib.unified_diff(
            a_lines,
            b_lines,
            f"{name} ({old.package.version})" if a is not None else "/dev/null",
            f"{name} ({new.package.version})" if b is not None else "/dev/null",
            lineterm="",
        )
    )


def _script_changes(old: _Side, new: _Side) -> tuple:
    names = sorted(
        old.control.keys() | new.control.keys(),
        key=lambda n: (SCRIPT_ORDER.index(n) if n in SCRIPT_ORDER else len(SCRIPT_ORDER), n),
    )
    out = []
    for name in names:
        a, b = old.control.get(name), new.control.get(name)
        if a != b:
            diff = _text_diff(a, b, name, old, new) or "binary content differs"
            out.append(ScriptChange(name, _status(a, b), diff, _version_only(a, b, old, new)))
    return tuple(out)


def _version_only(a: bytes | None, b: bytes | None, old: _Side, new: _Side) -> bool:
    """True when ``b`` is ``a`` with the old version written as the new one."""
    va, vb = old.package.version.encode(), new.package.version.encode()
    return a is not None and b is not None and a != b and va != vb and a.replace(va, vb) == b


def _status(a, b) -> str:
    return "added" if a is None else "removed" if b is None else "changed"


# -- units --------------------------------------------------------------------


def _units(side: _Side) -> dict:
    """Unit name -> its text, for unit files in systemd's folders or named in the manifest."""
    named = {u.get("name") for u in side.manifest.get("units", []) if isinstance(u, dict)}
    found = {}
    for path, text in sorted(side.texts.items()):
        name = path.rsplit("/", 1)[1]
        if _maybe_unit(path) and (path.rsplit("/", 1)[0] in UNIT_DIRS or name in named):
            found[name] = text
    return found


def _options(side: _Side) -> dict:
    """Unit name -> {enable, start, on-upgrade} from debship's manifest."""
    return {
        u["name"]: {"enable": u.get("enable"), "start": u.get("start"), "on-upgrade": u.get("on_upgrade")}
        for u in side.manifest.get("units", [])
        if isinstance(u, dict) and "name" in u
    }


def _unit_changes(old: _Side, new: _Side) -> tuple:
    """Units by name (a unit moved from /lib to /usr/lib is the same unit), sorted."""
    a_units, b_units = _units(old), _units(new)
    a_opts, b_opts = _options(old), _options(new)
    out = []
    for name in sorted(a_units.keys() | b_units.keys()):
        a, b = a_units.get(name), b_units.get(name)
        options = _changes(a_opts.get(name, {}), b_opts.get(name, {}))
        if a is None or b is None:
            out.append(UnitChange(name, _status(a, b), options=options))
            continue
        directives, diff = _directive_changes(name, a, b)
        if directives or diff or options:  # comments or blank lines only: a changed file
            out.append(UnitChange(name, "changed", directives, options, diff))
    return tuple(out)


def _directive_changes(name: str, a: bytes, b: bytes) -> tuple[tuple, str]:
    """(Directive changes, '') or, when either side does not parse, ((), a text diff)."""
    if a == b:
        return (), ""
    try:
        a_keys, b_keys = _directives(name, a), _directives(name, b)
    except (PlanError, UnicodeDecodeError):  # PlanError: builder.units' parser refused it
        text = "\n".join(
            difflib.unified_diff(
                a.decode(errors="replace").splitlines(),
                b.decode(errors="replace").splitlines(),
                name,
                name,
                lineterm="",
            )
        )
        return (), text
    keys = list(b_keys) + [k for k in a_keys if k not in b_keys]
    return tuple(
        Directive(s, k, tuple(a_keys.get((s, k), ())), tuple(b_keys.get((s, k), ())))
        for s, k in keys
        if a_keys.get((s, k)) != b_keys.get((s, k))
    ), ""


def _directives(name: str, text: bytes) -> dict:
    """(section, key) -> [values], in the file's order, read by builder.units' parser."""
    from . import units as unitfiles  # here: not needed while the packages are read

    unit = unitfiles.parse(Path(name), text.decode())
    found: dict = {}
    for section, pairs in unit.sections.items():
        for key, value in pairs:
            found.setdefault((section, key), []).append(value)
    return found
