"""``ship --via-repo``: hosts install from a signed apt repository published by
``debship publish`` and served over HTTP on 127.0.0.1 (real gpg, real apt on the
loopback hosts), with the same checks and the automatic rollback, taken from
the repository."""

from __future__ import annotations

import pytest

from builder.build import build_deb
from builder.repo import publish
from tests.harness.aptrepo import export_key
from tests.harness.project import break_startup, copy_sample
from tests.harness.shipping import installed, run_ship, share_key

pytestmark = pytest.mark.root
SOURCE = "etc/apt/sources.list.d/debship-fleet-agent.sources"
KEYRING = "etc/apt/keyrings/debship-fleet-agent.asc"


@pytest.fixture
def published(tmp_path, keys, server):
    """1.0.0 and 2.0.0 of the sample and a 3.0.0 whose startup fails, all published."""
    project = copy_sample(tmp_path / "project")
    debs = {v: build_deb(project, tmp_path / v, version=v).path for v in ("1.0.0", "2.0.0")}
    break_startup(project)
    debs["3.0.0"] = build_deb(project, tmp_path / "3.0.0", version="3.0.0").path
    publish(list(debs.values()), server.repo, sign_key=keys.main)
    key = export_key(keys.main, tmp_path / "archive.gpg")
    return debs, ["--via-repo", server.url, "--repo-key", str(key)]


def test_ship_via_repo_to_two_hosts_and_roll_back_from_it(make_ssh_hosts, published):
    debs, via = published
    hosts = make_ssh_hosts(2)
    share_key(hosts)
    for v in ("1.0.0", "2.0.0"):
        r = run_ship(hosts, debs[v], *via)
        assert r.exit_code == 0, r.output + r.stderr
        assert [installed(h) for h in hosts] == [f"ii {v}"] * 2
    for h in hosts:
        source = (h.root.path / SOURCE).read_text()
        assert "Signed-By: /etc/apt/keyrings/debship-fleet-agent.asc" in source and "URIs: http://127.0.0.1:" in source
        assert not list((h.root.path / "var/lib/debship/fleet-agent").glob("*.deb"))  # nothing was uploaded

    r = run_ship(hosts, debs["3.0.0"], *via)
    assert r.exit_code == 3, r.output + r.stderr
    assert [installed(h) for h in hosts] == ["ii 2.0.0"] * 2
    assert r.output.count("rolled back to 2.0.0: apt-get install failed") == 2

    r = run_ship(hosts, debs["3.0.0"], "--rollback", *via)  # history: 1.0.0, 2.0.0 (3.0.0 never took)
    assert r.exit_code == 0, r.output + r.stderr
    assert [installed(h) for h in hosts] == ["ii 1.0.0"] * 2

    r = run_ship(hosts, debs["2.0.0"], *via)
    assert r.exit_code == 0 and [installed(h) for h in hosts] == ["ii 2.0.0"] * 2
    r = run_ship(hosts, debs["2.0.0"], *via)
    assert r.exit_code == 0 and r.output.count("already at 2.0.0") >= 2


def test_a_wrong_key_after_a_good_ship_is_refused_though_the_lists_are_cached(ssh_host, published, keys, tmp_path):
    """The host verified the repository's Release with the right key before, and the server answers
    "not modified": apt would reuse that Release unchecked, so ship drops it and apt verifies again."""
    debs, via = published
    assert run_ship([ssh_host], debs["2.0.0"], *via).exit_code == 0
    keyring = ssh_host.root.path / KEYRING
    trusted = (keyring.read_bytes(), (ssh_host.root.path / SOURCE).read_bytes())
    wrong = export_key(keys.other, tmp_path / "other.gpg")
    r = run_ship([ssh_host], debs["1.0.0"], *via[:2], "--repo-key", str(wrong))
    assert r.exit_code == 1, r.output + r.stderr
    assert "apt-get update of http://127.0.0.1:" in r.stderr and "--repo-key" in r.stderr
    assert installed(ssh_host) == "ii 2.0.0"
    # the refused key is not left in place: the host keeps the key and source it trusted
    assert (keyring.read_bytes(), (ssh_host.root.path / SOURCE).read_bytes()) == trusted
    r = run_ship([ssh_host], debs["1.0.0"], *via)  # the right key again: it installs
    assert r.exit_code == 0 and installed(ssh_host) == "ii 1.0.0", r.output + r.stderr


def test_a_wrong_key_fails_the_host_before_anything_is_installed(ssh_host, published, keys, tmp_path):
    debs, via = published
    wrong = export_key(keys.other, tmp_path / "other.gpg")
    r = run_ship([ssh_host], debs["1.0.0"], *via[:2], "--repo-key", str(wrong))
    assert r.exit_code == 1
    assert "apt-get update of http://127.0.0.1:" in r.stderr and "--repo-key" in r.stderr
    assert installed(ssh_host) == ""
    # no source nor key is left that would fail every later apt-get update on the host
    assert not (ssh_host.root.path / SOURCE).exists() and not (ssh_host.root.path / KEYRING).exists()


def test_a_source_clashing_with_another_for_the_same_repository_is_taken_back(ssh_host, published, keys, tmp_path):
    """apt refuses two sources of one repository with different Signed-By and then reads no
    source at all: the ship stops, names the clash and leaves the host's apt as it was."""
    debs, via = published
    other = ssh_host.root.path / "etc/apt/sources.list.d/fleet.list"
    export_key(keys.main, ssh_host.root.path / "etc/apt/trusted.fleet.gpg")
    other.write_text(f"deb [signed-by=/etc/apt/trusted.fleet.gpg] {via[1]} stable main\n")
    r = run_ship([ssh_host], debs["1.0.0"], *via)
    assert r.exit_code == 1, r.output + r.stderr
    assert f"another apt source on the host lists {via[1]} with another key" in r.stderr, r.stderr
    assert "Conflicting values set for option Signed-By" in r.stderr
    assert not (ssh_host.root.path / SOURCE).exists()
    assert not (ssh_host.root.path / KEYRING).exists()
    assert ssh_host.run_root(["apt-cache", "policy"], check=False).returncode == 0  # apt reads its sources again
    assert installed(ssh_host) == ""
