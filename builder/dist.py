"""Finding a built package by name and version in ``<project>/dist``.

File names drop the epoch (``demo_2.0_all.deb`` holds ``1:2.0``), so each .deb
is matched by the Package and Version fields it holds, read with python-debian.
"""

from __future__ import annotations

from pathlib import Path

from .debdiff import READ_ERRORS
from .errors import DebshipError, PackageNotFound


def resolve(arg: str, project_dir: Path) -> Path:
    """The .deb ``arg`` names: a path, or NAME=VERSION among ``<project>/dist/*.deb``."""
    path = Path(arg)
    if path.is_dir():
        raise PackageNotFound(f"{arg}: is a folder; pass a .deb file or NAME=VERSION")
    if path.exists():
        return path
    name, sep, wanted = arg.partition("=")
    if not (sep and name and wanted and "/" not in arg):
        raise PackageNotFound(
            f"{arg}: no such file; pass the path of a .deb, "
            f"or NAME=VERSION to take it from {Path(project_dir) / 'dist'}"
        )
    return _find_in_dist(name, wanted, Path(project_dir) / "dist")


def _find_in_dist(name: str, wanted: str, dist: Path) -> Path:
    if not dist.is_dir():
        raise PackageNotFound(
            f"{name}={wanted}: no {dist} folder to look in; build there with `debship build` or pass the path of a .deb"
        )
    from . import version as versions  # here: a path given as such needs neither (diff's memory)

    found = _dist_packages(dist)
    matches = [p for p, (n, v) in found.items() if n == name and _same_version(v, wanted)]
    if len(matches) > 1:
        raise PackageNotFound(
            f"{name}={wanted}: {len(matches)} files in {dist} have it "
            f"({', '.join(p.name for p in matches)}); pass one of them as a path"
        )
    if not matches:
        versions_found = sorted({v for n, v in found.values() if n == name}, key=versions.sort_key)
        names = sorted({n for n, _v in found.values()})
        have = (
            f"found {name} {', '.join(versions_found)}"
            if versions_found
            else f"no {name} package there; found {', '.join(names)}"
            if names
            else "no .deb there"
        )
        raise PackageNotFound(f"{name}={wanted}: not in {dist} ({have}); build that version or pass the path of a .deb")
    return matches[0]


def _dist_packages(dist: Path) -> dict:
    """path -> (Package, Version) of every readable .deb in ``dist`` (others are skipped)."""
    from debian.debfile import DebFile

    found = {}
    for path in sorted(dist.glob("*.deb")):
        try:
            with DebFile(str(path)) as deb:
                fields = deb.debcontrol()
                found[path] = (fields["Package"], fields["Version"])
        except READ_ERRORS:
            continue
    return found


def _same_version(a: str, b: str) -> bool:
    """Equal as dpkg compares (1.0 == 1.0-0 == 0:1.0); a malformed one only equals itself."""
    from . import version as versions

    try:
        return a == b or versions.compare(a, b) == 0
    except DebshipError:
        return False
