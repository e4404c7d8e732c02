"""Checking a host after install: its units are up and stay up, and the package's
health command passes.  ``sh(argv, check=False, timeout=...)`` runs a command on
the host (``actions.Context.sh``); each check returns ``(status, detail)`` for its event
or raises ``ShipError``."""

from __future__ import annotations

import time
from typing import Callable

from ..errors import ShipError, UnitFailed
from ..manifest import Manifest
from . import facts


def units(
    sh: Callable,
    manifest: Manifest,
    start_timeout: float,
    settle: float,
    after_boot: bool = False,
    systemd: bool | None = None,
) -> tuple[str, str]:
    """Every unit the package enables and starts is active and not restarting (after a boot:
    every unit it enables, since the boot is what started them)."""
    wanted = manifest.checked_units(after_boot)
    if not wanted:
        return ("ok", "no units to check")
    if not _systemd(sh, systemd):
        links = facts.parse_enable_links(sh(facts.enable_links_command(wanted)).stdout)
        missing = [u for u in wanted if u not in links]
        if missing:
            raise ShipError(f"not enabled: {', '.join(missing)} (no enable symlink under /etc/systemd/system)")
        return ("warn", "systemd is not running on the host: services not started; checked enable links only")
    state, skipped = _wait_active(sh, wanted, start_timeout)
    checked = [u for u in wanted if u not in skipped]
    time.sleep(settle)
    again = _state(sh, checked)
    climbing = [u for u in checked if again.get(u, {}).get("NRestarts", "0") != state[u].get("NRestarts", "0")]
    if climbing:
        raise UnitFailed(
            f"restarting: {', '.join(climbing)}; see journalctl -u {climbing[0]}", diagnose(sh, climbing[0])
        )
    note = f"; left alone (disabled by the admin): {', '.join(skipped)}" if skipped else ""
    return ("warn" if skipped else "ok", f"active: {', '.join(checked)}{note}")


JOURNAL_LINES = 20


def diagnose(sh: Callable, unit: str, lines: int = JOURNAL_LINES) -> dict:
    """What the host says of a failing unit: the last lines of its journal and ``systemctl status``
    (with sudo: the system journal is not readable by every user)."""
    journal = sh(["journalctl", "-u", unit, "-n", str(lines), "--no-pager", "-o", "short-iso"], sudo=True, timeout=30)
    status = sh(["systemctl", "status", "--no-pager", "--lines=0", "--", unit], timeout=30)
    return {
        "unit": unit,
        "journal": (journal.stdout or journal.stderr).strip().splitlines()[-lines:],
        "status": status.stdout.strip().splitlines(),
    }


def _state(sh: Callable, names: list[str]) -> dict:
    return facts.parse_unit_state(sh(facts.unit_state_command(names), check=True).stdout) if names else {}


def _wait_active(sh: Callable, names: list[str], timeout: float) -> tuple[dict, list[str]]:
    """Poll until every unit is active (units an admin disabled or masked are skipped); a unit
    that failed, or restarted meanwhile, fails at once instead of being waited out."""
    deadline = time.monotonic() + timeout
    first: dict = {}
    while True:
        state = _state(sh, names)
        first = first or state
        skipped = [u for u in names if state.get(u, {}).get("UnitFileState") in ("masked", "disabled")]
        pending = [u for u in names if u not in skipped and state.get(u, {}).get("ActiveState") != "active"]
        looping = [
            u
            for u in names
            if u not in skipped
            and (
                state.get(u, {}).get("SubState") == "auto-restart"
                or state.get(u, {}).get("NRestarts", "0") != first.get(u, {}).get("NRestarts", "0")
            )
        ]
        if looping:
            raise UnitFailed(
                f"restarting: {', '.join(looping)}; see journalctl -u {looping[0]}", diagnose(sh, looping[0])
            )
        if not pending:
            return state, skipped
        failed = [u for u in pending if state.get(u, {}).get("ActiveState") == "failed"]
        if failed or time.monotonic() > deadline:
            shown = ", ".join(f"{u} {state.get(u, {}).get('ActiveState', '?')}" for u in pending)
            raise UnitFailed(f"not active: {shown}; see journalctl -u {pending[0]}", diagnose(sh, pending[0]))
        time.sleep(1)


def _systemd(sh: Callable, known: bool | None) -> bool:
    """Whether systemd runs on the host (``known`` from the host facts, else asked)."""
    return known if known is not None else sh(facts.SYSTEMD_RUNNING).ok


def health(
    sh: Callable, manifest: Manifest, name: str, version: str, timeout: float, systemd: bool | None = None
) -> tuple[str, str]:
    """The package's health command, with DEBSHIP_VERSION set, until it passes or ``timeout``."""
    command = manifest.health
    if not command:
        return ("skip", "no health command configured")
    if not _systemd(sh, systemd):
        return ("skip", "systemd is not running on the host: services were not started")
    deadline = time.monotonic() + timeout
    while True:
        r = sh(["env", f"DEBSHIP_VERSION={version}", f"DEBSHIP_PACKAGE={name}", "sh", "-c", command], timeout=timeout)
        if r.ok or time.monotonic() > deadline:
            break
        time.sleep(1)
    out = " ".join((r.stdout.strip() or r.stderr.strip()).split())[:300]
    if not r.ok:
        raise ShipError(f"health command failed (exit {r.exit_code}): {out}")
    return ("ok", out)


def soak(
    sh: Callable,
    manifest: Manifest,
    name: str,
    version: str,
    duration: float,
    interval: float = 2.0,
    systemd: bool | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> tuple[str, str]:
    """Keep watching for ``duration`` s: the units stay active, their restart counts (NRestarts) do
    not climb, the health command keeps passing.  Without systemd there is nothing to watch: the
    time still passes (the next batch waits all the same).  ``stop``: the run halted, end early."""
    t0 = time.monotonic()
    deadline = t0 + duration
    if not _systemd(sh, systemd):
        while time.monotonic() < deadline and not stop():
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
        return ("warn", f"systemd is not running on the host: nothing to watch; waited {duration:g} s")
    wanted = manifest.checked_units()
    first = _state(sh, wanted)
    checked = [u for u in wanted if first.get(u, {}).get("UnitFileState") not in ("masked", "disabled")]
    looks = 0
    while True:
        state = _state(sh, checked)
        at = time.monotonic() - t0
        for u in checked:
            now, was = state.get(u, {}), first.get(u, {})
            if now.get("ActiveState") != "active" or now.get("NRestarts", "0") != was.get("NRestarts", "0"):
                restarts = int(now.get("NRestarts", "0") or 0) - int(was.get("NRestarts", "0") or 0)
                what = f"{now.get('ActiveState', '?')} ({now.get('SubState', '?')})"
                raise UnitFailed(
                    f"failed the soak after {at:.0f} of {duration:g} s: {u} is {what}"
                    + (f", restarted {restarts} time(s)" if restarts > 0 else "")
                    + f"; see journalctl -u {u}",
                    diagnose(sh, u),
                )
        if manifest.health:
            r = sh(
                ["env", f"DEBSHIP_VERSION={version}", f"DEBSHIP_PACKAGE={name}", "sh", "-c", manifest.health],
                timeout=max(10.0, interval * 5),
            )
            if not r.ok:
                out = " ".join((r.stdout.strip() or r.stderr.strip()).split())[:300]
                raise ShipError(
                    f"failed the soak after {at:.0f} of {duration:g} s: health command failed "
                    f"(exit {r.exit_code}): {out}"
                )
        looks += 1
        left = deadline - time.monotonic()
        if left <= 0 or stop():
            break
        time.sleep(min(interval, left))
    health = f"; health passed {looks} time(s)" if manifest.health else ""
    return (
        "ok",
        f"{time.monotonic() - t0:.0f} s: {', '.join(checked) or 'no units'} stayed active, no restarts{health}",
    )
