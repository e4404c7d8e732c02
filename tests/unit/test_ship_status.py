"""The pure parts of `debship status`: apt's hold and pin, the ship history, what makes a host not fine."""

from __future__ import annotations

from builder.ship import store
from builder.ship.status import HostStatus, UnitState, parse_hold

# In the form HOLD_SCRIPT prints (its sed turns apt-cache policy's version lines into "version V PRIORITY").
PINNED = "version 1.0.0 1001\nversion 1.1.0 500\n"
UNPINNED = "version 1.1.0 100\nversion 1.0.0 500\n"


def test_parse_hold():
    assert parse_hold("fleet-agent", "hold fleet-agent\nversion 1.0.0 100\n") == "hold"
    assert parse_hold("fleet-agent", PINNED) == "pin 1.0.0 (1001)"
    assert parse_hold("fleet-agent", UNPINNED) is None
    assert parse_hold("fleet-agent", "") is None
    assert parse_hold("fleet-agent", "hold fleet-agent-extra\n") is None


def test_history_lines_old_and_new():
    text = (
        "2026-01-01T00:00:00Z ship 1.0.0\n"
        + store.history_line("2026-01-02T00:00:00Z", "ship", "1.1.0", "1.0.0", "ann@ctl")
        + store.history_line("2026-01-03T00:00:00Z", "rollback", "1.0.0", "1.1.0", "bob@ctl")
        + "garbage\n"
    )
    entries = store.parse_history(text)
    assert [(e.action, e.version, e.before, e.by) for e in entries] == [
        ("ship", "1.0.0", None, None),
        ("ship", "1.1.0", "1.0.0", "ann@ctl"),
        ("rollback", "1.0.0", "1.1.0", "bob@ctl"),
    ]
    assert store.version_stack(text) == ["1.0.0"]  # the rollback logic reads the new lines as before
    assert store.history_line("t", "ship", "1.0.0") == "t ship 1.0.0\n"


def test_problems():
    fine = HostStatus(
        "h",
        "p",
        "1.0.0",
        "ii",
        systemd=True,
        checked=("a.service", "c.service"),
        units=(
            UnitState("a.service", "enabled", "active"),
            UnitState("b.service", "static", "inactive"),
            UnitState("c.service", "disabled", "inactive"),
        ),  # c: the admin's choice
        health="ok",
    )
    assert fine.problems() == [] and fine.problems("1.0.0") == []
    assert fine.problems("2.0.0") == ["at 1.0.0, expected 2.0.0"]
    down = HostStatus(
        "h",
        "p",
        "1.0.0",
        "ii",
        systemd=True,
        checked=("a.service",),
        units=(UnitState("a.service", "enabled", "inactive"), UnitState("b.service", "static", "failed")),
        health="fail",
        health_detail="exit 1: no",
    )
    assert down.problems() == ["not active: a.service, b.service", "health failed: exit 1: no"]
    assert HostStatus("h", error="cannot connect").problems() == ["cannot connect"]
    assert HostStatus("h", "p").problems() == ["not installed"]
