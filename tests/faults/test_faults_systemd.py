"""Faults produced for real on booted hosts (systemd-nspawn, systemd as PID 1), and the state they leave.

Each test breaks a ship for real (a health command that fails once the new
services run, a startup.py that fails in postinst, the host rebooting while
postinst runs) and then asserts what debship promises: the host is on a version
one can name, fully configured (``ii``, ``dpkg --audit`` empty), that version's
services are running and /healthz reports it, nothing is left in staging, the
store's index matches its files, and a plain second ``ship`` converges.
The checks are in ``_state.py`` (shared with the loopback fault tests).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builder.build import build_deb
from hostlab.sshhost import free_port
from tests.harness.booted import AGENT, finished, healthz, run_ship, shown
from tests.harness.hoststate import assert_active, assert_known_state, deploy_log, dpkg_audit, dpkg_state
from tests.harness.project import break_startup, copy_sample

pytestmark = pytest.mark.root

NAME = "fleet-agent"
SLEEP = 15  # s the slow startup.py sleeps in postinst: long enough to reboot the host meanwhile


def _project(base: Path, port: int) -> Path:
    project = copy_sample(base)
    conf = project / "configs" / "agent.conf"
    text, n = re.subn(r"(?m)^port = \d+$", f"port = {port}", conf.read_text())
    assert n == 1, "configs/agent.conf has no 'port = N' line any more"
    conf.write_text(text)
    return project


def _unhealthy(project: Path) -> None:
    """A health command that fails whatever the services do."""
    py = project / "pyproject.toml"
    text, n = re.subn(r"(?m)^health = .*$", 'health = "false"', py.read_text())
    assert n == 1, "pyproject.toml's [tool.debship] has no health line any more"
    py.write_text(text)


def _slow_startup(project: Path) -> None:
    """startup.py sleeps SLEEP s first (postinst runs it: the host can be rebooted meanwhile)."""
    startup = project / "scripts" / "startup.py"
    text = startup.read_text()
    cut = text.index("\n") + 1  # after the shebang
    startup.write_text(text[:cut] + f"import time; time.sleep({SLEEP})  # fault test: a slow postinst\n" + text[cut:])


@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    """Good 1.0.0 and 1.1.0, and three faulty versions between them, agent on a free port."""
    base, port = tmp_path_factory.mktemp("fault-debs"), free_port()
    made = {"port": port}
    for key, version, change in (
        ("v1", "1.0.0", None),
        ("v2", "1.1.0", None),
        ("unhealthy", "1.0.1", _unhealthy),
        ("broken", "1.0.2", break_startup),
        ("slow", "1.0.3", _slow_startup),
    ):
        project = _project(base / key / "project", port)
        if change:
            change(project)
        made[key] = build_deb(project, base / key, version=version).path
    return made


def assert_running(host, port: int, version: str) -> None:
    """The final state, fully: known version, configured, services of that version up and healthy."""
    assert assert_known_state(host, NAME) == version
    assert_active(host, AGENT)
    body = healthz(host, port)
    assert body["status"] == "ok" and body["version"] == version, body


def converges(host, debs, key: str, version: str, *args: str):
    """A plain ship of ``debs[key]`` exits 0 and leaves ``version`` running; returns the result."""
    r = run_ship(host, debs[key], *args, json_out=True)
    assert r.exit_code == 0, shown(r)
    assert_running(host, debs["port"], version)
    return r


def test_health_failing_after_start_rolls_back_to_the_running_old_version(booted_host, debs):
    host = booted_host
    converges(host, debs, "v1", "1.0.0")

    r = run_ship(host, debs["unhealthy"], "--start-timeout", "10", json_out=True)
    print(f"unhealthy ship: {r.seconds:.1f}s")
    assert r.exit_code == 3, shown(r)
    events = finished(r)
    assert [e for e in events if e["step"] == "verify"][0]["status"] == "ok", events  # the 1.0.1 units did run
    assert [e for e in events if e["step"] == "health"][0]["status"] == "fail", events
    assert "health command failed" in r.stderr + r.output, shown(r)
    assert_running(host, debs["port"], "1.0.0")  # the old agent, restarted by the downgrade
    assert "rolled back to 1.0.0: health command failed" in deploy_log(host, NAME)
    # It stays put: the store lists 1.0.1, yet the admin's apt-get upgrade keeps 1.0.0 (debship's pin).
    for verb in ("upgrade", "dist-upgrade"):
        up = host.run_root(
            ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", verb, "-y", "-q"], check=False, timeout=300
        )
        assert up.returncode == 0, up.stdout + up.stderr
    assert_running(host, debs["port"], "1.0.0")
    assert "*** 1.0.0 1001" in host.run_root(["apt-cache", "policy", NAME]).stdout

    converges(host, debs, "v2", "1.1.0")


def test_startup_failing_in_postinst_rolls_back(booted_host, debs):
    host = booted_host
    converges(host, debs, "v1", "1.0.0")

    r = run_ship(host, debs["broken"], json_out=True)
    print(f"broken-startup ship: {r.seconds:.1f}s")
    assert r.exit_code == 3, shown(r)
    installs = [e for e in finished(r) if e["step"] == "install"]
    assert [e["status"] for e in installs] == ["fail", "ok"], shown(r)  # 1.0.2, then the rollback
    assert "roll back to 1.0.0" in installs[1]["detail"], shown(r)
    assert "startup failed on purpose" in deploy_log(host, NAME)
    assert_running(host, debs["port"], "1.0.0")

    converges(host, debs, "v2", "1.1.0")


def _ship_in_background(host, deb: Path, out: Path) -> subprocess.Popen:
    """``ship DEB --host ... --json`` as its own process (its output in ``out``.stdout/.stderr)."""
    argv = [
        sys.executable,
        "-c",
        "from builder.cli import ship; ship()",
        str(deb),
        "--host",
        host.address,
        *host.ship_args(),
        "--connect-timeout",
        "30",
        "--json",
    ]
    return subprocess.Popen(
        argv,
        stdout=open(f"{out}.stdout", "w"),
        stderr=open(f"{out}.stderr", "w"),
        stdin=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "SSH_AUTH_SOCK": ""},
    )


def _wait_for(what: str, check, timeout: float, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(every)
    raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")


def _postinst_running(host) -> bool:
    marker = "fleet-agent 1.0.3 postinst configure 1.0.0: startup /usr/lib/fleet-agent/startup.py: running"
    if marker not in deploy_log(host, NAME):
        return False
    return host.run_root(["pgrep", "-f", "/usr/lib/fleet-agent/startup.py"], check=False).returncode == 0


def test_reboot_while_postinst_runs_leaves_a_state_a_second_ship_repairs(booted_host, debs, tmp_path):
    host = booted_host
    converges(host, debs, "v1", "1.0.0")

    t0 = time.monotonic()
    ship = _ship_in_background(host, debs["slow"], tmp_path / "ship")
    try:
        _wait_for(
            "1.0.3's postinst to run startup.py",
            lambda: _postinst_running(host) or ship.poll() is not None,
            timeout=120,
        )
        assert ship.poll() is None, "ship ended before its postinst ran: " + (tmp_path / "ship.stderr").read_text()
        host.run_root(["systemctl", "reboot"], check=False)
        code = ship.wait(timeout=300)
    finally:
        if ship.poll() is None:
            ship.kill()
    out, err = (tmp_path / "ship.stdout").read_text(), (tmp_path / "ship.stderr").read_text()
    print(f"interrupted ship: exit {code} after {time.monotonic() - t0:.1f}s\nstdout:\n{out}\nstderr:\n{err}")
    assert code == 1, f"exit {code}\nstdout:\n{out}\nstderr:\n{err}"
    assert "Traceback" not in out + err, err
    summary = [json.loads(line) for line in out.splitlines() if '"summary"' in line]
    assert summary and summary[0]["outcome"] == "failed", out
    assert "connection dropped" in summary[0]["detail"], summary  # it says why it gave up
    _wait_for("the guest to reboot", lambda: host.reboots >= 1, timeout=120)
    host.wait_ssh()

    abbrev, version = dpkg_state(host, NAME)
    print(f"after the reboot: {NAME} {abbrev} {version}; dpkg --audit: {dpkg_audit(host)!r}")
    assert (abbrev, version) in (("ii", "1.0.0"), ("iF", "1.0.3")), (abbrev, version, dpkg_audit(host))

    t1 = time.monotonic()
    r = converges(host, debs, "slow", "1.0.3")
    print(
        f"second ship: {time.monotonic() - t1:.1f}s: "
        + "; ".join(f"{e['step']} {e['status']} {e['detail']}"[:120] for e in finished(r))
    )
    repairs = [e for e in finished(r) if e["step"] == "repair"]
    if abbrev == "iF":
        assert repairs and "dpkg --configure -a" in repairs[0]["detail"], shown(r)
