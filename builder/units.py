"""Reading and checking systemd unit files before they are packaged.

Our own parser always runs (syntax, sections, ExecStart); ``systemd-analyze
verify`` runs as a second opinion when it is installed.  Nothing here writes to the
project or the package; what systemd-analyze said is kept in the build cache (``cache``).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import cache
from .errors import PlanError

UNIT_SUFFIXES = (".service", ".socket", ".timer", ".path", ".mount", ".target")
# The section a unit of each type must have (targets need none).
TYPE_SECTION = {".service": "Service", ".socket": "Socket", ".timer": "Timer", ".path": "Path", ".mount": "Mount"}
KNOWN_SECTIONS = {"Unit", "Install", *TYPE_SECTION.values()}
EXEC_KEYS = ("ExecStart", "ExecStartPre", "ExecStartPost", "ExecStop", "ExecStopPost", "ExecReload",
             "ExecCondition")
KEY_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
# Users and groups every Debian host has (base-passwd's passwd.master and group.master).
BASE_USERS = frozenset("root daemon bin sys sync games man lp mail news uucp proxy www-data backup list irc "
                       "_apt".split())
BASE_GROUPS = frozenset("root daemon bin sys adm tty disk lp mail news uucp man proxy kmem dialout fax voice "
                        "cdrom floppy tape sudo audio dip www-data backup operator list irc src shadow utmp "
                        "video sasl plugdev staff games users".split())
_YES = ("1", "yes", "true", "on")


@dataclass(frozen=True)
class UnitFile:
    """What the package needs to know about one unit file."""

    name: str
    sections: dict            # section -> list of (key, value)
    has_install: bool

    @property
    def template(self) -> bool:
        return "@." in self.name

    def values(self, section: str, key: str) -> list[str]:
        return [v for k, v in self.sections.get(section, []) if k == key]


def parse(path: Path, text: str) -> UnitFile:
    """Parse systemd's ini syntax strictly enough to catch what would break on the host."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for lineno, line in _logical_lines(text):
        where = f"{path}:{lineno}"
        if line.startswith("[") :
            if not line.endswith("]") or len(line) < 3:
                raise PlanError(f"{where}: malformed section header '{line}'; write it like [Service]")
            current = line[1:-1]
            if current not in KNOWN_SECTIONS and not current.startswith("X-"):
                raise PlanError(f"{where}: unknown section [{current}] in a {path.suffix} unit; "
                                f"expected one of {', '.join(sorted(KNOWN_SECTIONS))}")
            sections.setdefault(current, [])
            continue
        key, sep, value = line.partition("=")
        if not sep or not KEY_RE.match(key.strip()):
            raise PlanError(f"{where}: expected 'Key=value' or a [Section], found '{line[:60]}'")
        if current is None:
            raise PlanError(f"{where}: '{key.strip()}=' comes before any [Section]; add [Unit] above it")
        sections[current].append((key.strip(), value.strip()))
    unit = UnitFile(name=path.name, sections=sections, has_install=bool(sections.get("Install")))
    _check_type(path, unit)
    return unit


def _logical_lines(text: str):
    """(line number, line) with comments dropped and backslash continuations joined."""
    pending, start = "", 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if not pending:
            start = lineno
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield start, pending + line
        pending = ""
    if pending:
        yield start, pending.strip()


def _check_type(path: Path, unit: UnitFile) -> None:
    section = TYPE_SECTION.get(path.suffix)
    if section and section not in unit.sections:
        raise PlanError(f"{path}: a {path.suffix} unit needs a [{section}] section; add one")
    if path.suffix == ".service":
        types = unit.values("Service", "Type") or ["simple"]
        if not unit.values("Service", "ExecStart") and not (types[-1] == "oneshot" and unit.values("Service", "ExecStop")):
            raise PlanError(f"{path}: service has no ExecStart=; add ExecStart=/usr/lib/<name>/<script>")


def check_users(path: Path, unit: UnitFile, host_accounts: frozenset[str] = frozenset()) -> None:
    """User=, Group= and SupplementaryGroups= must name accounts the host is sure to have.

    The package creates no accounts, so a name that is not on every Debian
    host would make the service fail at start ("Failed to determine user
    credentials").  With DynamicUser=yes systemd makes the user itself;
    ``host_accounts`` (the config's host-accounts) are names the project says
    its hosts have from elsewhere (a dependency's package, the image).
    """
    if any(v.lower() in _YES for v in unit.values("Service", "DynamicUser")):
        return
    users, groups = BASE_USERS | host_accounts, BASE_GROUPS | host_accounts
    for key, known, what in (("User", users, "user"), ("Group", groups, "group"),
                             ("SupplementaryGroups", groups, "group")):
        for value in unit.values("Service", key):
            for name in value.split():
                if name in ("nobody", "nogroup"):
                    raise PlanError(f"{path}: {key}={name} shares its account with every other such service "
                                    "(systemd calls it unsafe); set DynamicUser=yes instead")
                if name not in known and not name.isdigit() and "%" not in name:
                    raise PlanError(f"{path}: {key}={name} names a {what} the package does not create; "
                                    "set DynamicUser=yes (systemd makes the user), use one every Debian "
                                    "host has (root, daemon, www-data …), or list it in host-accounts "
                                    "when a dependency or the image makes it")


def exec_paths(unit: UnitFile) -> list[tuple[str, str]]:
    """(key, absolute path) for every absolute path in the Exec*= lines of a unit."""
    found = []
    for _section, pairs in unit.sections.items():
        for key, value in pairs:
            if key in EXEC_KEYS:
                for word in value.split():
                    word = word.lstrip("-@:+!|")
                    if word.startswith("/"):
                        found.append((key, word))
    return found


def systemd_verify(unit_files: list[Path], provided: set[str]) -> None:
    """Second opinion from ``systemd-analyze verify`` when installed: one run for all units.

    The build machine is not the host: complaints about executables or units
    the host will have (paths we package, units from other packages) are not
    errors here; anything else systemd says about a unit is.  What it said is
    kept in the cache (builder/cache.py) under a hash of the units' names and
    bytes and of the systemd-analyze binary, so an unchanged set is not verified twice.
    """
    tool = shutil.which("systemd-analyze")
    if not tool or not unit_files:
        return
    units = [(f.name, f.read_bytes()) for f in unit_files]
    for line in _verify_output(tool, units).splitlines():
        if _is_real_problem(line, provided):
            origin = next((f for f in unit_files if f.name in line), unit_files[0])
            raise PlanError(f"{origin}: systemd-analyze verify: {line.strip()}")


_VERIFY_ARGS = ("verify", "--man=no", "--generators=no")


def _verify_output(tool: str, units: list[tuple[str, bytes]]) -> str:
    """systemd-analyze's stderr for these units, from the cache when it has them."""
    st = os.stat(tool)
    name = cache.key(tool, f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}", *_VERIFY_ARGS,
                     *(part for unit in units for part in unit))
    cached = cache.read("systemd-verify", name)
    if cached is not None:
        return cached.decode("utf-8", "replace")
    import subprocess  # only when the cache does not have the verdict

    with tempfile.TemporaryDirectory(prefix="debship-verify-") as tmp:
        copies = []
        for unit_name, text in units:
            copies.append(Path(tmp) / unit_name)
            copies[-1].write_bytes(text)
        proc = subprocess.run([tool, *_VERIFY_ARGS, *map(str, copies)],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    if proc.returncode >= 0:  # not killed by a signal: what it says is its verdict
        cache.write("systemd-verify", name, proc.stderr.encode())
    return proc.stderr


_IGNORED = (
    "not found",                 # units and paths only the host has
    "No such file or directory",
    "is not executable",
    "Failed to prepare filename",
    "Failed to create",          # namespaces and the like, on a build machine
    "Unit is bound to inactive",
    "Failed to put bus name",
    "Cannot add dependency job",
    "Failed to load configuration",
)


def _is_real_problem(line: str, provided: set[str]) -> bool:
    line = line.strip()
    if not line:
        return False
    if any(p in line for p in provided):
        return False
    return not any(s in line for s in _IGNORED)
