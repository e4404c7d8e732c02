"""Walking the bundle folders into a ``Plan``: what goes where, with which mode.

Refused here, before anything is written: missing or empty folders, paths
that escape their folder (``..``, symlinks pointing outside), names dpkg
cannot carry, unreadable files, two files with one destination, malformed
units and units whose Exec lines name a script the bundle does not have.
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from . import units as unitfiles
from .config import PackageSpec
from .errors import PlanError
from .layout import Layout

KINDS = ("units", "scripts", "configs")
# Never packaged: VCS and editor litter, Python caches.
SKIP_NAMES = {".git", ".gitkeep", ".gitignore", "__pycache__", ".DS_Store"}
SKIP_SUFFIXES = (".pyc", ".pyo", ".swp", "~", ".orig", ".rej")


@dataclass(frozen=True)
class Entry:
    src: Path
    dest: str          # absolute path on the host
    mode: int
    kind: str          # "file" | "conffile" | "unit"


@dataclass(frozen=True)
class Unit:
    """A packaged unit with the options the maintainer scripts act on."""

    name: str
    enable: bool
    start: bool
    on_upgrade: str
    template: bool
    has_install: bool


@dataclass(frozen=True)
class Plan:
    entries: tuple[Entry, ...]
    units: tuple[Unit, ...]
    startup: str | None        # host path of the startup script

    @property
    def conffiles(self) -> list[str]:
        return [e.dest for e in self.entries if e.kind == "conffile"]


def build(spec: PackageSpec) -> Plan:
    """Every file the package will install, checked; raises PlanError on the first problem."""
    entries = []
    for kind in KINDS:
        folder = spec.folders.get(kind)
        if folder is not None:
            entries += _walk(folder, spec.install[kind], kind, spec)
    _check_collisions(entries, spec)
    units = _units(entries, spec)
    return Plan(entries=tuple(sorted(entries, key=lambda e: e.dest)), units=units,
                startup=_startup(entries, spec))


def _walk(folder: Path, dest_root: str, kind: str, spec: PackageSpec) -> list[Entry]:
    key = f"[tool.debship.folders].{kind}"
    if not folder.is_dir():
        raise PlanError(f"{folder}: {kind} folder is missing; create it or set {key} = false")
    entries = []
    real_root = folder.resolve()
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not _skipped(d))
        for name in sorted(filenames):
            if not _skipped(name):
                src = Path(dirpath) / name
                rel = src.relative_to(folder)
                _check_name(src, rel)
                real = _check_inside(src, real_root, folder)
                _check_readable(src)
                dest = f"{dest_root}/{rel.as_posix()}"
                entries.append(Entry(src=real, dest=dest, mode=_mode(real, kind), kind=_kind(kind)))
        for d in dirnames:
            if (Path(dirpath) / d).is_symlink():
                _check_inside(Path(dirpath) / d, real_root, folder)
                raise PlanError(f"{Path(dirpath) / d}: symlinked folders are not followed; use a real folder")
    if not entries:
        raise PlanError(f"{folder}: {kind} folder is empty; add files to it or set {key} = false")
    return entries


def _skipped(name: str) -> bool:
    return name in SKIP_NAMES or name.endswith(SKIP_SUFFIXES)


def _check_name(src: Path, rel: Path) -> None:
    """dpkg's md5sums and conffiles are line based, and names must be UTF-8."""
    text = str(rel)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise PlanError(f"{os.fsencode(src)!r}: file name is not valid UTF-8; rename it") from None
    if any(c.isspace() or ord(c) < 32 or c == "\x7f" for c in text):
        raise PlanError(f"{str(src)!r}: file name contains whitespace or control characters; rename it")


def _check_inside(path: Path, real_root: Path, folder: Path) -> Path:
    """Follow symlinks only while they stay inside the bundle folder."""
    real = path.resolve()
    if real != real_root and real_root not in real.parents:
        raise PlanError(f"{path}: symlink points outside {folder} (to {real}); copy the file into the bundle")
    if path.is_symlink() and not real.exists():
        raise PlanError(f"{path}: dangling symlink; remove it or point it at a file in the bundle")
    return real


def _check_readable(src: Path) -> None:
    try:
        st = src.stat()
        if not stat.S_ISREG(st.st_mode):
            raise PlanError(f"{src}: not a regular file; only files can be packaged")
        os.close(os.open(src, os.O_RDONLY))
    except PermissionError:
        raise PlanError(f"{src}: cannot read the file (permission denied); fix its permissions") from None
    except OSError as e:
        raise PlanError(f"{src}: cannot read the file ({e.strerror})") from e


def _mode(src: Path, kind: str) -> int:
    """0755 for files executable in the repo, else 0644 (units are never executable)."""
    executable = src.stat().st_mode & 0o111
    return 0o755 if executable and kind != "units" else 0o644


def _kind(kind: str) -> str:
    return {"units": "unit", "configs": "conffile"}.get(kind, "file")


def _check_collisions(entries: list[Entry], spec: PackageSpec) -> None:
    layout = Layout(spec.name)
    reserved = {*layout.doc_files(), layout.manifest}
    seen: dict[str, Path] = {}
    for e in entries:
        if e.dest in reserved:
            raise PlanError(f"{e.src}: would install {e.dest}, which debship generates; rename or move it")
        if e.dest in seen:
            raise PlanError(f"{e.src} and {seen[e.dest]} both install to {e.dest}; rename one "
                            "or change [tool.debship.install]")
        seen[e.dest] = e.src
    dests = set(seen)
    for d in dests:  # a file where another entry needs a folder
        parent = d.rsplit("/", 1)[0]
        while parent:
            if parent in dests:
                raise PlanError(f"{seen[parent]}: installs to {parent}, which {seen[d]} needs as a folder")
            parent = parent.rsplit("/", 1)[0]


def _units(entries: list[Entry], spec: PackageSpec) -> tuple[Unit, ...]:
    provided = {e.dest for e in entries}
    files = [e for e in entries if e.kind == "unit" and e.src.suffix in unitfiles.UNIT_SUFFIXES]
    for name in spec.units:
        if name not in {e.src.name for e in files}:
            raise PlanError(f"[tool.debship.units.\"{name}\"]: no such unit in the units folder; "
                            "fix the name or remove the table")
    parsed = []
    for e in files:
        unit = unitfiles.parse(e.src, _read_text(e.src))
        _check_exec_paths(e.src, unit, spec, provided)
        parsed.append(_unit(unit, spec))
    unitfiles.systemd_verify([e.src for e in files], provided)
    return tuple(parsed)


def _read_text(src: Path) -> str:
    try:
        return src.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PlanError(f"{src}: unit file is not UTF-8 text") from None


def _check_exec_paths(src: Path, unit: unitfiles.UnitFile, spec: PackageSpec, provided: set[str]) -> None:
    """An Exec line pointing into our own install folders must name a file we ship."""
    ours = tuple(f"{spec.install[k]}/" for k in ("scripts", "configs") if spec.folders.get(k) is not None)
    for key, path in unitfiles.exec_paths(unit):
        if path.startswith(ours) and path not in provided:
            raise PlanError(f"{src}: {key}= runs {path}, which is not in the bundle; add it to "
                            f"{spec.folders.get('scripts') or 'the scripts folder'} or fix the path")


def _unit(unit: unitfiles.UnitFile, spec: PackageSpec) -> Unit:
    opts = spec.unit_options(unit.name)
    enable = opts.enable if opts.enable is not None else (unit.has_install and not unit.template)
    if enable and not unit.has_install:
        raise PlanError(f"{unit.name}: enable = true but the unit has no [Install] section; add one "
                        "(e.g. WantedBy=multi-user.target)")
    return Unit(name=unit.name, enable=enable, start=opts.start and not unit.template,
                on_upgrade=opts.on_upgrade, template=unit.template, has_install=unit.has_install)


def _startup(entries: list[Entry], spec: PackageSpec) -> str | None:
    if spec.startup is None:
        return None
    dest = f"{spec.install['scripts']}/{spec.startup}"
    if dest not in {e.dest for e in entries}:
        raise PlanError(f"startup = '{spec.startup}': no such file in {spec.folders.get('scripts')}; "
                        "add it or set startup = false")
    return dest
