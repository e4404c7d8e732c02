"""Signed packages: a detached ``.deb.sig`` that leaves the .deb byte-identical, checked with
gpgv on the host against the keys it holds (``ship --trust-key``).  On a host that trusts the
team's key, an unsigned package, one signed by another key and one whose bytes changed after
signing are refused by ``ship`` and by ``ship --via-repo`` (real gpg, real gpgv and apt on
loopback hosts, the repository served over HTTP on 127.0.0.1), nothing installed."""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import pytest

from builder.build import build_deb
from builder.cli import main
from builder.pkgsig import sig_path, sign
from builder.repo import publish
from tests.harness.aptrepo import export_key
from tests.harness.fixtures import require_root_host
from tests.harness.helpers import cli_runner
from tests.harness.project import copy_sample
from tests.harness.shipping import installed, run_ship

pytestmark = pytest.mark.root
STORE = "var/lib/debship/fleet-agent"


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def team_debs(tmp_path_factory, keys):
    """good 1.0.0 (the team's signature); then 1.1.0 unsigned, 1.2.0 signed by another key,
    1.3.0 with the signature of another 1.3.0 (its bytes changed after signing)."""
    base = tmp_path_factory.mktemp("signed")
    project = copy_sample(base / "project")
    out = {}
    for name, version in (("good", "1.0.0"), ("unsigned", "1.1.0"), ("other-key", "1.2.0"), ("altered", "1.3.0")):
        out[name] = build_deb(project, base / name, version=version).path
    sign(out["good"], keys.main)
    sign(out["other-key"], keys.other)
    signed_first = sign(out["altered"], keys.main).read_bytes()
    conf = project / "configs" / "agent.conf"
    conf.write_text(conf.read_text() + "\n# changed after signing\n")
    out["altered"] = build_deb(project, base / "altered-2", version="1.3.0").path
    sig_path(out["altered"]).write_bytes(signed_first)
    return out


def test_signing_leaves_the_deb_byte_identical_and_builds_stay_reproducible(keys, tmp_path):
    project = copy_sample(tmp_path / "project")
    plain = build_deb(project, tmp_path / "a", version="1.0.0").path
    before = sha(plain)
    r = cli_runner().invoke(
        main,
        [
            "build",
            "--project",
            str(project),
            "--out",
            str(tmp_path / "b"),
            "--version",
            "1.0.0",
            "--sign-key",
            keys.main,
        ],
    )
    assert r.exit_code == 0, r.output + r.stderr
    built = tmp_path / "b" / plain.name
    assert sha(built) == before and r.output.strip().splitlines()[-1].endswith(plain.name)
    r = cli_runner().invoke(main, ["sign", str(plain), "--key", keys.main])
    assert r.exit_code == 0, r.output + r.stderr
    assert sha(plain) == before
    for deb in (plain, built):  # Debian's own gpgv verifies it against the exported key
        key = export_key(keys.main, tmp_path / "team.gpg")
        subprocess.run(["gpgv", "--keyring", str(key), str(sig_path(deb)), str(deb)], check=True, capture_output=True)


def test_ship_refuses_unsigned_other_key_and_altered_packages_on_a_host_that_trusts_the_team(
    ssh_host, team_debs, keys, tmp_path
):
    team = tmp_path / "team.asc"
    team.write_bytes(
        subprocess.run(["gpg", "--batch", "--armor", "--export", keys.main], check=True, capture_output=True).stdout
    )
    r = run_ship([ssh_host], team_debs["good"], "--trust-key", str(team))
    assert r.exit_code == 0, r.output + r.stderr
    assert "signature good, key" in r.output and installed(ssh_host) == "ii 1.0.0"
    assert list((ssh_host.root.path / "etc/debship/keys").glob("*.gpg"))
    expected = {
        "unsigned": "it is not signed (no .sig signature beside it)",
        "other-key": "which this host does not trust",
        "altered": "its signature does not match its bytes (altered after signing)",
    }
    for name, why in expected.items():
        r = run_ship([ssh_host], team_debs[name])
        assert r.exit_code == 1, r.output + r.stderr
        version = {"unsigned": "1.1.0", "other-key": "1.2.0", "altered": "1.3.0"}[name]
        assert f"refused fleet-agent {version}: " in r.stderr and why in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
        assert installed(ssh_host) == "ii 1.0.0"
        assert not list((ssh_host.root.path / STORE).glob(f"*_{version}_*"))  # not even kept


def test_a_host_without_trusted_keys_installs_unsigned_packages_as_before(ssh_host, team_debs):
    r = run_ship([ssh_host], team_debs["unsigned"])
    assert r.exit_code == 0, r.output + r.stderr
    assert installed(ssh_host) == "ii 1.1.0" and "signature" not in r.output


def test_via_repo_refuses_what_the_team_did_not_sign(ssh_host, team_debs, keys, server, tmp_path):
    debs = {n: tmp_path / n / p.name for n, p in team_debs.items()}
    for n, p in team_debs.items():  # publish takes a .deb and the .sig beside it
        debs[n].parent.mkdir()
        shutil.copy(p, debs[n])
        if sig_path(p).exists():
            shutil.copy(sig_path(p), sig_path(debs[n]))
    publish(list(debs.values()), server.repo, sign_key=keys.main)
    assert (server.repo / "pool/main/f/fleet-agent/fleet-agent_1.0.0_all.deb.sig").is_file()
    via = ["--via-repo", server.url, "--repo-key", str(export_key(keys.main, tmp_path / "archive.gpg"))]
    team = export_key(keys.main, tmp_path / "team.gpg")
    r = run_ship([ssh_host], debs["good"], *via, "--trust-key", str(team))
    assert r.exit_code == 0, r.output + r.stderr
    assert installed(ssh_host) == "ii 1.0.0" and "signature good, key" in r.output
    expected = {
        "unsigned": "it is not signed",
        "other-key": "which this host does not trust",
        "altered": "its signature does not match its bytes",
    }
    for name, why in expected.items():
        r = run_ship([ssh_host], debs[name], *via)
        assert r.exit_code == 1, r.output + r.stderr
        assert "refused fleet-agent 1." in r.stderr and why in r.stderr, r.stderr
        assert installed(ssh_host) == "ii 1.0.0"


@pytest.fixture(scope="module")
def cloud_init_root():
    """A cached Debian root with Debian's cloud-init (the one test_repo uses), for `cloud-init schema`."""
    require_root_host()
    from hostlab.rootfs import Root, cached_root

    with Root(cached_root(("cloud-init",))) as root:
        yield root


def test_cloud_init_user_data_gives_the_instance_the_team_key(team_debs, keys, tmp_path, cloud_init_root):
    """`debship cloud-init --trust-key` writes the key where ship's check reads it, in the binary
    form gpgv needs (an armored key file is converted); cloud-init's own schema accepts it."""
    import base64
    import json

    armored = tmp_path / "team.asc"
    armored.write_bytes(
        subprocess.run(["gpg", "--batch", "--armor", "--export", keys.main], check=True, capture_output=True).stdout
    )
    repo_key = export_key(keys.main, tmp_path / "archive.gpg")
    r = cli_runner().invoke(
        main,
        [
            "cloud-init",
            "--repo",
            "http://repo.example/debs",
            "--repo-key",
            str(repo_key),
            "--package",
            "fleet-agent",
            "--trust-key",
            str(armored),
        ],
    )
    assert r.exit_code == 0, r.output + r.stderr
    (cloud_init_root.path / "tmp/user-data").write_text(r.stdout)
    proc = cloud_init_root.run(["cloud-init", "schema", "--config-file", "/tmp/user-data"], check=False)
    assert proc.returncode == 0 and "Valid cloud-config" in proc.stdout, proc.stdout + proc.stderr
    read = cloud_init_root.run(
        ["python3", "-c", "import yaml, json; print(json.dumps(yaml.safe_load(open('/tmp/user-data'))))"]
    )
    files = json.loads(read.stdout)["write_files"]
    assert len(files) == 1 and files[0]["path"].startswith("/etc/debship/keys/") and files[0]["path"].endswith(".gpg")
    assert (files[0]["encoding"], files[0]["owner"], files[0]["permissions"]) == ("b64", "root:root", "0644")
    key = tmp_path / "written.gpg"
    key.write_bytes(base64.b64decode(files[0]["content"]))
    assert key.read_bytes() == repo_key.read_bytes()  # the same key, binary, as gpg --export writes it
    good = team_debs["good"]
    subprocess.run(["gpgv", "--keyring", str(key), str(sig_path(good)), str(good)], check=True, capture_output=True)
