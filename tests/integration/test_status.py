"""`debship status` over real SSH to loopback hosts: the installed version, apt's hold and
pin, the last ship from the host's history, the kept versions, --expect and --json, exit
codes, and that it changes nothing on the host.  These roots have no running systemd, so
health is reported as skipped there (tests/system/test_status_booted.py runs it for real)."""

from __future__ import annotations

import json
import os

import pytest

from builder.build import build_deb
from builder.cli import main
from tests.harness.helpers import cli_runner
from tests.harness.project import break_startup, copy_sample
from tests.harness.shipping import run_ship, share_key

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    base = tmp_path_factory.mktemp("status-debs")
    project = copy_sample(base / "project")
    out = {v: build_deb(project, base / v, version=v).path for v in ("1.0.0", "1.1.0")}
    break_startup(project)
    out["2.0.0-bad"] = build_deb(project, base / "2.0.0", version="2.0.0").path
    return out


def run_status(hosts, *args):
    argv = ["status"]
    for h in hosts:
        argv += ["--host", h.address]
    argv += [*hosts[0].ship_args(), "--connect-timeout", "10", *args]
    return cli_runner().invoke(main, argv, env={"SSH_AUTH_SOCK": ""})


def snapshot(host) -> dict:
    """Every file under the folders a ship or a lock would touch: path -> (size, mtime, mode)."""
    seen = {}
    for top in (
        "var/lib/debship",
        "var/log/fleet-agent",
        "etc/apt",
        "run/lock",
        "var/lib/dpkg",
        "var/tmp",
        "var/cache/apt",
    ):
        base = host.root.path / top
        for dirpath, dirnames, filenames in os.walk(base):
            for name in dirnames + filenames:
                p = os.path.join(dirpath, name)
                st = os.lstat(p)
                seen[p] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return seen


def test_status_of_two_hosts_after_ships_and_a_rollback(make_ssh_hosts, debs):
    a, b = make_ssh_hosts(2)
    share_key([a, b])
    assert run_ship([a, b], debs["1.0.0"]).exit_code == 0
    assert run_ship([a], debs["1.1.0"]).exit_code == 0
    before = snapshot(a)

    r = run_status([a, b], "--package", "fleet-agent", "--json")
    assert r.exit_code == 0, r.output + r.stderr
    rows = {row["host"]: row for row in map(json.loads, r.output.splitlines())}
    ra, rb = rows[a.address], rows[b.address]
    assert ra["installed"] == "1.1.0" and ra["dpkg"] == "ii" and ra["kept"] == ["1.0.0", "1.1.0"]
    assert ra["last_ship"]["action"] == "ship" and ra["last_ship"]["version"] == "1.1.0"
    assert ra["last_ship"]["from"] == "1.0.0" and "@" in ra["last_ship"]["by"]
    assert rb["last_ship"]["from"] == "nothing" and rb["installed"] == "1.0.0"
    assert ra["held"] == "pin 1.1.0 (1001)"  # debship's own pin: the version stays put through apt-get upgrade
    assert ra["health"] == "skip" and ra["systemd"] is False
    assert {u["name"] for u in ra["units"]} == {"fleet-agent.service", "fleet-agent-startup.service"}
    assert ra["ok"] is True and ra["problems"] == []
    assert snapshot(a) == before, "status changed something on the host"

    r = run_status([a, b], "--package", "fleet-agent", "--expect", "1.1.0")
    assert r.exit_code == 1, r.output
    assert f"{b.address}: at 1.0.0, expected 1.1.0" in r.stderr
    assert "1/2 host(s) fine at 1.1.0" in r.output
    header, row_a = r.output.splitlines()[:2]
    assert header.split()[:4] == ["host", "package", "version", "held"]
    assert row_a.split()[:3] == [a.address, "fleet-agent", "1.1.0"] and "ship 1.1.0 from 1.0.0 by" in row_a

    assert run_ship([a], debs["1.1.0"], "--rollback").exit_code == 0
    r = run_status([a], "--package", "fleet-agent", "--json")
    last = json.loads(r.output)["last_ship"]
    assert (last["action"], last["version"], last["from"]) == ("rollback", "1.0.0", "1.1.0")


def test_hold_and_pin_are_reported_as_apt_says(ssh_host, debs):
    assert run_ship([ssh_host], debs["1.0.0"]).exit_code == 0
    ssh_host.run_root(["apt-mark", "hold", "fleet-agent"])
    row = json.loads(run_status([ssh_host], "--package", "fleet-agent", "--json").output)
    assert row["held"] == "hold"
    ssh_host.run_root(["apt-mark", "unhold", "fleet-agent"])
    (ssh_host.root.path / "etc/apt/preferences.d/debship-fleet-agent.pref").unlink()  # released by hand
    row = json.loads(run_status([ssh_host], "--package", "fleet-agent", "--json").output)
    assert row["held"] is None
    (ssh_host.root.path / "etc/apt/preferences.d").mkdir(exist_ok=True)
    (ssh_host.root.path / "etc/apt/preferences.d/fleet-agent").write_text(
        "Package: fleet-agent\nPin: version 1.0.0\nPin-Priority: 1001\n"
    )
    row = json.loads(run_status([ssh_host], "--package", "fleet-agent", "--json").output)
    assert row["held"] == "pin 1.0.0 (1001)"


def test_unfinished_install_unreachable_and_not_installed_fail(make_ssh_hosts, debs):
    a, b, c = make_ssh_hosts(3)
    share_key([a, b, c])
    r = run_ship([a], debs["2.0.0-bad"], "--no-rollback")
    assert r.exit_code == 1
    c.stop()
    r = run_status([a, b, c], "--package", "fleet-agent", "--json")
    assert r.exit_code == 1
    rows = {row["host"]: row for row in map(json.loads, r.output.splitlines())}
    assert rows[a.address]["dpkg"].startswith("i") and rows[a.address]["dpkg"] != "ii"
    assert "unfinished" in rows[a.address]["problems"][0]
    assert rows[b.address]["installed"] is None and rows[b.address]["problems"] == ["not installed"]
    assert rows[c.address]["error"] and rows[c.address]["ok"] is False


def test_without_package_each_host_says_and_a_hosts_file(ssh_host, debs, tmp_path, monkeypatch):
    assert run_ship([ssh_host], debs["1.0.0"]).exit_code == 0
    monkeypatch.chdir(tmp_path)  # no dist/ here: the host names its package
    hosts_file = tmp_path / "hosts"
    hosts_file.write_text(f"# the fleet\n{ssh_host.address}\n\n")
    r = cli_runner().invoke(
        main, ["status", "--hosts-file", str(hosts_file), *ssh_host.ship_args()], env={"SSH_AUTH_SOCK": ""}
    )
    assert r.exit_code == 0, r.output + r.stderr
    assert "fleet-agent" in r.output.splitlines()[1] and "1/1 host(s) fine" in r.output


def test_no_hosts_is_a_usage_error(tmp_path):
    r = cli_runner().invoke(main, ["status", "--package", "x-y"])
    assert r.exit_code == 6 and r.stderr.strip().startswith("status: error: no hosts given")
