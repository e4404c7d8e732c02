"""Rollout soak on booted hosts (systemd-nspawn, systemd as PID 1): a service that dies ~20 s after
it starts passes verify, fails the soak, is rolled back, and the next batch never starts; the soak's
failure event carries the unit's journal and `systemctl status`."""

from __future__ import annotations

import json
import time

import pytest

from builder.build import build_deb
from builder.cli import ship
from tests.harness.booted import AGENT, sample_project
from tests.harness.helpers import cli_runner

pytestmark = pytest.mark.root

DIES_LATER = """\
import os as _os, sys as _sys, threading as _threading
def _die():
    print("fleet-agent: exiting 20 s after start on purpose (soak test)", file=_sys.stderr, flush=True)
    _os._exit(1)
_timer = _threading.Timer(20, _die)
_timer.daemon = True
_timer.start()
"""


@pytest.fixture(scope="module")
def rollout_debs(tmp_path_factory):
    """1.0.0 of the sample (agent on a free port), and 1.3.0 whose agent exits 20 s after each start."""
    base = tmp_path_factory.mktemp("rollout-debs")
    project, port = sample_project(base / "project")
    debs = {"v1": build_deb(project, base / "v1", version="1.0.0").path}
    agent = project / "scripts" / "agent.py"
    text = agent.read_text()
    cut = text.index("\n") + 1  # after the shebang
    agent.write_text(text[:cut] + DIES_LATER + text[cut:])
    debs["dies"] = build_deb(project, base / "dies", version="1.3.0").path
    return debs


def installed(host) -> str:
    r = host.run_root(["dpkg-query", "-W", "-f=${db:Status-Abbrev}${Version}", "fleet-agent"], check=False)
    return r.stdout.strip() if r.returncode == 0 else ""


def run_ship(hosts, deb, *args):
    argv = [str(deb)]
    for h in hosts:
        argv += ["--host", h.address]
    argv += [*hosts[0].ship_args(), "--connect-timeout", "30", "--json", *args]
    r = cli_runner().invoke(ship, argv, env={"SSH_AUTH_SOCK": ""})
    return r, [json.loads(line) for line in r.output.splitlines() if line.startswith("{")]


def test_a_service_that_dies_after_verify_fails_the_soak_and_the_rollout_stops(make_booted_hosts, rollout_debs):
    # Both containers share the machine's network: only the first runs the agent (on its port);
    # the second starts with nothing installed, so it would take 1.3.0 if the second batch started.
    first, second = make_booted_hosts(2)
    (second.root.path / "home/ops/.ssh/authorized_keys").write_text(first.public_key)
    r, _ = run_ship([first], rollout_debs["v1"])
    assert r.exit_code == 0, r.output + r.stderr

    t0 = time.monotonic()
    r, evs = run_ship([first, second], rollout_debs["dies"], "--batch", "1", "--soak", "60s")
    shown = f"exit {r.exit_code} after {time.monotonic() - t0:.0f}s\n{r.output}\n{r.stderr}"
    assert r.exit_code == 1, shown
    mine = [e for e in evs if e["host"] == first.address]
    verify = next(e for e in mine if e["step"] == "verify" and e["status"] != "start")
    assert verify["status"] == "ok", shown  # verify passed: the agent was up for its first seconds
    soak = next(e for e in mine if e["step"] == "soak" and e["status"] != "start")
    assert soak["status"] == "fail", shown
    detail = soak["detail"]
    assert detail["unit"] == AGENT and "failed the soak after" in detail["message"], detail
    assert any("exiting 20 s after start on purpose" in line for line in detail["journal"]), detail
    assert any(AGENT in line for line in detail["status"]), detail  # systemctl status' first line names it
    summary = {e["host"]: e for e in evs if e["step"] == "summary"}
    assert summary[first.address]["outcome"] == "rolled-back" and summary[first.address]["after"] == "1.0.0"
    assert summary[second.address]["outcome"] == "skipped"
    assert not any(e["host"] == second.address and e["step"] != "summary" for e in evs)  # never started
    halt = next(e for e in evs if e["step"] == "halt")
    assert "failed the 60 s soak" in halt["detail"]["reason"]
    assert installed(first) == "ii 1.0.0" and installed(second) == ""


def test_a_crash_looping_unit_fails_verify_with_its_journal_in_the_event(booted_host, rollout_debs, tmp_path):
    from tests.harness.booted import CRASHING_AGENT

    project, _ = sample_project(tmp_path / "project")
    (project / "scripts" / "agent.py").write_text(CRASHING_AGENT)
    crash = build_deb(project, tmp_path / "crash", version="1.2.0").path
    r, evs = run_ship([booted_host], crash)
    assert r.exit_code == 1, r.output + r.stderr
    verify = next(e for e in evs if e["step"] == "verify" and e["status"] == "fail")
    detail = verify["detail"]
    assert detail["unit"] == AGENT and ("not active" in detail["message"] or "restarting" in detail["message"])
    assert any("crashing on purpose (system test)" in line for line in detail["journal"]), detail
    assert detail["status"] and AGENT in detail["status"][0], detail
