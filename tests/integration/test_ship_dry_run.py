"""Know before you ship, over real SSH to loopback hosts: the per-host plan of
``ship --dry-run`` (an admin-edited conffile and its coming .dpkg-dist), a dry
run that changes nothing, the same plan before a real install, and
``--rollback``/``--list`` run from a folder with no .deb and no --package."""

from __future__ import annotations

import json

import pytest

from builder.build import build_deb
from tests.harness.project import MINIMAL, write_project
from tests.harness.shipping import installed, run_ship

pytestmark = pytest.mark.root
CONF = "etc/fleet-agent/agent.conf"


def events(r) -> list[dict]:
    return [json.loads(line) for line in r.output.splitlines() if line.startswith("{")]


def plan_of(r) -> dict:
    plans = [e for e in events(r) if e["step"] == "plan"]
    assert len(plans) == 1, r.output + r.stderr
    return plans[0]["detail"]


def test_dry_run_plans_from_the_host_and_changes_nothing(ssh_host, debs):
    assert run_ship([ssh_host], debs["v1"]).exit_code == 0
    conf = ssh_host.root.path / CONF
    conf.write_text(conf.read_text() + "\n# tuned by the admin\n")
    status = (ssh_host.root.path / "var/lib/dpkg/status").read_bytes()
    files = ssh_host.root.files()

    r = run_ship([ssh_host], debs["v2"], "--dry-run", json_out=True)
    assert r.exit_code == 0, r.output + r.stderr
    plan = plan_of(r)
    assert (plan["action"], plan["from"], plan["to"]) == ("upgrade", "1.0.0", "1.1.0")
    assert plan["edited_conffiles"] == ["/etc/fleet-agent/agent.conf"]
    assert plan["dpkg_dist"] == ["/etc/fleet-agent/agent.conf.dpkg-dist"]  # v2 changes that file too
    assert plan["restarts"] == [] and plan["systemd"] is False  # a chroot: nothing runs, nothing restarts
    assert (ssh_host.root.path / "var/lib/dpkg/status").read_bytes() == status
    assert ssh_host.root.files() == files and installed(ssh_host) == "ii 1.0.0"

    r = run_ship([ssh_host], debs["v2"], json_out=True)  # the real ship shows the same plan first
    assert r.exit_code == 0, r.output + r.stderr
    assert plan_of(r) == plan
    assert installed(ssh_host) == "ii 1.1.0"
    assert conf.read_text().endswith("# tuned by the admin\n")
    assert (ssh_host.root.path / f"{CONF}.dpkg-dist").is_file()
    summary = [e for e in events(r) if e["step"] == "summary"][0]
    assert "new default config to merge: /etc/fleet-agent/agent.conf.dpkg-dist" in summary["detail"]


def test_an_unedited_host_plans_no_dpkg_dist(ssh_host, debs):
    assert run_ship([ssh_host], debs["v1"]).exit_code == 0
    r = run_ship([ssh_host], debs["v2"], "--dry-run")
    assert r.exit_code == 0, r.output + r.stderr
    line = next(l for l in r.output.splitlines() if "] plan" in l)
    assert "upgrade 1.0.0 -> 1.1.0" in line and "dpkg-dist" not in line and "systemd is not running" in line


def test_rollback_and_list_need_only_the_host(ssh_host, debs, tmp_path):
    for v in ("v1", "v2"):
        assert run_ship([ssh_host], debs[v]).exit_code == 0
    empty = tmp_path / "anywhere"
    empty.mkdir()
    r = run_ship([ssh_host], None, "--list", "--project", str(empty))
    assert r.exit_code == 0, r.output + r.stderr
    assert "kept: 1.0.0, 1.1.0" in r.output and "package fleet-agent (the one debship package" in r.output
    r = run_ship([ssh_host], None, "--rollback", "--project", str(empty))
    assert r.exit_code == 0, r.output + r.stderr
    assert installed(ssh_host) == "ii 1.0.0" and "host(s) at fleet-agent 1.0.0" in r.output


def test_a_host_with_two_packages_asks_which(ssh_host, debs, tmp_path):
    other = build_deb(write_project(tmp_path / "other", MINIMAL), tmp_path / "other-out").path
    for deb in (debs["v1"], other):
        assert run_ship([ssh_host], deb).exit_code == 0
    r = run_ship([ssh_host], None, "--rollback", "--project", str(tmp_path))
    assert r.exit_code == 1
    assert (
        "cannot tell which package: it manages demo-svc, fleet-agent (/var/lib/debship); pass --package NAME"
    ) in r.stderr
    assert installed(ssh_host) == "ii 1.0.0"
