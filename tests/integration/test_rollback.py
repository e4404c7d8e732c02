"""Rollback with apt, over real SSH to loopback hosts: the host's local apt
repository of kept versions, `ship --rollback`, `--to-version`, `--list`, and
the automatic rollback when a new version fails."""

from __future__ import annotations

import json

import pytest

from builder.build import build_deb
from tests.harness.project import copy_sample
from tests.harness.shipping import installed, rollback_debs, run_ship

pytestmark = pytest.mark.root
STORE = "var/lib/debship/fleet-agent"


@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    return rollback_debs(tmp_path_factory.mktemp("rollback-debs"))


def apt_policy_versions(host) -> list[str]:
    out = host.run_root(["apt-cache", "madison", "fleet-agent"]).stdout
    return [line.split("|")[1].strip() for line in out.splitlines() if "|" in line]


def packages_index(host) -> list[str]:
    text = (host.root.path / STORE / "Packages").read_text()
    return sorted(line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("Filename: "))


def test_ship_three_then_rollback_to_version_and_list(ssh_host, debs):
    for v in ("1.0.0", "2.0.0", "3.0.0"):
        r = run_ship([ssh_host], debs[v])
        assert r.exit_code == 0, r.output + r.stderr
    assert installed(ssh_host) == "ii 3.0.0"
    assert sorted(apt_policy_versions(ssh_host)) == ["1.0.0", "2.0.0", "3.0.0"]

    r = run_ship([ssh_host], debs["3.0.0"], "--rollback")
    assert r.exit_code == 0, r.output + r.stderr
    assert installed(ssh_host) == "ii 2.0.0"
    assert "rolled back 3.0.0 -> 2.0.0" in r.output

    r = run_ship([ssh_host], debs["3.0.0"], "--to-version", "1.0.0")
    assert r.exit_code == 0, r.output + r.stderr
    assert installed(ssh_host) == "ii 1.0.0"
    assert "# shipped with 1.0.0" in (ssh_host.root.path / "etc/fleet-agent/agent.conf").read_text()

    r = run_ship([ssh_host], debs["3.0.0"], "--list", json_out=True)
    assert r.exit_code == 0
    summary = [json.loads(l) for l in r.output.splitlines() if '"summary"' in l][0]
    assert summary["after"] == "1.0.0" and summary["detail"] == "kept: 1.0.0, 2.0.0, 3.0.0"

    r = run_ship([ssh_host], None, "--list", "--package", "fleet-agent")  # no .deb at hand
    assert r.exit_code == 0 and "kept: 1.0.0, 2.0.0, 3.0.0" in r.output and "listed" in r.output

    r = run_ship([ssh_host], debs["3.0.0"], "--to-version", "9.9.9")
    assert r.exit_code == 1 and "version 9.9.9 is not kept on the host" in r.stderr


def test_by_hand_apt_install_of_a_kept_version_works_offline(ssh_host, debs):
    for v in ("1.0.0", "2.0.0"):
        assert run_ship([ssh_host], debs[v]).exit_code == 0
    source = (ssh_host.root.path / "etc/apt/sources.list.d/debship-fleet-agent.list").read_text()
    assert source == "deb [trusted=yes] file:/var/lib/debship/fleet-agent ./\n"
    listing = ssh_host.root.run(["apt", "list", "-a", "fleet-agent"], offline=True).stdout
    assert "1.0.0" in listing and "2.0.0" in listing
    proc = ssh_host.root.run(
        ["apt-get", "install", "-y", "--allow-downgrades", "fleet-agent=1.0.0"],
        env={"DEBIAN_FRONTEND": "noninteractive"},
        offline=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert installed(ssh_host) == "ii 1.0.0"


def test_a_failing_version_is_rolled_back_by_itself(ssh_host, debs):
    assert run_ship([ssh_host], debs["3.0.0"]).exit_code == 0
    conf = ssh_host.root.path / "etc/fleet-agent/agent.conf"
    conf.write_text(conf.read_text() + "\n# edited by the admin\n")

    r = run_ship([ssh_host], debs["4.0.0-bad"])
    assert r.exit_code == 3, r.output + r.stderr
    assert installed(ssh_host) == "ii 3.0.0"
    assert "rolled-back" in r.output and "rolled back to 3.0.0" in r.output
    assert "startup failed on purpose" in r.output  # the tail of the deploy log says why
    p = ssh_host.root.path
    assert (p / "etc/systemd/system/multi-user.target.wants/fleet-agent.service").is_symlink()
    assert (p / "usr/lib/fleet-agent/startup.py").read_text().count("failed on purpose") == 0
    assert "# edited by the admin" in conf.read_text()  # the admin's edit survived upgrade and rollback
    assert "rolled back to 3.0.0" in (p / "var/log/fleet-agent/deploy.log").read_text()


def test_no_rollback_leaves_the_failed_version(ssh_host, debs):
    assert run_ship([ssh_host], debs["3.0.0"]).exit_code == 0
    r = run_ship([ssh_host], debs["4.0.0-bad"], "--no-rollback")
    assert r.exit_code == 1
    assert installed(ssh_host).startswith("iF 4.0.0")  # half-configured, as dpkg left it


def test_a_failing_first_install_is_removed(ssh_host, debs):
    r = run_ship([ssh_host], debs["4.0.0-bad"])
    assert r.exit_code == 1
    assert "removed the package (the host had no earlier version)" in r.stderr + r.output
    assert installed(ssh_host).startswith("rc")  # removed; conffiles and the deploy log kept for the admin
    assert not (ssh_host.root.path / "usr/lib/fleet-agent/agent.py").exists()


def test_store_keeps_the_newest_n_and_the_index_matches(ssh_host, tmp_path):
    project = copy_sample(tmp_path / "project")
    text = (project / "pyproject.toml").read_text().replace('license = "MIT"', 'license = "MIT"\nkeep-versions = 2')
    (project / "pyproject.toml").write_text(text)
    versions = ["1.0.0", "1.1.0", "1.2.0", "1.3.0"]
    for v in versions:
        deb = build_deb(project, tmp_path / v, version=v).path
        assert run_ship([ssh_host], deb).exit_code == 0
    assert run_ship([ssh_host], deb, "--to-version", "1.2.0").exit_code == 0
    kept = sorted(p.name for p in (ssh_host.root.path / STORE).glob("*.deb"))
    assert kept == ["fleet-agent_1.2.0_all.deb", "fleet-agent_1.3.0_all.deb"]
    assert packages_index(ssh_host) == [f"./{k}" for k in kept]


def test_a_corrupted_or_missing_index_is_rebuilt(ssh_host, debs):
    for v in ("1.0.0", "2.0.0"):
        assert run_ship([ssh_host], debs[v]).exit_code == 0
    index = ssh_host.root.path / STORE / "Packages"
    index.write_text("Package: fleet-agent\nVersion: 9.9.9\nFilename: ./nothing.deb\n\n")
    r = run_ship([ssh_host], debs["2.0.0"], "--rollback")
    assert r.exit_code == 0, r.output + r.stderr
    assert installed(ssh_host) == "ii 1.0.0"
    assert packages_index(ssh_host) == ["./fleet-agent_1.0.0_all.deb", "./fleet-agent_2.0.0_all.deb"]
    index.unlink()
    (ssh_host.root.path / STORE / "Release").unlink()
    r = run_ship([ssh_host], debs["2.0.0"], "--to-version", "2.0.0")
    assert r.exit_code == 0, r.output + r.stderr
    assert installed(ssh_host) == "ii 2.0.0"
    assert index.is_file() and sorted(apt_policy_versions(ssh_host)) == ["1.0.0", "2.0.0"]
