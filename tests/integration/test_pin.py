"""The version debship installed stays put: after a ship, a rollback or an automatic
rollback, the host's own ``apt-get upgrade`` and ``dist-upgrade`` (real apt, inside the
loopback host) keep it although the store or the repository lists newer versions;
``apt-cache policy`` says why (debship's pin at 1001); debship's next ship still moves it;
purge leaves no pin behind."""

from __future__ import annotations

import pytest

from builder.build import build_deb
from builder.layout import Layout
from builder.repo import publish
from tests.harness.aptrepo import export_key
from tests.harness.project import break_startup, copy_sample
from tests.harness.shipping import installed, run_ship

pytestmark = pytest.mark.root
PIN = Layout("fleet-agent").apt_pin.lstrip("/")
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}


@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    """2.0.0 and 2.1.0 of the sample, and a 2.2.0 whose startup.py fails."""
    base = tmp_path_factory.mktemp("pin-debs")
    project = copy_sample(base / "project")
    out = {v: build_deb(project, base / v, version=v).path for v in ("2.0.0", "2.1.0")}
    break_startup(project)
    out["2.2.0-bad"] = build_deb(project, base / "2.2.0", version="2.2.0").path
    return out


def admin_upgrades(host, offline: bool = True) -> None:
    """What an admin's routine (or config management's) upgrade run does on the host."""
    for verb in ("upgrade", "dist-upgrade"):
        r = host.run_root(["apt-get", verb, "-y", "-q"], env=APT_ENV, offline=offline, check=False)
        assert r.returncode == 0, r.stdout + r.stderr


def policy(host) -> str:
    return host.run_root(["apt-cache", "policy", "fleet-agent"], offline=True).stdout


def pinned_at(host) -> str | None:
    pin = host.root.path / PIN
    return (
        next((l.split()[-1] for l in pin.read_text().splitlines() if l.startswith("Pin: version")), None)
        if pin.exists()
        else None
    )


def test_rollback_stays_put_through_upgrade_and_the_next_ship_moves_it(ssh_host, debs):
    for v in ("2.0.0", "2.1.0"):
        r = run_ship([ssh_host], debs[v])
        assert r.exit_code == 0, r.output + r.stderr
        assert pinned_at(ssh_host) == v
    r = run_ship([ssh_host], debs["2.1.0"], "--rollback")
    assert r.exit_code == 0, r.output + r.stderr
    assert installed(ssh_host) == "ii 2.0.0" and pinned_at(ssh_host) == "2.0.0"

    admin_upgrades(ssh_host)
    assert installed(ssh_host) == "ii 2.0.0"  # the store still lists 2.1.0: without the pin apt takes it
    text = policy(ssh_host)
    assert "Candidate: 2.0.0" in text and "*** 2.0.0 1001" in text, text
    summary = ssh_host.run_root(["apt-cache", "policy"], offline=True).stdout
    assert "fleet-agent -> 2.0.0 with priority 1001" in summary, summary

    r = run_ship([ssh_host], debs["2.1.0"])  # debship's own next ship is not held back
    assert r.exit_code == 0, r.output + r.stderr
    assert installed(ssh_host) == "ii 2.1.0" and pinned_at(ssh_host) == "2.1.0"
    r = run_ship([ssh_host], debs["2.1.0"], "--to-version", "2.0.0")
    assert r.exit_code == 0 and installed(ssh_host) == "ii 2.0.0" and pinned_at(ssh_host) == "2.0.0"

    r = ssh_host.run_root(["apt-get", "purge", "-y", "-q", "fleet-agent"], env=APT_ENV, offline=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not (ssh_host.root.path / PIN).exists()
    assert not list((ssh_host.root.path / "etc/apt/preferences.d").glob("debship-*"))


def test_an_automatic_rollback_stays_put_and_a_missing_pin_is_put_back(ssh_host, debs):
    for v in ("2.0.0", "2.1.0"):
        assert run_ship([ssh_host], debs[v]).exit_code == 0
    (ssh_host.root.path / PIN).unlink()  # released by hand: the next ship at this version pins again
    r = run_ship([ssh_host], debs["2.1.0"])
    assert r.exit_code == 0 and "already at 2.1.0" in r.output and pinned_at(ssh_host) == "2.1.0"

    r = run_ship([ssh_host], debs["2.2.0-bad"])
    assert r.exit_code == 3, r.output + r.stderr
    assert installed(ssh_host) == "ii 2.1.0" and pinned_at(ssh_host) == "2.1.0"
    admin_upgrades(ssh_host)
    assert installed(ssh_host) == "ii 2.1.0"  # not the stored 2.2.0 that failed


def test_a_failed_first_install_leaves_no_pin(ssh_host, debs):
    r = run_ship([ssh_host], debs["2.2.0-bad"])
    assert r.exit_code == 1 and "removed the package" in r.stderr + r.output
    assert not (ssh_host.root.path / PIN).exists()


def test_via_repo_rollback_stays_put_although_the_repository_lists_newer(ssh_host, debs, keys, server, tmp_path):
    publish([debs["2.0.0"], debs["2.1.0"]], server.repo, sign_key=keys.main)
    via = ["--via-repo", server.url, "--repo-key", str(export_key(keys.main, tmp_path / "archive.gpg"))]
    for v in ("2.0.0", "2.1.0"):
        assert run_ship([ssh_host], debs[v], *via).exit_code == 0
    r = run_ship([ssh_host], debs["2.1.0"], "--rollback", *via)
    assert r.exit_code == 0, r.output + r.stderr
    assert installed(ssh_host) == "ii 2.0.0"
    ssh_host.run_root(["apt-get", "update", "-q"], offline=False)  # the repository, on 127.0.0.1
    admin_upgrades(ssh_host, offline=False)
    assert installed(ssh_host) == "ii 2.0.0"
    assert "*** 2.0.0 1001" in policy(ssh_host)
    r = run_ship([ssh_host], debs["2.1.0"], *via)
    assert r.exit_code == 0 and installed(ssh_host) == "ii 2.1.0" and pinned_at(ssh_host) == "2.1.0"
