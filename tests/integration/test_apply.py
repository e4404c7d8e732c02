"""``debship apply`` on the host itself: the same scenario once through ``ship`` over SSH and
once through ``apply`` run inside a second, identical loopback host (chrooted, as root, with
debship installed into it from this checkout and the venv's libraries), then the two hosts'
end states compared: install, upgrade, a failing version rolled back by itself, a version
taken back from the store by NAME=VERSION, the pin, the history, the store."""

from __future__ import annotations

import json
import re
import shutil
import sys

import pytest

from builder.layout import Layout
from builder.repo import publish
from tests.harness.applying import install_debship
from tests.harness.aptrepo import export_key
from tests.harness.helpers import _missing
from tests.harness.shipping import installed, run_ship

pytestmark = pytest.mark.root
LAY = Layout("fleet-agent")


def apply_in(host, *args: str, offline: bool = True):
    return host.run_root(["debship", "apply", *args], check=False, offline=offline)


def end_state(host) -> dict:
    """What ship or apply leaves on the host, less timestamps and the user who ran it."""
    root = host.root.path
    history = [line.split(None, 1)[1] for line in (root / LAY.history.lstrip("/")).read_text().splitlines()]
    log = [
        re.sub(r"^\S+ |; by \S+ via debship$", "", l)
        for l in (root / LAY.deploy_log.lstrip("/")).read_text().splitlines()
        if " ship: " in l
    ]
    return {
        "dpkg": installed(host),
        "pin": (root / LAY.apt_pin.lstrip("/")).read_text(),
        "history": history,
        "ship_log": log,
        "store": sorted(p.name for p in (root / LAY.store.lstrip("/")).glob("*.deb")),
        "source": (root / LAY.apt_source.lstrip("/")).read_text(),
        "enabled": sorted(p.name for p in (root / "etc/systemd/system/multi-user.target.wants").glob("fleet*")),
        "config": (root / "etc/fleet-agent/agent.conf").read_text(),
    }


def test_apply_on_the_host_ends_like_ship_over_ssh(make_ssh_hosts, apply_debs):
    if sys.version_info[:2] != (3, 11):
        _missing("a Python 3.11 venv (its compiled libraries are copied into the Debian 12 hosts)")
    shipped, applied = make_ssh_hosts(2)
    install_debship(applied)
    for deb in apply_debs.values():
        shutil.copy(deb, applied.root.path / "var/tmp" / deb.name)

    for v, code in (("1.0.0", 0), ("2.0.0", 0), ("3.0.0-bad", 3)):
        r = run_ship([shipped], apply_debs[v])
        assert r.exit_code == code, r.output + r.stderr
        p = apply_in(applied, f"/var/tmp/{apply_debs[v].name}")
        assert p.returncode == code, p.stdout + p.stderr
    assert "rolled back to 2.0.0" in p.stdout
    assert end_state(applied) == end_state(shipped)
    assert end_state(applied)["dpkg"] == "ii 2.0.0" and "Pin: version 2.0.0" in end_state(applied)["pin"]

    r = run_ship([shipped], apply_debs["2.0.0"], "--to-version", "1.0.0")
    assert r.exit_code == 0, r.output + r.stderr
    p = apply_in(applied, "fleet-agent=1.0.0", "--json")  # from the host's store
    assert p.returncode == 0, p.stdout + p.stderr
    summary = [json.loads(l) for l in p.stdout.splitlines() if '"summary"' in l][0]
    assert (summary["outcome"], summary["before"], summary["after"]) == ("installed", "2.0.0", "1.0.0")
    state = end_state(applied)
    assert state["dpkg"] == end_state(shipped)["dpkg"] == "ii 1.0.0" and "Pin: version 1.0.0" in state["pin"]

    p = apply_in(applied, "fleet-agent=1.0.0")
    assert p.returncode == 0 and "already at 1.0.0" in p.stdout
    p = apply_in(applied, "fleet-agent=9.9.9")
    assert p.returncode == 6 and p.stderr.strip().endswith(
        "fleet-agent 9.9.9 is not kept in /var/lib/debship/fleet-agent (kept: 1.0.0, 2.0.0, 3.0.0); "
        "give its .deb, or --repo URL --repo-key FILE"
    ), p.stderr
    p = apply_in(applied, "/var/tmp/fleet-agent_2.0.0_all.deb", "--dry-run")
    assert p.returncode == 0 and "would upgrade 1.0.0 -> 2.0.0" in p.stdout and installed(applied) == "ii 1.0.0"


def test_apply_name_version_from_a_signed_repository_with_its_rollback(ssh_host, apply_debs, keys, server):
    if sys.version_info[:2] != (3, 11):
        _missing("a Python 3.11 venv (its compiled libraries are copied into the Debian 12 hosts)")
    publish(list(apply_debs.values()), server.repo, sign_key=keys.main)
    install_debship(ssh_host)
    export_key(keys.main, ssh_host.root.path / "root/archive.gpg")
    repo = ["--repo", server.url, "--repo-key", "/root/archive.gpg"]
    for v in ("1.0.0", "2.0.0"):
        p = apply_in(ssh_host, f"fleet-agent={v}", *repo, offline=False)
        assert p.returncode == 0, p.stdout + p.stderr
        assert installed(ssh_host) == f"ii {v}"
    assert not list((ssh_host.root.path / LAY.store.lstrip("/")).glob("*.deb"))  # installed from the repository
    p = apply_in(ssh_host, "fleet-agent=3.0.0", *repo, offline=False)
    assert p.returncode == 3 and "rolled back to 2.0.0" in p.stdout, p.stdout + p.stderr
    assert installed(ssh_host) == "ii 2.0.0"
    assert "Pin: version 2.0.0" in (ssh_host.root.path / LAY.apt_pin.lstrip("/")).read_text()
    p = apply_in(ssh_host, "fleet-agent=7.0.0", *repo, offline=False)
    assert p.returncode == 6 and f"cannot get fleet-agent 7.0.0 from {server.url}" in p.stderr, p.stderr
