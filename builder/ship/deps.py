"""What apt will do besides installing the package: its own simulation (``apt-get install -s``),
parsed here, and the age of the host's package lists.

Pure commands and parsers (Convention 6), tested on captured real output
(tests/unit/captured/apt-sim-*.txt); ``actions.simulate`` runs them before an install.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import commands


@dataclass(frozen=True)
class Unmet:
    """One dependency apt cannot satisfy: ``package`` needs one of ``alternatives``
    ((dependency, apt's reason) pairs, e.g. ("no-such-tool", "it is not installable"))."""

    package: str
    kind: str  # Depends | Pre-Depends | …
    alternatives: tuple[tuple[str, str], ...]

    @property
    def wanted(self) -> str:
        return " | ".join(dep for dep, _ in self.alternatives)

    def explain(self) -> str:
        reasons = {reason for _, reason in self.alternatives}
        verb = "depends on" if "Depends" in self.kind else f"{self.kind.lower()}"
        if reasons <= {"it is not installable"}:
            return f"{self.package} {verb} {self.wanted}, which no source on this host provides"
        found = [r.removesuffix(" is to be installed") for r in reasons if r.endswith(" is to be installed")]
        if found and len(self.alternatives) == 1:
            return f"{self.package} {verb} {self.wanted}, but the host's sources have only {found[0]}"
        return f"{self.package} {verb} {self.wanted}, which apt cannot install ({'; '.join(sorted(reasons))})"


@dataclass(frozen=True)
class Simulation:
    installs: tuple[tuple[str, str], ...] = ()  # (name, version) new packages
    upgrades: tuple[tuple[str, str, str], ...] = ()  # (name, from, to), downgrades included
    removes: tuple[tuple[str, str], ...] = ()  # (name, version)
    unmet: tuple[Unmet, ...] = ()
    error: str = ""  # apt's E: line when it did not resolve

    @property
    def ok(self) -> bool:
        return not self.unmet and not self.error

    def besides(self, name: str) -> Simulation:
        """The changes to packages other than ``name``."""
        return Simulation(
            tuple(i for i in self.installs if i[0] != name),
            tuple(u for u in self.upgrades if u[0] != name),
            tuple(r for r in self.removes if r[0] != name),
            self.unmet,
            self.error,
        )

    def summary(self) -> str:
        parts = []
        if self.installs:
            parts.append("installs " + ", ".join(f"{n} {v}" for n, v in self.installs))
        if self.upgrades:
            parts.append("changes " + ", ".join(f"{n} {a} -> {b}" for n, a, b in self.upgrades))
        if self.removes:
            parts.append("removes " + ", ".join(f"{n} {v}" for n, v in self.removes))
        return "; ".join(parts) or "no other package changes"

    def as_dict(self) -> dict:
        return {
            "install": [{"package": n, "version": v} for n, v in self.installs],
            "upgrade": [{"package": n, "from": a, "to": b} for n, a, b in self.upgrades],
            "remove": [{"package": n, "version": v} for n, v in self.removes],
            "unmet": [u.explain() for u in self.unmet],
        }


def simulate_command(target: str, downgrade: bool = False, reinstall: bool = False) -> list[str]:
    """apt's own simulation of the install ``commands.apt_install`` would run (stdout and stderr together)."""
    argv = [
        *commands.NONINTERACTIVE,
        "apt-get",
        "install",
        "-s",
        "-q",
        "--no-install-recommends",
        # write no cache and no planner log (eipp.log.xz): a dry run changes nothing
        "-o",
        "Dir::Cache::pkgcache=",
        "-o",
        "Dir::Cache::srcpkgcache=",
        "-o",
        "Dir::Log::Planner=/dev/null",
        *(["--allow-downgrades"] if downgrade else []),
        *(["--reinstall"] if reinstall else []),
        target,
    ]
    return ["sh", "-c", '"$@" 2>&1', "sh", *argv]


_INST = re.compile(r"^Inst (\S+) (?:\[([^\]]+)\] )?\((\S+)")
_REMV = re.compile(r"^Remv (\S+)(?: \[([^\]]+)\])?")
_UNMET = re.compile(r"^(?:(\S+) : )?(?:([A-Za-z-]+): )?(.+?) but (.+?)( or)?$")


def parse_simulation(output: str) -> Simulation:
    installs, upgrades, removes, unmet = [], [], [], []
    error = ""
    in_unmet = False
    package, kind, alts = "", "", []
    for raw in output.splitlines():
        line = raw.strip()
        if m := _INST.match(line):
            name, old, new = m.groups()
            (upgrades.append((name, old, new)) if old else installs.append((name, new)))
        elif m := _REMV.match(line):
            removes.append((m.group(1), m.group(2) or ""))
        elif line.startswith("E:"):
            error = error or line[2:].strip()
            in_unmet = False
        elif line == "The following packages have unmet dependencies:":
            in_unmet = True
        elif in_unmet and (m := _UNMET.match(line)):
            package = m.group(1) or package
            kind = m.group(2) or kind
            alts.append((m.group(3), m.group(4)))
            if not m.group(5):
                unmet.append(Unmet(package, kind, tuple(alts)))
                alts = []
        elif in_unmet and not line:
            in_unmet = False
    return Simulation(tuple(installs), tuple(upgrades), tuple(removes), tuple(unmet), error)


# The age in seconds of the host's newest package list (Release/InRelease of a downloaded source),
# or "missing"; local file: sources (named _path_…, debship's store among them) and lists whose
# file name starts with $1 (debship's own repository) do not count.
LISTS_AGE_SCRIPT = r"""skip=$1 newest=
for f in /var/lib/apt/lists/*Release; do
    [ -f "$f" ] && [ ! -L "$f" ] || continue
    case "${f##*/}" in _*) continue;; "$skip"*) [ -n "$skip" ] && continue;; esac
    t=$(stat -c %Y "$f")
    if [ -z "$newest" ] || [ "$t" -gt "$newest" ]; then newest=$t; fi
done
if [ -z "$newest" ]; then echo missing; else echo $(( $(date +%s) - newest )); fi
"""


_APT_QUOTED = frozenset(b'\\|{}[]<>"^~_=!@#$%^&*')


def lists_prefix(url: str) -> str:
    """How the names of a source's files in /var/lib/apt/lists begin: apt's ``URItoFileName`` (no
    scheme, no user or password, ``_ ~ = …``, spaces and non-ASCII bytes as ``%xx``, "/" as "_")."""
    rest = url.split("://", 1)[-1].rstrip("/")
    host, sep, path = rest.partition("/")
    text = (host.rsplit("@", 1)[-1] + sep + path).encode()
    quoted = "".join(f"%{b:02x}" if b in _APT_QUOTED or b <= 0x20 or b >= 0x7F else chr(b) for b in text)
    return quoted.replace("/", "_") + "_"


def lists_age_command(own_repo_url: str | None = None) -> list[str]:
    return ["sh", "-c", LISTS_AGE_SCRIPT, "sh", lists_prefix(own_repo_url) if own_repo_url else ""]


def parse_lists_age(stdout: str) -> float | None:
    """Seconds since the host's lists were downloaded; None when there are none."""
    text = stdout.strip()
    return float(text) if text.lstrip("-").isdigit() else None


UPDATE_ALL = [*commands.NONINTERACTIVE, "apt-get", "update", "-q"]
