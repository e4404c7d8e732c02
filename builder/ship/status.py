"""``debship status``: what runs where, read-only.

For each host: the installed version and dpkg's state, whether apt holds or
pins the package, its units (enabled, active), the package's health command
run once now, the last ship from the host's history (when, which action, from
which version, by whom) and the versions kept for rollback.  It reads the same
facts ``ship`` reads (one round trip, ``facts.HOST_FACTS_SCRIPT``), plus one
command for apt's hold and pin and one for the health command; it takes no
lock and changes nothing on the host.  The facts are read with sudo, as ship
reads them (the store and conffiles may be readable by root only).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..debinfo import PackageInfo
from ..errors import DebshipError, ShipError
from ..manifest import Manifest
from . import actions, store
from .executor import Connector, HostRun
from .options import ShipOptions
from .sshconfig import HostSpec


@dataclass(frozen=True)
class UnitState:
    name: str
    enabled: str  # systemctl is-enabled (enabled, disabled, masked, static …)
    active: str  # ActiveState, "" where systemd does not run


@dataclass(frozen=True)
class HostStatus:
    host: str
    package: str = ""
    installed: str | None = None  # the version dpkg has (None: not installed)
    dpkg: str = ""  # dpkg's status abbreviation ("ii" is fully installed)
    held: str | None = None  # "hold" (apt-mark), "pin <version> (<priority>)"; None: nothing holds it
    units: tuple[UnitState, ...] = ()
    checked: tuple[str, ...] = ()  # units the package enables and starts: these must be active
    systemd: bool = False
    health: str = "none"  # ok | fail | skip | none (no health command)
    health_detail: str = ""
    last: store.Shipped | None = None
    kept: tuple[str, ...] = ()
    error: str = ""  # the host could not be read (unreachable, no package …)
    follows: str | None = None  # the repository the host follows (apply --follow): not push-managed
    refused: tuple[str, ...] = ()  # versions apply --follow rolled back from and will not take again

    def problems(self, expect: str | None = None) -> list[str]:
        """Why this host is not fine: unreachable, not installed, unfinished, on another version
        than ``expect``, a unit failed or inactive, the health command failing."""
        if self.error:
            return [self.error]
        found = []
        if self.installed is None:
            found.append("not installed")
        elif not self.dpkg.startswith("ii"):
            found.append(f"dpkg state {self.dpkg} (unfinished; ship again to repair)")
        if expect is not None and self.installed != expect:
            found.append(f"at {self.installed or 'nothing'}, expected {expect}")
        if self.systemd:
            left_alone = ("disabled", "masked", "masked-runtime")  # the admin's choice, as ship keeps it
            down = [
                u.name
                for u in self.units
                if u.name in self.checked and u.enabled not in left_alone and u.active != "active"
            ]
            down += [u.name for u in self.units if u.active == "failed" and u.name not in down]
            if down:
                found.append("not active: " + ", ".join(down))
        if self.health == "fail":
            found.append("health failed: " + self.health_detail)
        return found

    def as_dict(self, expect: str | None = None) -> dict:
        return {
            "host": self.host,
            "package": self.package,
            "installed": self.installed,
            "dpkg": self.dpkg,
            "held": self.held,
            "systemd": self.systemd,
            "units": [
                {"name": u.name, "enabled": u.enabled, "active": u.active, "checked": u.name in self.checked}
                for u in self.units
            ],
            "health": self.health,
            "health_detail": self.health_detail,
            "last_ship": self.last.as_dict() if self.last else None,
            "kept": list(self.kept),
            "follows": self.follows,
            "refused": list(self.refused),
            "error": self.error or None,
            "ok": not self.problems(expect),
            "problems": self.problems(expect),
        }


# $1 package: apt's hold (apt-mark showhold) and any pin on it (apt-cache policy's priorities).
HOLD_SCRIPT = r"""apt-mark showhold "$1" 2>/dev/null | sed 's/^/hold /'
apt-cache -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= policy "$1" 2>/dev/null | sed -n 's/^ *\(\*\*\* \)\{0,1\}\([^ ]*\) \([0-9-][0-9]*\)$/version \2 \3/p'
exit 0
"""


def hold_command(name: str) -> list[str]:
    return ["sh", "-c", HOLD_SCRIPT, "sh", name]


def parse_hold(name: str, stdout: str) -> str | None:
    """ "hold" when apt-mark holds the package; "pin V (P)" when a version has priority >= 1000
    (apt installs it even as a downgrade); None when nothing holds it."""
    lines = stdout.splitlines()
    if f"hold {name}" in (line.strip() for line in lines):
        return "hold"
    for line in lines:
        parts = line.split()
        if len(parts) == 3 and parts[0] == "version" and re.fullmatch(r"-?\d+", parts[2]) and int(parts[2]) >= 1000:
            return f"pin {parts[1]} ({parts[2]})"
    return None


def host_status(
    spec: HostSpec,
    pkg: PackageInfo,
    opts: ShipOptions,
    health_timeout: float = 30.0,
    connector: Connector | None = None,
) -> HostStatus:
    """One host's status; a failure to reach or read it is the row's ``error``."""
    if connector is None:
        from .ssh import connect as connector
    run = HostRun(pkg, spec, opts, lambda event: None, connector)
    try:
        return _read(run, health_timeout)
    except DebshipError as e:
        return HostStatus(run.host, run.pkg.name, error=" ".join(str(e).split()))
    finally:
        if run.conn is not None:
            run.conn.close()


def _read(run: HostRun, health_timeout: float) -> HostStatus:
    run.connect()
    if not run.pkg.name:
        run.keep(actions.find_package(run.context()))
    now = run.read_facts(sudo=True)
    name = run.pkg.name
    installed = now.installed.version if now.installed else None
    held = parse_hold(name, run.conn.run(hold_command(name)).stdout) if installed else None
    units = tuple(UnitState(u.name, u.enabled, u.active) for u in now.units)
    manifest = Manifest.from_json(now.manifest, name) if now.manifest.strip() and installed else None
    health, detail = _health(run, manifest, installed, now.systemd, health_timeout)
    history = store.parse_history(now.history)
    return HostStatus(
        run.host,
        name,
        installed,
        now.installed.status if now.installed else "",
        held,
        units,
        tuple(manifest.checked_units()) if manifest else (),
        now.systemd,
        health,
        detail,
        history[-1] if history else None,
        tuple(k.version or f"{k.filename} (unreadable)" for k in now.kept),
        follows=now.follows,
        refused=now.refused,
    )


def _health(
    run: HostRun, manifest: Manifest | None, installed: str | None, systemd: bool, timeout: float
) -> tuple[str, str]:
    """The installed version's health command, once (no retries: this is how it is now)."""
    if installed is None or manifest is None or not manifest.health:
        return ("none", "no health command" if installed else "")
    if not systemd:
        return ("skip", "systemd is not running on the host: services are not started")
    r = run.conn.run(
        ["env", f"DEBSHIP_VERSION={installed}", f"DEBSHIP_PACKAGE={run.pkg.name}", "sh", "-c", manifest.health],
        timeout=timeout,
    )
    out = " ".join((r.stdout.strip() or r.stderr.strip()).split())[:300]
    return ("ok", out) if r.ok else ("fail", f"exit {r.exit_code}: {out}")


def status(pkg: PackageInfo, hosts: Sequence[HostSpec], opts: ShipOptions, parallel: int = 8) -> list[HostStatus]:
    """Every host's status, ``parallel`` at a time, in the order given."""
    if not hosts:
        raise ShipError("no hosts given; pass --host HOST or --hosts-file FILE")
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(lambda h: host_status(h, pkg, opts), hosts))
