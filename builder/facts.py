"""Facts about a host: each is a command plus a pure parser of its output
(Convention 6), so the parsers are tested on captured real output and
``ship`` decides from plain data."""
from __future__ import annotations

import shlex
from dataclasses import dataclass

# Exit status of coreutils `timeout` when the command ran out of time.
TIMED_OUT = 124


@dataclass(frozen=True)
class Installed:
    """What dpkg says of the package: ``ii`` = installed; anything else is unfinished."""

    status: str       # dpkg's abbreviation, e.g. "ii", "iF" (half-configured), "rc" (removed, config kept)
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


HAS_CLOUD_INIT = ["sh", "-c", "command -v cloud-init"]


def cloud_init_command(timeout: float) -> list[str]:
    """``cloud-init status --wait`` has no timeout of its own: wrap it."""
    return ["timeout", f"{int(timeout)}", "cloud-init", "status", "--wait", "--long"]


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


def system_running_command(timeout: float) -> list[str]:
    return ["timeout", f"{int(timeout)}", "systemctl", "is-system-running", "--wait"]


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
