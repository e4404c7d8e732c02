"""The Ansible collection in ansible/ (debship.fleet.apply), driven by ansible-core from PyPI
over real SSH against 4 loopback hosts with debship installed in them (as in test_apply.py):
check mode changes nothing, the run installs, a second run reports changed=0, and a host whose
new version fails is rolled back by debship and counted by the play's max_fail_percentage,
which stops the rollout before the other hosts; diff mode shows the version and the units
before and after (check mode: the plan).  ``ansible-galaxy collection build`` works offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import ansibleplay as ansible
from tests.harness.ansibleplay import COLLECTIONS, ansible_tool, failed_result, recap
from tests.harness.applying import install_debship
from tests.harness.helpers import _missing
from tests.harness.shipping import installed, share_key

pytestmark = pytest.mark.root
PLAYBOOK = """- hosts: fleet
  serial: [1, "25%", "100%"]
  max_fail_percentage: 0
  become: true
  gather_facts: false
  tasks:
    - name: fleet-agent, with debship's checks and rollback
      debship.fleet.apply:
        deb: "{{ deb }}"
"""


def run_playbook(tmp_path: Path, hosts, debs_by_host: list, *args: str):
    return ansible.run_playbook(tmp_path, hosts, PLAYBOOK, [f"deb=/var/tmp/{d}" for d in debs_by_host], *args)


def diff_text(before: str | None, after: str) -> str:
    """Ansible's rendering of the module's diff for fleet-agent going from ``before`` to ``after``."""

    def side(mark: str, version: str | None) -> list[str]:
        if version is None:
            return [f"{mark}fleet-agent (not installed)"]
        return [f"{mark}fleet-agent {version}"] + [
            f"{mark}  {u}: enabled, systemd not running" for u in ("fleet-agent-startup.service", "fleet-agent.service")
        ]

    return "\n".join(side("-", before) + side("+", after)) + "\n"


def test_the_module_on_four_hosts(make_ssh_hosts, apply_debs, tmp_path):
    if sys.version_info[:2] != (3, 11):
        _missing("a Python 3.11 venv (its compiled libraries are copied into the Debian 12 hosts)")
    ansible_tool("ansible-playbook")
    hosts = make_ssh_hosts(4)
    share_key(hosts)
    for h in hosts:
        install_debship(h)
        for deb in apply_debs.values():
            shutil.copy(deb, h.root.path / "var/tmp" / deb.name)
    v1, v2, bad = (apply_debs[v].name for v in ("1.0.0", "2.0.0", "3.0.0-bad"))

    p = run_playbook(tmp_path, hosts, [v1] * 4, "--check", "--diff")
    assert p.returncode == 0, p.stdout + p.stderr
    assert all(r["changed"] == 1 for r in recap(p.stdout).values()) and len(recap(p.stdout)) == 4
    # diff mode in check mode: what the host has, and debship's plan
    assert p.stdout.count("-fleet-agent (not installed)\n+fleet-agent 1.0.0 (planned)\n") == 4, p.stdout
    assert [installed(h) for h in hosts] == [""] * 4

    p = run_playbook(tmp_path, hosts, [v1] * 4, "--diff")
    assert p.returncode == 0, p.stdout + p.stderr
    assert [r["changed"] for r in recap(p.stdout).values()] == [1] * 4
    assert [installed(h) for h in hosts] == ["ii 1.0.0"] * 4
    # diff mode: the version and the units before and after, as dpkg and systemctl report them on
    # the host (these loopback hosts are chroots: units are enabled, systemd does not run them)
    assert p.stdout.count(diff_text(None, "1.0.0")) == 4, p.stdout

    p = run_playbook(tmp_path, hosts, [v1] * 4)
    assert p.returncode == 0 and [r["changed"] for r in recap(p.stdout).values()] == [0] * 4, p.stdout

    p = run_playbook(tmp_path, hosts, [bad, v2, v2, v2], "--diff")  # the first batch (one host) fails its checks
    assert p.returncode != 0
    rows = recap(p.stdout)
    assert rows["h0"]["failed"] == 1 and "rolled back to 1.0.0" in p.stdout, p.stdout
    # a failed task's diff is not printed; its result carries the host's state before and after:
    # back where it was, units and all
    failed = failed_result(p.stdout, "h0")
    units = [
        {"name": u, "enabled": "enabled", "active": None}
        for u in ("fleet-agent-startup.service", "fleet-agent.service")
    ]
    assert (
        failed["host_before"] == failed["host_after"] == {"package": "fleet-agent", "version": "1.0.0", "units": units}
    )
    assert [installed(h) for h in hosts] == ["ii 1.0.0"] * 4  # h0 rolled back; max_fail_percentage stopped the rest
    assert all(rows.get(f"h{i}", {}).get("changed", 0) == 0 for i in (1, 2, 3))


def test_the_collection_builds_offline(tmp_path):
    p = subprocess.run(
        [
            ansible_tool("ansible-galaxy"),
            "collection",
            "build",
            "--output-path",
            str(tmp_path),
            str(COLLECTIONS / "ansible_collections/debship/fleet"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"},
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert [f.name for f in tmp_path.glob("*.tar.gz")] == ["debship-fleet-0.1.0.tar.gz"]
    doc = subprocess.run(
        [ansible_tool("ansible-doc"), "debship.fleet.apply"],
        capture_output=True,
        text=True,
        env={**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS), "ANSIBLE_NOCOLOR": "1"},
    )
    assert doc.returncode == 0 and "check mode" in doc.stdout.lower(), doc.stdout + doc.stderr  # its docs parse
