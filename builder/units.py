"""Reading and checking systemd unit files before they are packaged.

The rule is systemd's own: what systemd refuses to load is an error, what it
loads while complaining ("ignoring", "please use ... instead") is a warning.
Our parser always runs and decides the verdict the same way on every build
machine; ``systemd-analyze verify`` runs as a second opinion when installed
(its refusals are errors, its complaints warnings).  Nothing here writes
except the cache of systemd-analyze's answers.  docs/units.md has the list.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import cache
from .errors import PlanError

UNIT_SUFFIXES = (".service", ".socket", ".timer", ".path", ".mount", ".target")
# The section a unit of each type must have (targets need none).
TYPE_SECTION = {".service": "Service", ".socket": "Socket", ".timer": "Timer", ".path": "Path", ".mount": "Mount"}
KNOWN_SECTIONS = {"Unit", "Install", *TYPE_SECTION.values()}
EXEC_KEYS = ("ExecStart", "ExecStartPre", "ExecStartPost", "ExecStop", "ExecStopPost", "ExecReload", "ExecCondition")
# Users and groups every Debian host has (base-passwd's passwd.master and group.master).
BASE_USERS = frozenset(
    "root daemon bin sys sync games man lp mail news uucp proxy www-data backup list irc _apt".split()
)
BASE_GROUPS = frozenset(
    "root daemon bin sys adm tty disk lp mail news uucp man proxy kmem dialout fax voice "
    "cdrom floppy tape sudo audio dip www-data backup operator list irc src shadow utmp "
    "video sasl plugdev staff games users".split()
)
_YES = ("1", "yes", "true", "on")
_BOM = "\ufeff"
# Settings systemd still loads but calls deprecated (systemd 252 .. 257): key -> the fix.
DEPRECATED_KEYS = {
    "MemoryLimit": "use MemoryMax=",
    "CPUShares": "use CPUWeight=",
    "StartupCPUShares": "use StartupCPUWeight=",
    "BlockIOAccounting": "use IOAccounting=",
    "BlockIOWeight": "use IOWeight=",
    "StartupBlockIOWeight": "use StartupIOWeight=",
    "BlockIODeviceWeight": "use IODeviceWeight=",
    "BlockIOReadBandwidth": "use IOReadBandwidthMax=",
    "BlockIOWriteBandwidth": "use IOWriteBandwidthMax=",
    "PermissionsStartOnly": "prefix the Exec lines that need full privileges with '+'",
}
DEPRECATED_VALUES = {
    ("StandardOutput", "syslog"): "systemd turns it into journal; write StandardOutput=journal or drop the line",
    ("StandardOutput", "syslog+console"): "write StandardOutput=journal+console",
    ("StandardError", "syslog"): "systemd turns it into journal; write StandardError=journal or drop the line",
    ("StandardError", "syslog+console"): "write StandardError=journal+console",
    ("KillMode", "none"): "systemd calls it unsafe and will remove it; use KillMode=mixed or control-group",
}
# Keys of systemd releases after 252 (from their NEWS): known, so no "did you mean" for them.
NEWER_KEYS = {
    "OpenFile": 253,
    "RestartSteps": 254,
    "RestartMaxDelaySec": 254,
    "ImportCredential": 254,
    "DelegateSubgroup": 254,
    "MemoryKSM": 254,
    "RootEphemeral": 254,
    "SurviveFinalKillSignal": 255,
    "SetLoginEnvironment": 255,
    "PrivatePIDs": 257,
}
# Interpreters whose first argument that is not an option is the script they run.
_INTERPRETERS = re.compile(r"^(sh|bash|dash|zsh|ksh|perl|python[0-9.]*|ruby[0-9.]*|node|nodejs|php[0-9.]*)$")
_NO_SCRIPT_OPTIONS = ("-c", "-m", "-e", "-E", "--command")  # the program text follows, not a file


@dataclass(frozen=True)
class Setting:
    section: str
    key: str
    value: str
    line: int


@dataclass(frozen=True)
class UnitFile:
    """What the package needs to know about one unit file."""

    name: str
    sections: dict  # section -> list of (key, value)
    has_install: bool
    settings: tuple[Setting, ...] = ()
    warnings: tuple[str, ...] = ()  # "<file>:<line>: <what systemd would say>; <the fix>"
    warned_lines: frozenset[int] = frozenset()

    @property
    def template(self) -> bool:
        return "@." in self.name

    def values(self, section: str, key: str) -> list[str]:
        return [v for k, v in self.sections.get(section, []) if k == key]


def parse(path: Path, text: str, dropin_for: str | None = None) -> UnitFile:
    """Parse a unit file the way systemd does; raise PlanError where systemd would refuse it.

    Lines systemd ignores with a complaint (unknown sections and keys, a line
    with no '=', deprecated settings) become warnings on the returned unit.
    ``dropin_for`` is the unit type (".service" …) of a drop-in's unit: its
    keys are checked, not the completeness a whole unit needs.
    """
    sections: dict[str, list[tuple[str, str]]] = {}
    settings: list[Setting] = []
    warnings: list[str] = []
    allowed = _sections_for(dropin_for or path.suffix)
    current: str | None = None
    ignored_section = False
    for lineno, line in _logical_lines(text):
        where = f"{path}:{lineno}"
        if line.startswith("["):
            if not line.endswith("]") or len(line) < 3:
                raise PlanError(
                    f"{where}: malformed section header '{line[:60]}' (systemd refuses the unit); "
                    "write it like [Service]"
                )
            current = line[1:-1]
            ignored_section = current not in allowed and not current.startswith("X-")
            if ignored_section:
                warnings.append(
                    f"{where}: unknown section [{current}] in a {dropin_for or path.suffix} unit, "
                    "systemd ignores "
                    f"it{_did_you_mean(current, allowed, '[{}]')}"
                )
            else:
                sections.setdefault(current, [])
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not sep:
            warnings.append(f"{where}: '{line[:60]}' has no '=', systemd ignores the line; write Key=value")
            continue
        if current is None:
            warnings.append(f"{where}: '{key}=' comes before any [Section], systemd ignores it; add [Unit] above it")
            continue
        if ignored_section:
            continue
        if current.startswith("X-") or key.startswith("X-"):
            sections[current].append((key, value))
            continue
        warning = _check_key(current, key, value, allowed)
        if warning:
            warnings.append(f"{where}: {warning}")
            if warning.startswith("unknown key"):
                continue
        sections[current].append((key, value))
        settings.append(Setting(current, key, value, lineno))
    unit = UnitFile(
        name=path.name,
        sections=sections,
        has_install=bool(sections.get("Install")),
        settings=tuple(settings),
        warnings=tuple(warnings),
        warned_lines=frozenset(int(w[len(str(path)) + 1 :].split(":", 1)[0]) for w in warnings),
    )
    if dropin_for is None:
        _check_type(path, unit)
    _check_exec_syntax(path, unit)
    return unit


def _sections_for(suffix: str) -> set[str]:
    section = TYPE_SECTION.get(suffix)
    return {"Unit", "Install", *([section] if section else [])}


def _did_you_mean(word: str, choices, fmt: str = "{}=") -> str:
    import difflib  # only for this message

    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.75)
    return f"; did you mean {fmt.format(close[0])}?" if close else ""


def _check_key(section: str, key: str, value: str, allowed: set[str]) -> str | None:
    """A warning for a key systemd ignores or calls deprecated, else None."""
    from .systemd_keys import KEYS

    known = KEYS.get(section, frozenset())
    if key not in known:
        if key in NEWER_KEYS:
            return (
                f"{key}= is new in systemd {NEWER_KEYS[key]}: Debian 12's systemd 252 ignores it "
                "(Debian 13 has 257); keep it only if every host is newer"
            )
        elsewhere = sorted(s for s in allowed if key in KEYS.get(s, ()))
        hint = f"; it belongs in [{elsewhere[0]}]" if elsewhere else _did_you_mean(key, known)
        hint = hint or "; a newer systemd may know it, else remove it"
        return f"unknown key '{key}' in [{section}], ignored by systemd 252 (Debian 12){hint}"
    if key in DEPRECATED_KEYS:
        return f"{key}= is deprecated in systemd; {DEPRECATED_KEYS[key]}"
    fix = DEPRECATED_VALUES.get((key, value))
    if fix:
        return f"{key}={value} is deprecated in systemd; {fix}"
    return None


def _logical_lines(text: str):
    """(line number, line) as systemd reads them: a leading UTF-8 byte order mark dropped,
    comments dropped (also inside a continued line), backslash continuations joined with a
    space, and a blank line ending a continuation."""
    if text.startswith(_BOM):
        text = text[1:]
    pending, start = None, 0
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if pending is not None and line[:1] in ("#", ";"):
            continue
        if pending is None:
            if not line or line[0] in "#;":
                continue
            start, pending = lineno, ""
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield start, (pending + line).strip()
        pending = None
    if pending:
        yield start, pending.strip()


def _check_type(path: Path, unit: UnitFile) -> None:
    section = TYPE_SECTION.get(path.suffix)
    if section and section not in unit.sections:
        raise PlanError(f"{path}: a {path.suffix} unit needs a [{section}] section; add one")
    needs = _NEEDS_ONE_OF.get(path.suffix)
    if needs and not any(unit.values(needs[0], k) for k in needs[1]):
        raise PlanError(
            f"{path}: a {path.suffix} unit needs one of {', '.join(k + '=' for k in needs[1][:4])} "
            f"… in [{needs[0]}] (systemd refuses it without); add one"
        )
    if path.suffix != ".service":
        return
    types = unit.values("Service", "Type") or ["simple"]
    starts = _effective(unit, "ExecStart")
    oneshot = types[-1] == "oneshot"
    restart = (unit.values("Service", "Restart") or ["no"])[-1]
    if oneshot and restart in ("always", "on-success"):
        raise PlanError(
            f"{path}: Restart={restart} with Type=oneshot (systemd refuses it); use Restart=on-failure, or Type=simple"
        )
    if types[-1] == "dbus" and not unit.values("Service", "BusName"):
        raise PlanError(f"{path}: Type=dbus needs BusName= (systemd refuses it without); add BusName=<name>")
    if not starts and not (oneshot and (_effective(unit, "ExecStop") or unit.values("Unit", "SuccessAction"))):
        raise PlanError(
            f"{path}: service has no ExecStart= (systemd refuses it); add ExecStart=/usr/lib/<name>/<script>"
        )
    if len(starts) > 1 and not oneshot:
        raise PlanError(
            f"{path}: {len(starts)} ExecStart= lines, which systemd allows only for Type=oneshot; "
            "keep one or set Type=oneshot"
        )


# What systemd refuses a unit of each type without: (section, keys).
_NEEDS_ONE_OF = {
    ".socket": (
        "Socket",
        (
            "ListenStream",
            "ListenDatagram",
            "ListenSequentialPacket",
            "ListenFIFO",
            "ListenSpecial",
            "ListenNetlink",
            "ListenMessageQueue",
            "ListenUSBFunction",
        ),
    ),
    ".timer": (
        "Timer",
        (
            "OnCalendar",
            "OnActiveSec",
            "OnBootSec",
            "OnStartupSec",
            "OnUnitActiveSec",
            "OnUnitInactiveSec",
            "OnClockChange",
            "OnTimezoneChange",
        ),
    ),
    ".path": ("Path", ("PathExists", "PathExistsGlob", "PathChanged", "PathModified", "DirectoryNotEmpty")),
}


def _effective(unit: UnitFile, key: str) -> list[Setting]:
    """The Exec lines systemd keeps: an empty assignment resets the list."""
    kept: list[Setting] = []
    for s in unit.settings:
        if s.key == key:
            kept = kept + [s] if s.value else []
    return kept


@dataclass(frozen=True)
class Command:
    """One command of an Exec line: its prefixes, the program and its arguments, unquoted."""

    key: str
    line: int
    prefixes: str
    argv: tuple[str, ...] = field(default_factory=tuple)

    @property
    def program(self) -> str:
        return self.argv[0]


def split_exec(value: str) -> list[tuple[str, list[str]]]:
    """Split an Exec line as systemd does: (prefixes, argv) per command, ';' between commands.

    Quotes ('...' and "...") may start anywhere in a word, backslash escapes
    are C escapes; raises ValueError for unbalanced quoting, as systemd refuses it.
    """
    words = _words(value)
    commands: list[tuple[str, list[str]]] = []
    argv: list[str] = []
    for word, quoted in words:
        if word == ";" and not quoted:
            if argv:
                commands.append(_prefixes(argv))
            argv = []
            continue
        argv.append(word)
    if argv:
        commands.append(_prefixes(argv))
    return commands


def _prefixes(argv: list[str]) -> tuple[str, list[str]]:
    first = argv[0]
    prefixes = ""
    while first[:2] == "!!" or first[:1] in ("-", "@", ":", "+", "!"):
        step = 2 if first[:2] == "!!" else 1
        prefixes, first = prefixes + first[:step], first[step:]
    rest = argv[1:]
    if "@" in prefixes and rest:  # '@' passes the second word as argv[0]
        rest = rest[1:]
    return prefixes, [first, *rest]


_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "s": " ",
    "\\": "\\",
    '"': '"',
    "'": "'",
    ";": ";",
    " ": " ",
}


def _words(value: str) -> list[tuple[str, bool]]:
    words: list[tuple[str, bool]] = []
    i, n = 0, len(value)
    while i < n:
        while i < n and value[i] in " \t\n":
            i += 1
        if i >= n:
            break
        word, quoted = [], False
        while i < n and value[i] not in " \t\n":
            c = value[i]
            if c in "'\"":
                end = value.find(c, i + 1)
                while end != -1 and c == '"' and _escaped(value, end):
                    end = value.find(c, end + 1)
                if end == -1:
                    raise ValueError("unbalanced quoting")
                word.append(_unescape(value[i + 1 : end]))
                quoted, i = True, end + 1
            elif c == "\\" and i + 1 < n:
                size = 4 if value[i + 1] == "x" and re.match(r"[0-9a-fA-F]{2}", value[i + 2 : i + 4]) else 2
                word.append(_unescape(value[i : i + size]))
                quoted, i = True, i + size
            else:
                word.append(c)
                i += 1
        words.append(("".join(word), quoted))
    return words


def _escaped(text: str, pos: int) -> bool:
    backslashes = 0
    while pos > 0 and text[pos - 1] == "\\":
        backslashes, pos = backslashes + 1, pos - 1
    return backslashes % 2 == 1


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "x" and re.match(r"[0-9a-fA-F]{2}", text[i + 2 : i + 4]):
                out.append(chr(int(text[i + 2 : i + 4], 16)))
                i += 4
                continue
            out.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def commands(unit: UnitFile) -> list[Command]:
    """Every command of every Exec line, parsed (the unit has passed ``parse``)."""
    found = []
    for s in unit.settings:
        if s.key in EXEC_KEYS and s.value:
            for prefixes, argv in split_exec(s.value):
                found.append(Command(s.key, s.line, prefixes, tuple(argv)))
    return found


def _check_exec_syntax(path: Path, unit: UnitFile) -> None:
    """What systemd refuses in an Exec line: unbalanced quotes, no program, a relative path."""
    for s in unit.settings:
        if s.key not in EXEC_KEYS or not s.value:
            continue
        where = f"{path}:{s.line}"
        try:
            parsed = split_exec(s.value)
        except ValueError:
            raise PlanError(
                f"{where}: {s.key}= has unbalanced quoting (systemd refuses the unit); "
                "close the quote or escape it with a backslash"
            ) from None
        for _prefixes, argv in parsed:
            program = argv[0]
            if not program:
                raise PlanError(
                    f"{where}: {s.key}= has no program after its prefixes; write {s.key}=/usr/bin/<program>"
                )
            if not program.startswith("/") and "/" in program:
                raise PlanError(
                    f"{where}: {s.key}= runs '{program}', neither an absolute path nor a plain "
                    "name systemd looks up in its PATH (systemd refuses the unit); write the full path"
                )


def exec_paths(unit: UnitFile) -> list[tuple[str, int, str]]:
    """(key, line, absolute path) of what each Exec line runs: the program, and the script when
    the program is a shell or interpreter given a script file (``/bin/bash /usr/lib/x/run.sh``).
    Arguments are never taken for paths; paths with specifiers (%i) are left out."""
    found = []
    for cmd in commands(unit):
        for path in (cmd.program, _script(cmd.argv)):
            if path and path.startswith("/") and "%" not in path.replace("%%", ""):
                found.append((cmd.key, cmd.line, path.replace("%%", "%")))
    return found


def _script(argv: tuple[str, ...]) -> str | None:
    if not _INTERPRETERS.match(os.path.basename(argv[0])):
        return None
    for arg in argv[1:]:
        if arg in _NO_SCRIPT_OPTIONS or arg.startswith("--command"):
            return None
        if arg.startswith("-"):
            continue
        return arg
    return None


def check_triggers(path: Path, unit: UnitFile, bundle_units: set[str]) -> list[str]:
    """A socket must have the service it activates in the bundle (systemd refuses it otherwise);
    a timer's or path unit's missing unit is a warning (another package may ship it).
    Returns warnings; raises PlanError for a socket."""
    suffix = path.suffix
    key = {".socket": "Service", ".timer": "Unit", ".path": "Unit"}.get(suffix)
    if key is None:
        return []
    section = TYPE_SECTION[suffix]
    named = unit.values(section, key)
    stem = path.name[: -len(suffix)]
    if named:
        target = named[-1]
    elif suffix == ".socket" and any(v.lower() in _YES for v in unit.values("Socket", "Accept")):
        target = f"{stem}@.service"
    else:
        target = f"{stem}.service"
    if target in bundle_units or "%" in target:
        return []
    if suffix == ".socket" and not named:
        raise PlanError(
            f"{path}: the socket activates {target}, which is not in the units folder "
            f"(systemd refuses to start it); add units/{target} or set Service= in [Socket]"
        )
    return [
        f"{path}: {key}={target} is not in the units folder; it must come from another package "
        "(add it to depends) or the socket/timer cannot start"
    ]


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
    for key, known, what in (
        ("User", users, "user"),
        ("Group", groups, "group"),
        ("SupplementaryGroups", groups, "group"),
    ):
        for value in unit.values("Service", key):
            for name in value.split():
                if name in ("nobody", "nogroup"):
                    raise PlanError(
                        f"{path}: {key}={name} shares its account with every other such service "
                        "(systemd calls it unsafe); set DynamicUser=yes instead"
                    )
                if name not in known and not name.isdigit() and "%" not in name:
                    raise PlanError(
                        f"{path}: {key}={name} names a {what} the package does not create; "
                        "set DynamicUser=yes (systemd makes the user), use one every Debian "
                        "host has (root, daemon, www-data …), or list it in host-accounts "
                        "when a dependency or the image makes it"
                    )


def systemd_verify(unit_files: list[Path], provided: set[str], known: set[str] = frozenset()) -> list[str]:
    """Second opinion from ``systemd-analyze verify`` when installed: one run for all units.

    Where systemd refuses a unit ("bad unit file setting", "fatal error",
    "Refusing") it is an error; anything else it says is returned as warnings,
    except complaints about what only the host has (executables, other
    packages' units) and lines ``known`` already has ("<file>:<line>" of our
    own warnings).  What it said is kept in the cache (builder/cache.py) under
    a hash of the units' names and bytes and of the systemd-analyze binary,
    with the names of the bundle files taken out, so a cached answer names the
    bundle file of the current build, never a temporary copy.
    """
    tool = shutil.which("systemd-analyze")
    if not tool or not unit_files:
        return []
    by_name = {f.name: f for f in unit_files}
    output = _verify_output(tool, [(f.name, f.read_bytes()) for f in unit_files])
    said: dict[str, list[str]] = {}
    for raw in output.splitlines():
        line = raw.strip()
        if not line or any(p in line for p in provided) or any(s in line for s in _IGNORED):
            continue
        name = _unit_of(line, by_name)
        said.setdefault(name, []).append(line)
    warnings = []
    for name, lines in said.items():
        origin = by_name.get(name, unit_files[0])
        specific = [ln for ln in lines if not ln.startswith("Unit ")]
        if any(m in ln for ln in lines for m in _FATAL):
            detail = next((ln for ln in specific if not any(m in ln for m in _FATAL)), None) or (specific or lines)[0]
            raise PlanError(f"{_located(detail, origin)}: systemd-analyze verify refuses the unit: {_message(detail)}")
        for ln in specific:
            if _location(ln) not in known:
                warnings.append(f"{_located(ln, origin)}: systemd-analyze verify: {_message(ln)}")
    return warnings


_FATAL = ("bad unit file setting", "fatal error", "Refusing", "failed to load properly")
_VERIFY_ARGS = ("verify", "--man=no", "--generators=no")
_LOCATED = re.compile(r"^(?P<file>[^\s:]+)(?::(?P<line>\d+))?: (?P<msg>.*)$")


def _unit_of(line: str, by_name: dict) -> str:
    m = _LOCATED.match(line)
    if m and m.group("file") in by_name:
        return m.group("file")
    return next((n for n in by_name if n in line), next(iter(by_name)))


def _location(line: str) -> str:
    m = _LOCATED.match(line)
    return f"{m.group('file')}:{m.group('line')}" if m and m.group("line") else ""


def _located(line: str, origin: Path) -> str:
    m = _LOCATED.match(line)
    return f"{origin}:{m.group('line')}" if m and m.group("line") else str(origin)


def _message(line: str) -> str:
    m = _LOCATED.match(line)
    return m.group("msg") if m else line


def _verify_output(tool: str, units: list[tuple[str, bytes]]) -> str:
    """systemd-analyze's stderr for these units, with the temporary folder taken out of it
    ("a.service:5: ..."), from the cache when it has them."""
    st = os.stat(tool)
    name = cache.key(
        "v2",
        tool,
        f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}",
        *_VERIFY_ARGS,
        *(part for unit in units for part in unit),
    )
    cached = cache.read("systemd-verify", name)
    if cached is not None:
        return cached.decode("utf-8", "replace")
    import subprocess  # only when the cache does not have the verdict

    with tempfile.TemporaryDirectory(prefix="debship-verify-") as tmp:
        copies = []
        for unit_name, text in units:
            copies.append(Path(tmp) / unit_name)
            copies[-1].write_bytes(text)
        proc = subprocess.run(
            [tool, *_VERIFY_ARGS, *map(str, copies)],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        stderr = proc.stderr.replace(f"{tmp}/", "").replace(tmp, ".")
    if proc.returncode >= 0:  # not killed by a signal: what it says is its verdict
        cache.write("systemd-verify", name, stderr.encode())
    return stderr


_IGNORED = (
    "not found",  # units and paths only the host has
    "No such file or directory",
    "is not executable",
    "Failed to prepare filename",
    "Failed to create",  # namespaces and the like, on a build machine
    "Unit is bound to inactive",
    "Failed to put bus name",
    "Cannot add dependency job",
    "Failed to load configuration",
    "not loaded, socket cannot be started",  # check_triggers decides this, the same on every machine
    "Unknown key",
    "Unknown section",
    "Missing '='",
    "Assignment outside of section",  # parse() warns
    "Unknown lvalue",
)
