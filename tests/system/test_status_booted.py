"""`debship status` against a booted host (systemd-nspawn, systemd as PID 1): the units
really run and the health command really asks the agent, so health and units are judged,
not skipped; stopping the agent makes the host unhealthy and the exit 1."""

from __future__ import annotations

import json

import pytest

from builder.cli import main
from tests.harness.booted import AGENT, run_ship, shown
from tests.harness.helpers import cli_runner

pytestmark = pytest.mark.root


def run_status(host, *args):
    argv = [
        "status",
        "--host",
        host.address,
        *host.ship_args(),
        "--connect-timeout",
        "30",
        "--package",
        "fleet-agent",
        "--json",
        *args,
    ]
    return cli_runner().invoke(main, argv, env={"SSH_AUTH_SOCK": ""})


def test_health_and_units_now_on_a_booted_host(booted_host, sample):
    host = booted_host
    r = run_ship(host, sample["v1"])
    assert r.exit_code == 0, shown(r)

    r = run_status(host, "--expect", "1.0.0")
    assert r.exit_code == 0, r.output + r.stderr
    row = json.loads(r.output)
    assert row["systemd"] is True and row["health"] == "ok"
    assert json.loads(row["health_detail"])["version"] == "1.0.0"  # the agent's /healthz, asked now
    units = {u["name"]: u for u in row["units"]}
    assert units[AGENT]["active"] == "active" and units[AGENT]["checked"] is True
    assert row["problems"] == []

    host.run_root(["systemctl", "stop", AGENT])
    r = run_status(host)
    assert r.exit_code == 1
    row = json.loads(r.output)
    assert row["health"] == "fail"
    assert row["problems"][0] == f"not active: {AGENT}" and row["problems"][1].startswith("health failed")
