"""Walking the bundle folders into a ``Plan``: what goes where, with which mode.

Refused here, before anything is written: missing or empty folders, paths
that escape their folder (``..``, symlinks pointing outside), names dpkg
cannot carry, unreadable files, two files with one destination, malformed
units and units whose Exec lines name a script the bundle does not have.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from . import secrets
from . import units as unitfiles
from .config import UNIT_NAME_RE, PackageSpec
from .errors import PlanError
from .layout import Layout

KINDS = ("units", "scripts", "configs")
# Never packaged: VCS and editor litter, Python caches.
SKIP_NAMES = {".git", ".gitkeep", ".gitignore", "__pycache__", ".DS_Store"}
SKIP_SUFFIXES = (".pyc", ".pyo", ".swp", "~", ".orig", ".rej")
MAX_FILE_BYTES = 2 << 30  # one file over 2 GiB is data, not a script or a config


@dataclass(frozen=True)
class Entry:
    src: Path
    dest: str  # absolute path on the host
    mode: int
    kind: str  # "file" | "conffile" | "unit"


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
    startup: str | None  # host path of the startup script
    warnings: tuple[str, ...] = ()  # what builds but deserves a look (build-deb prints them)

    @property
    def conffiles(self) -> list[str]:
        return [e.dest for e in self.entries if e.kind == "conffile"]


def build(spec: PackageSpec) -> Plan:
    """Every file the package will install, checked; raises PlanError on the first problem."""
    entries: list[Entry] = []
    allowed: set[str] = set()
    for kind in KINDS:
        folder = spec.folders.get(kind)
        if folder is not None and (folder.is_dir() or f"folders.{kind}" in spec.named):
            entries += _walk(folder, spec.install[kind], kind, spec, allowed)
    if not entries:
        raise PlanError(
            f"{spec.project_dir}: nothing to package; add files to units/, scripts/ or configs/ "
            "(or name other folders in [tool.debship.folders])"
        )
    _check_allowed(spec, allowed)
    _check_collisions(entries, spec)
    warnings: list[str] = []
    entries = [_conffile_mode(e, spec, warnings) for e in entries]
    _check_interpreters(entries, spec)
    units = _units(entries, spec, warnings)
    return Plan(
        entries=tuple(sorted(entries, key=lambda e: e.dest)),
        units=units,
        startup=_startup(entries, spec),
        warnings=tuple(warnings),
    )


def _walk(folder: Path, dest_root: str, kind: str, spec: PackageSpec, allowed: set[str]) -> list[Entry]:
    key = f"[tool.debship.folders].{kind}"
    if not folder.is_dir():
        raise PlanError(f"{folder}: {kind} folder is missing; create it, or fix or remove {key}")
    entries = []
    real_root = folder.resolve()
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not _skipped(d))
        for name in sorted(filenames):
            if not _skipped(name):
                entries.append(_entry(Path(dirpath) / name, folder, real_root, dest_root, kind, spec, allowed))
        for d in dirnames:
            if (Path(dirpath) / d).is_symlink():
                _check_inside(Path(dirpath) / d, real_root, folder)
                raise PlanError(f"{Path(dirpath) / d}: symlinked folders are not followed; use a real folder")
    if not entries:
        raise PlanError(f"{folder}: {kind} folder is empty; add files to it or set {key} = false")
    return entries


def _entry(
    src: Path, folder: Path, real_root: Path, dest_root: str, kind: str, spec: PackageSpec, allowed: set[str]
) -> Entry:
    """One bundle file, checked: name, symlinks, type, size, secrets."""
    rel = src.relative_to(folder)
    _check_name(src, rel)
    real = _check_inside(src, real_root, folder)
    _check_readable(src)
    if kind == "units":
        _check_unit_place(src, rel)
    origin = src.relative_to(spec.project_dir).as_posix()
    mode = _mode(real, kind)
    if origin in spec.allow_secrets:
        allowed.add(origin)
        mode = 0o600
    else:
        _check_secret(src, real, origin)
    return Entry(src=real, dest=f"{dest_root}/{rel.as_posix()}", mode=mode, kind=_kind(kind))


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
    if path.is_symlink():
        try:
            os.stat(path)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise PlanError(
                    f"{path}: symlink loop ({os.readlink(path)}); point it at a real file in the bundle or remove it"
                ) from None
    real = Path(os.path.realpath(path))
    if real != real_root and real_root not in real.parents:
        raise PlanError(f"{path}: symlink points outside {folder} (to {real}); copy the file into the bundle")
    if path.is_symlink() and not real.exists():
        raise PlanError(f"{path}: dangling symlink; remove it or point it at a file in the bundle")
    return real


def _check_readable(src: Path) -> None:
    try:
        st = src.stat()
        if not stat.S_ISREG(st.st_mode):
            raise PlanError(
                f"{src}: not a regular file ({_file_type(st.st_mode)}); only files can be "
                "packaged, remove it from the bundle"
            )
        if st.st_size > MAX_FILE_BYTES:
            raise PlanError(
                f"{src}: {st.st_size} bytes is over the {MAX_FILE_BYTES >> 30} GiB limit for one "
                "file; keep large data out of the bundle (fetch it from startup.py)"
            )
        os.close(os.open(src, os.O_RDONLY))
    except PermissionError:
        raise PlanError(f"{src}: cannot read the file (permission denied); fix its permissions") from None
    except OSError as e:
        raise PlanError(f"{src}: cannot read the file ({e.strerror})") from e


def _file_type(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a folder"),
    ):
        if test(mode):
            return name
    return "not a file"


def _check_unit_place(src: Path, rel: Path) -> None:
    """systemd loads units from the top of its folder and drop-ins from <unit>.d/*.conf only."""
    parts = rel.parts
    if len(parts) == 1:
        if src.suffix not in unitfiles.UNIT_SUFFIXES:
            raise PlanError(
                f"{src}: not a unit file name (suffix {src.suffix or 'missing'}); rename it to "
                f"one of {', '.join('*' + s for s in unitfiles.UNIT_SUFFIXES)} or move it to the "
                "scripts or configs folder"
            )
        if not UNIT_NAME_RE.match(src.name):
            raise PlanError(
                f"{src}: '{src.name}' is not a valid unit name; use letters, digits, ':', '_', "
                "'.', '-' and one '@' for a template"
            )
        return
    dropin = len(parts) == 2 and parts[0].endswith(tuple(s + ".d" for s in unitfiles.UNIT_SUFFIXES))
    if not (dropin and src.suffix == ".conf"):
        raise PlanError(
            f"{src}: systemd would not load it from there; put units at the top of the units "
            "folder and drop-ins in <unit>.d/*.conf"
        )


def _check_secret(src: Path, real: Path, origin: str) -> None:
    try:
        found = secrets.scan(real)
    except OSError as e:
        raise PlanError(f"{src}: cannot read the file ({e.strerror})") from e
    if found:
        raise PlanError(
            f"{origin}: looks like {found.kind}; take it out of the bundle, or if it must ship "
            f'add allow-secrets = ["{origin}"] to the debship config (it is then installed 0600)'
        )


def _check_allowed(spec: PackageSpec, allowed: set[str]) -> None:
    for origin in spec.allow_secrets:
        if origin not in allowed:
            raise PlanError(
                f"allow-secrets entry '{origin}': no such file in the bundle folders; fix the path "
                '(relative to the project, like "configs/tls/server.key") or remove it'
            )


def _mode(src: Path, kind: str) -> int:
    """0755 for files executable in the repo, else 0644 (units are never executable)."""
    executable = src.stat().st_mode & 0o111
    return 0o755 if executable and kind != "units" else 0o644


def _conffile_mode(e: Entry, spec: PackageSpec, warnings: list[str]) -> Entry:
    """A conffile is data the admin edits, never run from where dpkg puts it: 0644."""
    if e.kind != "conffile" or not e.mode & 0o111:
        return e
    warnings.append(
        f"{e.src}: executable in the bundle, installed 0644 as the conffile {e.dest}; "
        f"if it is meant to run, move it to {spec.folders.get('scripts') or 'the scripts folder'}"
    )
    return Entry(src=e.src, dest=e.dest, mode=0o644, kind=e.kind)


_PYTHON3 = re.compile(rb"^#!\s*(/usr/bin/|/usr/bin/env\s+)python3(\.\d+)?(\s|$)")


def _check_interpreters(entries: list[Entry], spec: PackageSpec) -> None:
    """lintian's python3-script-but-no-python3-dep: a #!python3 script needs python3 in depends
    (startup.py brings it: the postinst runs it with python3)."""
    if spec.startup is not None or any(
        re.match(r"^python3(-minimal|\.\d+)?$", alt.split()[0].split(":")[0])
        for d in spec.depends
        for alt in d.split("|")
        if alt.strip()
    ):
        return
    for e in entries:
        if e.kind != "file":
            continue
        with open(e.src, "rb") as f:
            first = f.readline(256)
        if _PYTHON3.match(first):
            raise PlanError(
                f"{e.src}: a python3 script ({first.strip().decode(errors='replace')}) but depends "
                'has no python3; add "python3" to depends in the debship config'
            )


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
            raise PlanError(
                f"{e.src} and {seen[e.dest]} both install to {e.dest}; rename one or change [tool.debship.install]"
            )
        seen[e.dest] = e.src
    dests = set(seen)
    for d in dests:  # a file where another entry needs a folder
        parent = d.rsplit("/", 1)[0]
        while parent:
            if parent in dests:
                raise PlanError(f"{seen[parent]}: installs to {parent}, which {seen[d]} needs as a folder")
            parent = parent.rsplit("/", 1)[0]


def _units(entries: list[Entry], spec: PackageSpec, warnings: list[str]) -> tuple[Unit, ...]:
    provided = {e.dest for e in entries}
    files = [e for e in entries if e.kind == "unit" and e.src.suffix in unitfiles.UNIT_SUFFIXES]
    for name in spec.units:
        if name not in {e.src.name for e in files}:
            raise PlanError(
                f'[tool.debship.units."{name}"]: no such unit in the units folder; fix the name or remove the table'
            )
    parsed, known = [], set()
    names = {e.src.name for e in files}
    for e in files:
        unit = unitfiles.parse(e.src, _read_text(e.src))
        warnings += unit.warnings
        known |= {f"{e.src.name}:{n}" for n in unit.warned_lines}
        unitfiles.check_users(e.src, unit, spec.host_accounts)
        warnings += unitfiles.check_triggers(e.src, unit, names)
        _check_exec_paths(e.src, unit, spec, provided)
        parsed.append(_unit(unit, spec))
    for e in entries:
        if e.kind == "unit" and e.src.suffix == ".conf":  # a drop-in: units/<unit>.d/<name>.conf
            unit_type = "." + e.dest.rsplit("/", 2)[-2][:-2].rsplit(".", 1)[-1]
            dropin = unitfiles.parse(e.src, _read_text(e.src), dropin_for=unit_type)
            warnings += dropin.warnings
            unitfiles.check_users(e.src, dropin, spec.host_accounts)
            _check_exec_paths(e.src, dropin, spec, provided)
    warnings += unitfiles.systemd_verify([e.src for e in files], provided, known)
    return tuple(parsed)


def _read_text(src: Path) -> str:
    try:
        return src.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PlanError(f"{src}: unit file is not UTF-8 text; save it as UTF-8") from None


def _check_exec_paths(src: Path, unit: unitfiles.UnitFile, spec: PackageSpec, provided: set[str]) -> None:
    """An Exec line pointing into our own install folders must name a file we ship."""
    ours = tuple(f"{spec.install[k]}/" for k in ("scripts", "configs") if spec.folders.get(k) is not None)
    for key, line, path in unitfiles.exec_paths(unit):
        if path.startswith(ours) and path not in provided:
            raise PlanError(
                f"{src}:{line}: {key}= runs {path}, which is not in the bundle; add it to "
                f"{spec.folders.get('scripts') or 'the scripts folder'} or fix the path"
            )


def _unit(unit: unitfiles.UnitFile, spec: PackageSpec) -> Unit:
    opts = spec.unit_options(unit.name)
    enable = opts.enable if opts.enable is not None else (unit.has_install and not unit.template)
    if enable and not unit.has_install:
        raise PlanError(
            f"{unit.name}: enable = true but the unit has no [Install] section; add one "
            "(e.g. WantedBy=multi-user.target)"
        )
    return Unit(
        name=unit.name,
        enable=enable,
        start=opts.start and not unit.template,
        on_upgrade=opts.on_upgrade,
        template=unit.template,
        has_install=unit.has_install,
    )


def _startup(entries: list[Entry], spec: PackageSpec) -> str | None:
    if spec.startup is None:
        return None
    dest = f"{spec.install['scripts']}/{spec.startup}"
    if dest not in {e.dest for e in entries} and "startup" not in spec.named:
        return None  # the default startup.py, and the project has none
    if dest not in {e.dest for e in entries}:
        raise PlanError(
            f"startup = '{spec.startup}': no such file in {spec.folders.get('scripts')}; add it or set startup = false"
        )
    return dest
