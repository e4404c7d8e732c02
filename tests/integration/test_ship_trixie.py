"""`ship` to a Debian 13 (trixie) host: apt 3.0 (sqv verifies signatures), python 3.13, systemd
257, merged /usr.  One loopback host (a cached trixie root served by its own sshd, see
hostlab/sshhost.py) for the whole module; the tests run in order on it: install, upgrade, a
failing version rolled back by itself, `--rollback`, the host's own `apt-get upgrade` held by
debship's pin, purge; then the same through a signed repository (`--via-repo`), which trixie's
apt checks with sqv.  The bookworm host gets all of this from test_ship.py, test_rollback.py,
test_pin.py and test_via_repo.py; tests/system/test_ship_trixie_booted.py boots trixie."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from builder import gpg
from builder.layout import Layout
from builder.pkgsig import sig_path, sign
from builder.repo import publish
from tests.harness.aptrepo import export_key
from tests.harness.hoststate import leftovers, purge
from tests.harness.shipping import installed, rollback_debs, run_ship

pytestmark = [pytest.mark.root, pytest.mark.parametrize("suite_ssh_host", ["trixie"], indirect=True)]
LAYOUT = Layout("fleet-agent")
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
UNIT = "usr/lib/systemd/system/fleet-agent.service"
WANTS = "etc/systemd/system/multi-user.target.wants/fleet-agent.service"


@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    return rollback_debs(tmp_path_factory.mktemp("trixie-debs"))


@pytest.fixture(scope="module")
def clean_files(suite_ssh_host):
    """Every path of the host before debship touched it (taken at the module's first test)."""
    return suite_ssh_host.root.files()


def ok(r) -> None:
    assert r.exit_code == 0, r.output + r.stderr


def pinned_at(host) -> str | None:
    pin = host.root.path / LAYOUT.apt_pin.lstrip("/")
    lines = pin.read_text().splitlines() if pin.exists() else []
    return next((line.split()[-1] for line in lines if line.startswith("Pin: version")), None)


def admin_upgrades(host, offline: bool = True) -> None:
    """The host's own routine upgrade run."""
    for verb in ("upgrade", "dist-upgrade"):
        r = host.run_root(["apt-get", verb, "-y", "-q"], env=APT_ENV, offline=offline, check=False)
        assert r.returncode == 0, r.stdout + r.stderr


def test_it_is_debian_13(suite_ssh_host, clean_files):
    host = suite_ssh_host
    assert host.run_root(["cat", "/etc/debian_version"]).stdout.startswith("13.")
    assert host.run_root(["apt-get", "--version"]).stdout.startswith("apt 3.")
    assert host.run_root(["python3", "-c", "import sys; print(sys.version_info[:2])"]).stdout.strip() == "(3, 13)"
    assert (host.root.path / "lib").is_symlink()  # merged /usr


def test_install_upgrade_and_a_failing_version_rolled_back_by_itself(suite_ssh_host, debs):
    host = suite_ssh_host
    ok(run_ship([host], debs["1.0.0"]))
    assert installed(host) == "ii 1.0.0" and pinned_at(host) == "1.0.0"
    p = host.root.path
    assert (p / UNIT).is_file() and (p / WANTS).is_symlink()
    assert "dpkg -i" not in (p / "var/lib/debship/fleet-agent/last-install.log").read_text()
    for v in ("2.0.0", "3.0.0"):
        r = run_ship([host], debs[v])
        ok(r)
        assert installed(host) == f"ii {v}" and pinned_at(host) == v
    assert "# shipped with 3.0.0" in (p / "etc/fleet-agent/agent.conf").read_text()

    r = run_ship([host], debs["4.0.0-bad"])
    assert r.exit_code == 3, r.output + r.stderr
    assert "rolled back to 3.0.0" in r.output and "startup failed on purpose" in r.output
    assert installed(host) == "ii 3.0.0" and pinned_at(host) == "3.0.0"
    assert (p / WANTS).is_symlink()


def test_rollback_is_held_through_the_hosts_own_apt_get_upgrade(suite_ssh_host, debs):
    host = suite_ssh_host
    r = run_ship([host], debs["3.0.0"], "--rollback")
    ok(r)
    assert "rolled back 3.0.0 -> 2.0.0" in r.output
    assert installed(host) == "ii 2.0.0" and pinned_at(host) == "2.0.0"
    policy = host.run_root(["apt-cache", "policy", "fleet-agent"], offline=True).stdout
    assert "Candidate: 2.0.0" in policy and "3.0.0" in policy, policy  # the store lists 3.0.0: the pin holds
    admin_upgrades(host)
    assert installed(host) == "ii 2.0.0"
    ok(run_ship([host], debs["3.0.0"], "--to-version", "1.0.0"))
    assert installed(host) == "ii 1.0.0" and pinned_at(host) == "1.0.0"
    assert "# shipped with 1.0.0" in (host.root.path / "etc/fleet-agent/agent.conf").read_text()


def test_purge_leaves_nothing_of_the_package(suite_ssh_host, clean_files):
    host = suite_ssh_host
    output = purge(host)
    assert "not empty so not removed" not in output, output
    assert installed(host) in ("", "un")
    assert leftovers(host, clean_files) == ([], [])
    p = host.root.path
    assert not (p / LAYOUT.apt_pin.lstrip("/")).exists()
    assert not [f for f in host.root.files() if f.startswith("usr/lib/systemd/system/fleet-agent")]


def test_via_repo_signed_with_ed25519_is_accepted_by_sqv(suite_ssh_host, clean_files, debs, keys, server, tmp_path):
    host = suite_ssh_host
    publish([debs[v] for v in ("1.0.0", "2.0.0", "3.0.0")], server.repo, sign_key=keys.main)
    via = ["--via-repo", server.url, "--repo-key", str(export_key(keys.main, tmp_path / "archive.gpg"))]
    for v in ("1.0.0", "2.0.0"):
        ok(run_ship([host], debs[v], *via))
        assert installed(host) == f"ii {v}" and pinned_at(host) == v
    ok(run_ship([host], debs["2.0.0"], "--rollback", *via))
    assert installed(host) == "ii 1.0.0" and pinned_at(host) == "1.0.0"
    admin_upgrades(host, offline=False)  # the repository (127.0.0.1) lists 2.0.0 and 3.0.0
    assert installed(host) == "ii 1.0.0"
    assert not list((host.root.path / "var/lib/debship/fleet-agent").glob("*.deb"))  # nothing was uploaded

    wrong = export_key(keys.other, tmp_path / "other.gpg")
    r = run_ship([host], debs["3.0.0"], *via[:2], "--repo-key", str(wrong))
    assert r.exit_code == 1 and "--repo-key" in r.stderr, r.output + r.stderr  # sqv refuses the signature
    assert installed(host) == "ii 1.0.0"

    output = purge(host)
    assert "not empty so not removed" not in output, output
    assert leftovers(host, clean_files) == ([], [])


def test_a_repository_signed_with_rsa_1024_is_refused_by_apt_3(
    suite_ssh_host, debs, keys, server, tmp_path, monkeypatch
):
    """What debship publish refuses (tests/integration/test_signing_keys.py), trixie's apt refuses
    too: a repository another tool signed with an RSA-1024 key.  (publish's own check is switched
    off here to make that repository; apt, not debship, is what is tested.)"""
    host = suite_ssh_host
    uid = "weak archive <weak@example.com>"
    subprocess.run(
        ["gpg", "--batch", "--passphrase", "", "--quick-gen-key", uid, "rsa1024", "sign", "never"],
        check=True,
        capture_output=True,
    )
    monkeypatch.setattr(gpg, "check_key_policy", lambda *a, **kw: [])
    publish([debs["1.0.0"]], server.repo, sign_key=uid)
    via = ["--via-repo", server.url, "--repo-key", str(export_key(uid, tmp_path / "weak.gpg"))]
    r = run_ship([host], debs["1.0.0"], *via)
    assert r.exit_code == 1, r.output + r.stderr
    assert "RSA1024 is not considered secure" in r.stderr, r.stderr  # sqv's reason, on one line
    assert "refuses the repository's signing key or signature by policy: publish it again with a key" in r.stderr
    assert installed(host) in ("", "un")


def test_trusted_keys_are_checked_with_sqv_as_debian_13_has_no_gpgv(suite_ssh_host, debs, keys, server, tmp_path):
    """apt 3 depends on sqv instead of gpgv: ship --trust-key's check must work with sqv alone."""
    host = suite_ssh_host
    assert host.run_root(["sh", "-c", "command -v gpgv"], check=False).returncode != 0
    signed = {}
    for v, key in (("1.0.0", keys.main), ("2.0.0", keys.other), ("3.0.0", None)):
        signed[v] = tmp_path / v / debs[v].name
        signed[v].parent.mkdir()
        shutil.copy(debs[v], signed[v])
        if key:
            sign(signed[v], key)
    team = export_key(keys.main, tmp_path / "team.gpg")
    r = run_ship([host], signed["1.0.0"], "--trust-key", str(team))
    ok(r)
    assert f"signature good, key {keys.main}" in r.output and installed(host) == "ii 1.0.0"
    r = run_ship([host], signed["2.0.0"])
    assert r.exit_code == 1 and "refused fleet-agent 2.0.0: signed by key" in r.stderr, r.output + r.stderr
    assert "which this host does not trust" in r.stderr
    altered = tmp_path / "altered" / signed["3.0.0"].name
    altered.parent.mkdir()
    shutil.copy(signed["3.0.0"], altered)
    sig_path(altered).write_bytes(sig_path(signed["1.0.0"]).read_bytes())  # 1.0.0's signature
    r = run_ship([host], altered)
    assert r.exit_code == 1 and "its signature does not match its bytes" in r.stderr, r.output + r.stderr
    r = run_ship([host], signed["3.0.0"])
    assert r.exit_code == 1 and "it is not signed" in r.stderr, r.output + r.stderr
    assert installed(host) == "ii 1.0.0"

    # --via-repo checks the signature published beside the package the same way
    publish([signed["1.0.0"], signed["2.0.0"]], server.repo, sign_key=keys.main)
    via = ["--via-repo", server.url, "--repo-key", str(export_key(keys.main, tmp_path / "archive.gpg"))]
    r = run_ship([host], signed["2.0.0"], *via)
    assert r.exit_code == 1 and "which this host does not trust" in r.stderr, r.output + r.stderr
    assert installed(host) == "ii 1.0.0"
