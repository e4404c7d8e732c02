"""Reading a built .deb back: its control fields and debship's manifest.

``ship`` is handed a .deb, not a project: everything it needs to know (name,
version, which units to check, the health command) is read from the package
itself, so any .deb built by debship ships the same way.
"""
from __future__ import annotations

import hashlib
import io
import lzma
import gzip
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from .debfile import BuiltDeb
from .errors import ShipError
from .layout import Layout
from .manifest import Manifest

AR_MAGIC = b"!<arch>\n"


@dataclass(frozen=True)
class PackageInfo(BuiltDeb):
    """A .deb on disk, with debship's manifest when it has one."""

    manifest: Manifest = field(default_factory=Manifest.empty)
    conffiles: dict = field(default_factory=dict)      # host path -> md5 of this package's version of it

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def health(self) -> str | None:
        return self.manifest.health

    @property
    def keep_versions(self) -> int:
        return self.manifest.keep_versions


def read_package(path: Path) -> PackageInfo:
    """Control fields, checksum and manifest of the .deb at ``path``."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise ShipError(f"{path}: cannot read the package ({e.strerror}); build it with build-deb") from e
    members = _ar_members(blob, path)
    fields = parse_control(_extract(members, "control.tar", "./control", path).decode())
    for key in ("Package", "Version", "Architecture"):
        if key not in fields:
            raise ShipError(f"{path}: control file has no {key} field; rebuild the package")
    name, version = fields["Package"], fields["Version"]
    try:
        manifest = Manifest.from_json(_extract(members, "data.tar", "." + Layout(name).manifest, path), name, version)
    except KeyError:
        manifest = Manifest.empty(name, version)  # not built by debship: no units to check, no health command
    return PackageInfo(path=path, name=fields["Package"], version=fields["Version"],
                       architecture=fields["Architecture"], sha256=hashlib.sha256(blob).hexdigest(),
                       size=len(blob), manifest=manifest, conffiles=_conffile_md5s(members, path))


def _conffile_md5s(members: dict, path: Path) -> dict:
    """Each conffile of the package with its md5 (from the control area's md5sums)."""
    try:
        listed = _extract(members, "control.tar", "./conffiles", path).decode().split()
    except KeyError:
        return {}
    try:
        sums = _extract(members, "control.tar", "./md5sums", path).decode().splitlines()
    except KeyError:
        sums = []
    md5 = {"/" + rel.strip(): digest for digest, _, rel in (l.partition("  ") for l in sums) if rel}
    return {c: md5.get(c, "") for c in listed}


def parse_control(text: str) -> dict:
    """deb822 fields of one paragraph (continuation lines joined with newlines)."""
    fields: dict[str, str] = {}
    key = None
    for line in text.splitlines():
        if line[:1] in (" ", "\t") and key:
            fields[key] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return fields


def _ar_members(blob: bytes, path: Path) -> dict:
    if not blob.startswith(AR_MAGIC):
        raise ShipError(f"{path}: not a Debian package (no ar header); pass the .deb that build-deb wrote")
    members, pos = {}, len(AR_MAGIC)
    while pos + 60 <= len(blob):
        header = blob[pos:pos + 60]
        name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58].decode().strip())
        members[name] = blob[pos + 60:pos + 60 + size]
        pos += 60 + size + (size % 2)
    return members


def _extract(members: dict, prefix: str, name: str, path: Path) -> bytes:
    for member, data in members.items():
        if member.startswith(prefix):
            with tarfile.open(fileobj=io.BytesIO(_decompress(member, data, path))) as tar:
                f = tar.extractfile(name)
                if f is None:
                    raise KeyError(name)
                return f.read()
    raise ShipError(f"{path}: no {prefix}.* member; the package is damaged, rebuild it")


def _decompress(member: str, data: bytes, path: Path) -> bytes:
    if member.endswith(".xz"):
        return lzma.decompress(data)
    if member.endswith(".gz"):
        return gzip.decompress(data)
    if member.endswith(".zst"):
        try:
            import zstandard
        except ImportError:
            raise ShipError(f"{path}: zstd package; pip install 'debship[zstd]' to read it") from None
        return zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return data


def name_only(name: str) -> PackageInfo:
    """A package known only by its name: what --rollback, --to-version and --list need."""
    return PackageInfo(path=Path(), name=name, version="", architecture="all", sha256="", size=0)
