"""Host facts are a command plus a pure parser (``decide``, a pure function of them, is tested
with the planner in test_ship_plan.py)."""

from __future__ import annotations

import pytest

from builder.ship import facts


# Captured from dpkg-query on Debian 12 (the status abbreviation is three characters wide).
@pytest.mark.parametrize(
    "code,out,expected",
    [
        (0, "ii \t1.0.0\n", facts.Installed("ii", "1.0.0")),
        (0, "iF \t1.0.0\n", facts.Installed("iF", "1.0.0")),
        (0, "rc \t1.0.0\n", facts.Installed("rc", "1.0.0")),
        (0, "un \t\n", None),
        (1, "", None),  # "dpkg-query: no packages found matching fleet-agent" on stderr
    ],
)
def test_parse_installed(code, out, expected):
    assert facts.parse_installed(code, out) == expected


@pytest.mark.parametrize(
    "code,out,state",
    [
        (0, "status: done\nextended_status: done\n", "ok"),
        (2, "status: done\nextended_status: degraded done\nrecoverable_errors:\nWARNING:\n - bad key\n", "warn"),
        (1, "status: error\nextended_status: error - done\nerrors:\n - failed module\n", "fail"),
        (124, "", "timeout"),
    ],
)
def test_parse_cloud_init(code, out, state):
    boot = facts.parse_cloud_init(code, out)
    assert boot.state == state
    if state in ("warn", "fail"):
        assert " - " in boot.detail or "bad key" in boot.detail or "failed module" in boot.detail


@pytest.mark.parametrize(
    "code,out,state",
    [
        (0, "running\n", "ok"),
        (1, "degraded\n", "warn"),
        (1, "offline\n", "ok"),
        (124, "starting\n", "timeout"),
        (1, "maintenance\n", "fail"),
    ],
)
def test_parse_system_running(code, out, state):
    assert facts.parse_system_running(code, out).state == state


def test_parse_unit_state_blocks():
    out = (
        "Id=fleet-agent.service\nActiveState=active\nSubState=running\nNRestarts=0\nUnitFileState=enabled\n\n"
        "Id=fleet-agent-startup.service\nActiveState=active\nSubState=exited\nNRestarts=0\n"
        "UnitFileState=enabled\n"
    )
    state = facts.parse_unit_state(out)
    assert state["fleet-agent.service"]["SubState"] == "running"
    assert state["fleet-agent-startup.service"]["ActiveState"] == "active"


def test_enable_links_command_quotes_names():
    argv = facts.enable_links_command(["a.service", "b;rm -rf /.service"])
    assert "'b;rm -rf /.service'" in argv[-1]
    assert facts.parse_enable_links("a.service\n\n") == {"a.service"}
