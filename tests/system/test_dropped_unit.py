"""On a booted host (systemd as PID 1): an upgrade that drops a unit stops it, disables it and
systemd forgets it; ``ship --dry-run`` names it beforehand."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.build import build_deb
from tests.harness.booted import run_ship, shown
from tests.harness.project import write_project

pytestmark = pytest.mark.root

SERVICE = """
    [Unit]
    Description={what}

    [Service]
    ExecStart=/usr/bin/python3 /usr/lib/dropper/serve.py

    [Install]
    WantedBy=multi-user.target
"""


def dropper(base: Path, version: str, with_old: bool) -> Path:
    files = {
        "debship.toml": f"""
            name = "dropper"
            version = "{version}"
            maintainer = "Ops <ops@example.com>"
            description = "upgrade scenario that drops a running unit"
            depends = ["python3"]
            startup = false
            [folders]
            configs = false
        """,
        "units/dropper.service": SERVICE.format(what="kept"),
        "scripts/serve.py": "#!/usr/bin/python3\nimport time\nwhile True:\n    time.sleep(60)\n",
    }
    if with_old:
        files["units/dropper-old.service"] = SERVICE.format(what="dropped in 2.0")
    return build_deb(write_project(base / f"src-{version}", files), base / "debs").path


def test_an_upgrade_that_drops_a_unit_stops_disables_and_forgets_it(booted_host, tmp_path):
    host = booted_host
    v1, v2 = dropper(tmp_path, "1.0", True), dropper(tmp_path, "2.0", False)
    r = run_ship(host, v1)
    assert r.exit_code == 0, shown(r)
    assert host.run_root(["systemctl", "is-active", "dropper-old.service"], check=False).stdout.strip() == "active"

    dry = run_ship(host, v2, "--dry-run")
    assert dry.exit_code == 0, shown(dry)
    assert "stops and disables (not in this version): dropper-old.service" in dry.output, shown(dry)

    r = run_ship(host, v2)
    assert r.exit_code == 0, shown(r)
    state = host.run_root(
        ["systemctl", "show", "-p", "ActiveState,LoadState", "--", "dropper-old.service"], check=False
    ).stdout
    assert "ActiveState=inactive" in state and "LoadState=not-found" in state, state
    assert host.run_root(["systemctl", "is-enabled", "dropper-old.service"], check=False).stdout.strip() != "enabled"
    files = host.run_root(["systemctl", "list-unit-files", "--no-legend", "dropper*"], check=False).stdout
    assert "dropper-old.service" not in files and "dropper.service" in files, files
    assert host.run_root(["systemctl", "is-active", "dropper.service"], check=False).stdout.strip() == "active"
    left = host.run_root(
        ["sh", "-c", "find /etc/systemd/system /var/lib/systemd/deb-systemd-helper-enabled -name 'dropper-old*'"],
        check=False,
    ).stdout
    assert left == "", left
