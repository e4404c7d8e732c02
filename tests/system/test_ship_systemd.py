"""`ship` to booted hosts: systemd-nspawn containers of the cached guest root, systemd as PID 1.

Where tests/integration/test_ship.py can only check enable links (no init in a
chroot), here the services really start, the health command really talks to
the agent, and `--reboot` really reboots the guest (see hostlab/nspawn.py).
The container shares the host's network namespace, so the sample is built with
its agent on a free loopback port instead of 8787.
"""

from __future__ import annotations

import json

import pytest

from builder.build import build_deb
from builder.debinfo import read_package
from tests.harness.booted import (
    AGENT,
    STARTUP,
    finished,
    health_body,
    healthz,
    journal,
    last,
    run_ship,
    sample_project,
    shown,
    unit,
)

pytestmark = pytest.mark.root


def test_ship_starts_the_service_and_health_checks_the_version(booted_host, sample):
    host = booted_host
    r = run_ship(host, sample["v1"], json_out=True)
    assert r.exit_code == 0, shown(r)
    events = finished(r)
    verify = last(events, "verify")
    assert verify["status"] == "ok" and f"active: {AGENT}" in verify["detail"], verify
    assert "enable links" not in verify["detail"]
    assert health_body(last(events, "health"))["version"] == "1.0.0"

    assert host.run_root(["systemctl", "is-active", AGENT], check=False).stdout.strip() == "active"
    props = unit(host, AGENT)
    assert (props["ActiveState"], props["SubState"], props["NRestarts"]) == ("active", "running", "0")
    body = healthz(host, sample["port"])
    assert body["status"] == "ok" and body["version"] == "1.0.0" and body["pid"] == int(props["MainPID"])
    assert body["startup"]["version"] == "1.0.0" and body["startup"]["boot_id"] == host.boot_id()  # from postinst
    assert unit(host, STARTUP)["ActiveState"] == "inactive"  # start = false: it runs at boot only

    # The configured health command really checks the version ship passes it.
    health = read_package(sample["v1"]).health
    with host.connect() as conn:
        wrong = conn.run(["env", "DEBSHIP_VERSION=9.9.9", "sh", "-c", health + " --wait 1"])
    assert wrong.exit_code != 0, (
        f"the health command {health!r} passes for version 9.9.9: it does not check "
        f'the version (pass --expect-version "$DEBSHIP_VERSION")'
    )


def test_upgrade_restarts_the_agent_into_the_new_version(booted_host, sample):
    host = booted_host
    r = run_ship(host, sample["v1"])
    assert r.exit_code == 0, shown(r)
    old_pid = unit(host, AGENT)["MainPID"]
    assert healthz(host, sample["port"])["version"] == "1.0.0"

    r = run_ship(host, sample["v2"], json_out=True)
    assert r.exit_code == 0, shown(r)
    events = finished(r)
    assert "upgrade 1.0.0 -> 1.1.0" in last(events, "install")["detail"]
    assert health_body(last(events, "health"))["version"] == "1.1.0"
    props = unit(host, AGENT)
    assert props["MainPID"] not in ("0", old_pid), f"the agent was not restarted (MainPID {old_pid} -> {props})"
    assert (props["ActiveState"], props["NRestarts"]) == ("active", "0")
    body = healthz(host, sample["port"])
    assert body["version"] == "1.1.0" and body["pid"] == int(props["MainPID"])


def test_reboot_brings_the_services_back_by_themselves(booted_host, sample):
    host = booted_host
    before = host.boot_id()
    r = run_ship(host, sample["v1"], "--reboot", json_out=True)
    assert r.exit_code == 0, shown(r)
    assert host.reboots == 1, f"the guest did not reboot: {host.boots}"
    after = host.boot_id()
    assert after != before

    events = finished(r)
    steps = [e["step"] for e in events]
    assert "reboot" in steps and last(events, "reboot")["status"] == "ok"
    after_reboot = events[steps.index("reboot") + 1 :]
    assert [e["step"] for e in after_reboot][:2] == ["verify", "health"], steps
    # After a boot, ship checks every unit the package enables, the startup unit too.
    assert after_reboot[0]["status"] == "ok", after_reboot[0]
    assert after_reboot[0]["detail"] == f"active: {STARTUP}, {AGENT}"
    assert health_body(after_reboot[1])["version"] == "1.0.0"

    # Nobody started anything after the reboot: systemd did, at boot.  The startup unit
    # (start = false: postinst never starts it) ran in the new boot, in the new PID 1.
    # (Its record of the boot id is no proof here: in nspawn, a unit with
    # ProtectKernelTunables= reads the host's boot id, see hostlab/nspawn.py.)
    for name in (AGENT, STARTUP):
        assert host.run_root(["systemctl", "is-active", name], check=False).stdout.strip() == "active", journal(
            host, name
        )
    assert unit(host, AGENT)["NRestarts"] == "0"
    startup = unit(host, STARTUP)
    assert startup["SubState"] == "exited" and startup["ExecMainStatus"] == "0", journal(host, STARTUP)
    assert healthz(host, sample["port"])["version"] == "1.0.0"
    assert host.run_root(["systemctl", "is-system-running"], check=False).stdout.strip() == "running"

    # Already at 1.0.0: nothing to install, but --reboot still reboots and verifies.
    r = run_ship(host, sample["v1"], "--reboot", json_out=True)
    assert r.exit_code == 0, shown(r)
    assert host.reboots == 2 and host.boot_id() != after
    events = finished(r)
    assert [e["step"] for e in events][-4:] == ["decide", "reboot", "verify", "health"]
    assert "already at 1.0.0" in last(events, "decide")["detail"] and last(events, "verify")["status"] == "ok"
    summary = [json.loads(line) for line in r.output.splitlines() if '"summary"' in line][0]
    assert summary["outcome"] == "unchanged"


AS_OPS = "fleet-agent-as-ops.service"


def test_a_unit_runs_as_an_account_the_host_has_from_elsewhere(booted_host, tmp_path):
    # host-accounts: the guest's user ops comes with the image (hostlab makes it), not with
    # the package; without the entry build-deb refuses User=ops (tests/unit/test_bad_input_table.py).
    host = booted_host
    project, _port = sample_project(tmp_path / "project")
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    assert "\n[tool.debship]\n" in text, "the sample's config is no longer in pyproject.toml"
    pyproject.write_text(text.replace("\n[tool.debship]\n", '\n[tool.debship]\nhost-accounts = ["ops"]\n', 1))
    (project / "units" / AS_OPS).write_text(
        "[Unit]\nDescription=a service run as the image's ops user\n\n"
        "[Service]\nUser=ops\nGroup=ops\nExecStart=/bin/sleep infinity\n\n[Install]\nWantedBy=multi-user.target\n"
    )
    deb = build_deb(project, tmp_path / "out", version="1.0.0").path

    r = run_ship(host, deb, json_out=True)
    assert r.exit_code == 0, shown(r)
    assert AS_OPS in last(finished(r), "verify")["detail"]
    props = unit(host, AS_OPS)
    assert (props["ActiveState"], props["SubState"]) == ("active", "running"), journal(host, AS_OPS)
    owner = host.run_root(["stat", "-c", "%U", f"/proc/{props['MainPID']}"]).stdout.strip()
    assert owner == "ops", journal(host, AS_OPS)


def test_a_crash_looping_unit_fails_the_ship(booted_host, sample):
    # The agent lives ~0.1 s per start, then waits RestartSec=2s: ship says "restarting"
    # within ~7 s when one of its 1-s polls lands on an "active" moment, else it waits
    # out its start timeout (60 s) and says "not active ... activating".
    host = booted_host
    r = run_ship(host, sample["crash"])
    assert r.exit_code == 1, shown(r)
    assert "not active" in r.stderr or "restarting" in r.stderr, shown(r)
    assert AGENT in r.stderr, shown(r)
