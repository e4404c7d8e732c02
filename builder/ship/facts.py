"""Facts about a host: each is a command plus a pure parser of its output
(Convention 6), so the parsers are tested on captured real output and
``ship`` decides from plain data."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from .pin import parse_pin, parse_refused

# Exit status of coreutils `timeout` when the command ran out of time.
TIMED_OUT = 124


@dataclass(frozen=True)
class Installed:
    """What dpkg says of the package: ``ii`` = installed; anything else is unfinished."""

    status: str  # dpkg's abbreviation, e.g. "ii", "iF" (half-configured), "rc" (removed, config kept)
    version: str

    @property
    def ok(self) -> bool:
        return self.status.startswith("ii")

    @property
    def present(self) -> bool:
        """Files or configuration of the package are on the host (not just a memory of it)."""
        return self.status[:2] not in ("un", "pn", "")


@dataclass(frozen=True)
class Boot:
    """Whether the host finished booting: ``state`` is ok, warn, fail or timeout."""

    state: str
    detail: str = ""


def installed_command(name: str) -> list[str]:
    return ["dpkg-query", "-W", "-f=${db:Status-Abbrev}\t${Version}\n", name]


def parse_installed(exit_code: int, stdout: str) -> Installed | None:
    """None when dpkg has never heard of the package or only remembers it as purged."""
    if exit_code != 0 or "\t" not in stdout:
        return None
    status, _, version = stdout.splitlines()[0].partition("\t")
    fact = Installed(status=status.strip(), version=version.strip())
    return fact if fact.present and fact.version else None


CLOUD_INIT, NO_CLOUD_INIT = "cloud-init", "no cloud-init"


def boot_command(timeout: float) -> list[str]:
    """Wait for the boot to finish in one round trip: cloud-init's view when it is installed,
    else systemd's, each under ``timeout`` (``cloud-init status --wait`` has no timeout of its
    own).  The first line says which one answered."""
    script = (
        'if command -v cloud-init >/dev/null 2>&1; then echo "$1"; exec timeout "$3" cloud-init status '
        '--wait --long; fi; echo "$2"; exec timeout "$3" systemctl is-system-running --wait'
    )
    return ["sh", "-c", script, "sh", CLOUD_INIT, NO_CLOUD_INIT, str(int(timeout))]


def parse_boot(exit_code: int, stdout: str, stderr: str) -> Boot:
    which, _, rest = stdout.partition("\n")
    if which == CLOUD_INIT:
        return parse_cloud_init(exit_code, rest + stderr)
    return parse_system_running(exit_code, rest)


def parse_cloud_init(exit_code: int, output: str) -> Boot:
    """0 done; 2 done with recoverable errors (cloud-init 23.4+); 1 failed; 124 our timeout."""
    if exit_code == 0:
        return Boot("ok", "cloud-init done")
    if exit_code == TIMED_OUT:
        return Boot("timeout", "cloud-init still running")
    lines = [l.strip() for l in output.splitlines() if l.strip()]
    errors = [l for l in lines if l.lower().startswith(("error", "- ", "recoverable", "detail"))] or lines[-5:]
    if exit_code == 2:
        return Boot("warn", "cloud-init done with recoverable errors: " + " | ".join(errors))
    return Boot("fail", "cloud-init failed: " + " | ".join(errors))


def parse_system_running(exit_code: int, stdout: str) -> Boot:
    """For images without cloud-init: systemd's own view of the boot."""
    state = (stdout.strip().splitlines() or [""])[-1]
    if exit_code == TIMED_OUT:
        return Boot("timeout", f"systemd still {state or 'starting'}")
    if state == "running":
        return Boot("ok", "systemd: running")
    if state == "degraded":
        return Boot("warn", "systemd: degraded (some unit failed; see systemctl --failed)")
    if state in ("offline", "unknown", ""):
        return Boot("ok", "no cloud-init and systemd is not running: nothing to wait for")
    return Boot("fail", f"systemd: {state}")


SYSTEMD_RUNNING = ["test", "-d", "/run/systemd/system"]
UNIT_PROPERTIES = ("Id", "ActiveState", "SubState", "NRestarts", "UnitFileState")


def unit_state_command(units: list[str]) -> list[str]:
    return ["systemctl", "show", "-p", ",".join(UNIT_PROPERTIES), "--", *units]


def parse_unit_state(stdout: str) -> dict[str, dict]:
    """``systemctl show`` blocks (one per unit, blank-line separated) keyed by unit name."""
    units = {}
    for block in stdout.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if props.get("Id"):
            units[props["Id"]] = props
    return units


def enable_links_command(units: list[str]) -> list[str]:
    """Enable symlinks of ``units``, for hosts where systemd does not run (chroot, image build)."""
    names = " -o ".join(f"-name {shlex.quote(u)}" for u in units)
    return ["sh", "-c", f"find /etc/systemd/system -path '*.wants/*' \\( {names} \\) -printf '%f\\n'"]


def parse_enable_links(stdout: str) -> set[str]:
    return {l.strip() for l in stdout.splitlines() if l.strip()}


BOOT_ID = ["cat", "/proc/sys/kernel/random/boot_id"]


# --- Everything ship decides from, read in one round trip -----------------------------------


@dataclass(frozen=True)
class Conffile:
    """A conffile of the installed package: the md5 dpkg recorded and the one on disk now."""

    path: str
    recorded: str
    current: str | None  # None: the file is gone (deleted by the admin)
    obsolete: bool = False

    @property
    def edited(self) -> bool:
        return self.current != self.recorded and self.recorded != "newconffile"


@dataclass(frozen=True)
class UnitFacts:
    name: str
    enabled: str  # `systemctl is-enabled`: enabled, disabled, masked, static, … or ""
    active: str = ""  # ActiveState when systemd runs, else ""

    @property
    def left_alone(self) -> bool:
        """Disabled or masked by the admin: the maintainer scripts keep that choice."""
        return self.enabled in ("disabled", "masked", "masked-runtime")


@dataclass(frozen=True)
class HostFacts:
    installed: Installed | None
    stored_sha: str | None  # sha256 of the file the new package would be kept as
    kept: tuple  # store.Kept, oldest first
    history: str  # the ship history, for --rollback
    manifest: str  # the installed version's manifest (JSON text, may be "")
    conffiles: tuple[Conffile, ...] = ()
    units: tuple[UnitFacts, ...] = ()
    systemd: bool = False  # systemd runs (not a chroot or an image build)
    audit: str = ""  # `dpkg --audit`: packages dpkg left unfinished
    dpkg_dist: tuple[str, ...] = ()  # <conffile>.dpkg-dist files present
    available: tuple[str, ...] = ()  # versions apt can install (from the configured sources)
    free_kib: tuple[tuple[str, int], ...] = ()  # (folder, KiB free on its filesystem): staging, store
    pinned: str | None = None  # the version debship's apt pin holds the package at
    follows: str | None = None  # the repository URL the host follows (apply --follow), if it does
    refused: tuple[str, ...] = ()  # versions apply --follow rolled back from (its apt preference at -1)

    def free(self, folder: str) -> int | None:
        return dict(self.free_kib).get(folder)

    @property
    def needs_repair(self) -> bool:
        """dpkg was interrupted (``dpkg --audit`` names packages, or ours is not fully installed)."""
        return bool(self.audit) or (
            self.installed is not None and not self.installed.ok and self.installed.status[:2] != "rc"
        )

    @property
    def before(self) -> str | None:
        return self.installed.version if self.installed else None

    def unit(self, name: str) -> UnitFacts | None:
        return next((u for u in self.units if u.name == name), None)


# $1 package, $2 the stored file of the new package (or ""), $3 store, $4 history, $5 manifest,
# $6 debship's apt pin, $7 the follow marker, $8 the refused versions; the rest: unit names to look at (besides the installed package's).
HOST_FACTS_SCRIPT = r"""name=$1 stored=$2 store=$3 history=$4 manifest=$5 pin=$6 follow=$7 refused=$8
shift 8
section() { printf '\n@@%s\n' "$1"; }
section installed
dpkg-query -W -f='${db:Status-Abbrev}\t${Version}\n' "$name" 2>/dev/null
section stored
if [ -n "$stored" ] && [ -f "$stored" ]; then sha256sum < "$stored" | cut -d' ' -f1; fi
section kept
if cd "$store" 2>/dev/null; then
    for f in *.deb; do
        [ -f "$f" ] && [ ! -L "$f" ] || continue
        # kept packages are 0600 root: without sudo, their version comes from the index
        v=$(dpkg-deb -f "$f" Version 2>/dev/null) ||
            v=$(awk -v f="./$f" '/^Version:/ {v=$2} /^Filename:/ && $2 == f {print v; exit}' Packages 2>/dev/null)
        printf '%s\t%s\n' "$f" "$v"
    done
    cd /
fi
section history
cat "$history" 2>/dev/null
section manifest
cat "$manifest" 2>/dev/null
conffiles=$(dpkg-query -W -f='${Conffiles}\n' "$name" 2>/dev/null)
section conffiles
printf '%s\n' "$conffiles" | while read -r path md5 obsolete; do
    [ -n "$path" ] || continue
    cur=$(md5sum < "$path" 2>/dev/null | cut -d' ' -f1)
    printf '%s\t%s\t%s\t%s\n' "$path" "$md5" "${cur:--}" "$obsolete"
done
section dpkg-dist
printf '%s\n' "$conffiles" | while read -r path md5 obsolete; do
    if [ -n "$path" ] && [ -e "$path.dpkg-dist" ]; then echo "$path.dpkg-dist"; fi
done
units=$( { for u in "$@"; do echo "$u"; done
           dpkg-query -L "$name" 2>/dev/null | sed -n 's#^/\(usr/\)\{0,1\}lib/systemd/system/\([^/]*\.[a-z]*\)$#\2#p'
         } | sort -u)
section systemd
if [ -d /run/systemd/system ]; then echo yes; else echo no; fi
section units
for u in $units; do
    printf '%s\t%s\t' "$u" "$(systemctl is-enabled -- "$u" 2>/dev/null)"
    if [ -d /run/systemd/system ]; then systemctl show -p ActiveState --value -- "$u" 2>/dev/null; else echo; fi
done
section pin
cat "$pin" 2>/dev/null
section follow
cat "$follow" 2>/dev/null
section refused
cat "$refused" 2>/dev/null
section audit
dpkg --audit 2>/dev/null
section available
apt-cache -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= madison "$name" 2>/dev/null | cut -d'|' -f2
section space
for d in /var/tmp "$store" "${store%/*}" /var/lib; do
    if [ -d "$d" ]; then printf '%s\t%s\n' "$d" "$(df -Pk "$d" | awk 'NR==2 {print $4}')"; fi
done
exit 0
"""


def managed_command() -> list[str]:
    """The packages that have a debship store on the host."""
    from ..layout import DEBSHIP_STATE

    return ["sh", "-c", 'for d in "$1"/*/; do if [ -d "$d" ]; then basename "$d"; fi; done', "sh", DEBSHIP_STATE]


def parse_managed(stdout: str) -> list[str]:
    return sorted({l.strip() for l in stdout.splitlines() if l.strip()})


def host_facts_command(layout, stored: str, units: list[str]) -> list[str]:
    """One command printing every fact ship needs about ``layout.name`` (run it with sudo: it
    reads conffiles and the store)."""
    return [
        "sh",
        "-c",
        HOST_FACTS_SCRIPT,
        "sh",
        layout.name,
        stored,
        layout.store,
        layout.history,
        layout.manifest,
        layout.apt_pin,
        layout.follow_marker,
        layout.refused,
        *units,
    ]


def parse_host_facts(stdout: str) -> HostFacts:
    """The sections of ``HOST_FACTS_SCRIPT``'s output as one ``HostFacts``."""
    from . import store

    s = _sections(stdout)
    installed = parse_installed(0 if s["installed"] else 1, s["installed"])
    return HostFacts(
        installed=installed,
        stored_sha=(s["stored"].split() or [None])[0],
        kept=tuple(store.parse_list(s["kept"])),
        history=s["history"],
        manifest=s["manifest"],
        conffiles=tuple(_conffile(l) for l in s["conffiles"].splitlines() if l.count("\t") >= 2),
        units=tuple(_unit_facts(l) for l in s["units"].splitlines() if l.strip()),
        systemd=s["systemd"].strip() == "yes",
        audit=s["audit"].strip(),
        available=tuple(dict.fromkeys(l.strip() for l in s["available"].splitlines() if l.strip())),
        free_kib=tuple(_free(l) for l in s["space"].splitlines() if l.count("\t") == 1 and l.split("\t")[1].isdigit()),
        dpkg_dist=tuple(l.strip() for l in s["dpkg-dist"].splitlines() if l.strip()),
        pinned=parse_pin(s["pin"]),
        follows=s["follow"].strip() or None,
        refused=tuple(parse_refused(s["refused"])),
    )


_SECTIONS = (
    "installed",
    "stored",
    "kept",
    "history",
    "manifest",
    "conffiles",
    "dpkg-dist",
    "systemd",
    "units",
    "pin",
    "follow",
    "refused",
    "audit",
    "available",
    "space",
)


def _sections(stdout: str) -> dict[str, str]:
    found = {k: "" for k in _SECTIONS}
    current = None
    for line in stdout.splitlines(keepends=True):
        if line.startswith("@@") and line[2:].strip() in found:
            current = line[2:].strip()
        elif current is not None:
            found[current] += line
    return {k: v.strip("\n") + ("\n" if v.strip("\n") else "") for k, v in found.items()}


def _free(line: str) -> tuple[str, int]:
    folder, kib = line.split("\t")
    return folder, int(kib)


def _conffile(line: str) -> Conffile:
    path, recorded, current, *rest = line.split("\t")
    return Conffile(path, recorded, None if current == "-" else current, bool(rest and rest[0].strip()))


def _unit_facts(line: str) -> UnitFacts:
    name, _, rest = line.partition("\t")
    enabled, _, active = rest.partition("\t")
    return UnitFacts(name.strip(), enabled.strip(), active.strip())
