"""The .deb layer the rest of debship shares: the record of a built package, its file name, and
reading a .deb back (with python-debian, as ``debdiff`` does).

``ship`` is handed a .deb, not a project: everything it needs to know (name,
version, which units to check, the health command) is read from the package
itself, so any .deb built by debship ships the same way.  The writer (``debfile``)
returns the same ``BuiltDeb`` record and names its output with ``deb_filename``.
"""

from __future__ import annotations

import lzma
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ShipError
from .layout import Layout
from .manifest import Manifest

AR_MAGIC = b"!<arch>\n"


@dataclass(frozen=True)
class BuiltDeb:
    """A .deb on disk: what ``debfile.write()`` produced, or what ``read_package`` found in one
    (then with debship's manifest, when it has one, and its conffiles)."""

    path: Path
    name: str
    version: str
    architecture: str
    sha256: str
    size: int
    manifest: Manifest = field(default_factory=Manifest.empty)
    conffiles: dict = field(default_factory=dict)  # host path -> md5 of this package's version of it

    def as_dict(self) -> dict:
        """The file's identity (``build-deb --json``)."""
        return {
            "path": str(self.path),
            "name": self.name,
            "version": self.version,
            "architecture": self.architecture,
            "sha256": self.sha256,
            "size": self.size,
        }

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def health(self) -> str | None:
        return self.manifest.health

    @property
    def keep_versions(self) -> int:
        return self.manifest.keep_versions


PackageInfo = BuiltDeb  # the name the ship side reads it by


def deb_filename(name: str, version: str, architecture: str) -> str:
    """``name_version_arch.deb`` with the epoch dropped, as dpkg-name does."""
    upstream = version.split(":", 1)[1] if ":" in version else version
    return f"{name}_{upstream}_{architecture}.deb"


def read_package(path: Path) -> PackageInfo:
    """Control fields, checksum and manifest of the .deb at ``path``."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(len(AR_MAGIC))
            f.seek(0)
            import hashlib  # here: builder.debdiff reads packages without it (its memory)

            h = hashlib.sha256()
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
            digest, size = h.hexdigest(), f.tell()
    except OSError as e:
        raise ShipError(f"{path}: cannot read the package ({e.strerror}); build it with build-deb") from e
    if head != AR_MAGIC:
        raise ShipError(f"{path}: not a Debian package (no ar header); pass the .deb that build-deb wrote")
    from debian.arfile import ArFile  # here: only reading a package needs python-debian
    from debian.debfile import DebFile

    try:
        names = ArFile(str(path)).getnames()
        for part in ("control.tar", "data.tar"):
            if not any(n.startswith(part) for n in names):
                raise ShipError(f"{path}: no {part}.* member; the package is damaged, rebuild it")
        with DebFile(str(path)) as deb:
            fields = dict(deb.debcontrol())
            name = fields.get("Package", "")
            manifest = _member(deb.data, "." + Layout(name).manifest)
            conffiles = _conffile_md5s(_member(deb.control, "conffiles"), _member(deb.control, "md5sums"))
    except read_errors() as e:
        missing = e.__context__ if isinstance(e.__context__, FileNotFoundError) else None
        if missing is not None:  # python-debian reads zstd members with the unzstd command
            raise ShipError(
                f"{path}: reading it needs {missing.filename or 'unzstd'}, which is not installed; "
                "install zstd (apt-get install zstd)"
            ) from e
        raise ShipError(
            f"{path}: not a readable Debian package ({type(e).__name__}: {e}); the package is damaged, rebuild it"
        ) from e
    for key in ("Package", "Version", "Architecture"):
        if key not in fields:
            raise ShipError(f"{path}: control file has no {key} field; rebuild the package")
    version = fields["Version"]
    # Not built by debship: no manifest, so no units to check and no health command.
    manifest = Manifest.from_json(manifest, name, version) if manifest is not None else Manifest.empty(name, version)
    return PackageInfo(
        path=path,
        name=name,
        version=version,
        architecture=fields["Architecture"],
        sha256=digest,
        size=size,
        manifest=manifest,
        conffiles=conffiles,
    )


def read_errors() -> tuple:
    """What reading a damaged .deb raises: python-debian's ar errors, tar, a compressor, a missing
    unzstd, text that is not UTF-8 (imported when needed: building never reads a .deb)."""
    import tarfile

    from debian.arfile import ArError

    return (
        ArError,
        tarfile.TarError,
        EOFError,
        lzma.LZMAError,
        zlib.error,
        OSError,
        ValueError,
        KeyError,
        UnicodeDecodeError,
    )


def _member(part, name: str) -> bytes | None:
    """A file of the control or data archive, or None when the package has none."""
    return part.get_content(name) if part.has_file(name) else None


def _conffile_md5s(listed: bytes | None, sums: bytes | None) -> dict:
    """Each conffile of the package with its md5 (from the control area's md5sums)."""
    if listed is None:
        return {}
    lines = (sums or b"").decode().splitlines()
    md5 = {"/" + rel.strip(): digest for digest, _, rel in (l.partition("  ") for l in lines) if rel}
    return {c: md5.get(c, "") for c in listed.decode().split()}


def name_only(name: str) -> PackageInfo:
    """A package known only by its name: what --rollback, --to-version and --list need."""
    return PackageInfo(path=Path(), name=name, version="", architecture="all", sha256="", size=0)
