"""A new instance installs the package by itself at first boot: a booted container
(systemd as PID 1, cloud-init with a NoCloud seed) whose user-data is what
`debship cloud-init` prints for a repository `debship publish` made, served over
HTTP on 127.0.0.1.  No ship at all: cloud-init's apt module adds the signed
source, its package module installs the package, the postinst starts the units."""

from __future__ import annotations

import json

import pytest

from builder.cli import main
from builder.repo import publish
from tests.harness.aptrepo import export_key
from tests.harness.booted import AGENT, healthz
from tests.harness.helpers import cli_runner

pytestmark = pytest.mark.root


def test_first_boot_installs_from_the_repository(make_booted_hosts, keys, server, sample, tmp_path):
    publish([sample["v1"], sample["v2"]], server.repo, sign_key=keys.main)
    key = export_key(keys.main, tmp_path / "archive.gpg")
    r = cli_runner().invoke(
        main, ["cloud-init", "--repo", server.url, "--repo-key", str(key), "--package", "fleet-agent=1.0.0"]
    )
    assert r.exit_code == 0, r.stderr
    (host,) = make_booted_hosts(1, cloud=True, user_data=r.stdout, boot_timeout=120)

    done = host.run_root(["cloud-init", "status", "--wait", "--long"], check=False, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    status = host.run_root(["dpkg-query", "-W", "-f=${db:Status-Abbrev}${Version}", "fleet-agent"], check=False)
    assert status.stdout.strip() == "ii 1.0.0", (
        done.stdout + host.run_root(["sh", "-c", "tail -n 40 /var/log/cloud-init-output.log"], check=False).stdout
    )
    assert host.run_root(["systemctl", "is-active", AGENT], check=False).stdout.strip() == "active"
    assert healthz(host, sample["port"])["version"] == "1.0.0"
    # the pinned version, not the newest; the source is the signed repository and nothing else
    policy = host.run_root(["apt-cache", "policy", "fleet-agent"]).stdout
    assert "1.1.0" in policy and server.url in policy
    assert any(p.startswith("/pool/main/f/fleet-agent/fleet-agent_1.0.0_all.deb") for p in server.requested)
    assert json.loads(host.run_root(["cat", "/usr/share/debship/fleet-agent.json"]).stdout)["version"] == "1.0.0"
