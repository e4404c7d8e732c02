"""`debship publish` and `debship cloud-init` checked with other people's readers:
real GnuPG keys, a real HTTP server on 127.0.0.1 serving the repository folder,
and real apt inside a throwaway Debian root (it verifies InRelease with gpgv
against the exported key, fetches indexes by hash and installs from the pool);
cloud-init's own `cloud-init schema` validates the user-data."""

from __future__ import annotations

import gzip
import json
import lzma
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builder.build import build_deb
from builder.cli import main
from builder.repo import publish, sources_deb822
from tests.harness.aptrepo import export_key
from tests.harness.helpers import _missing, cli_runner, require_tool
from tests.harness.project import MINIMAL, REPO, write_project

APT_OPTS = [
    "-o",
    "Dir::Etc::sourcelist=/dev/null",
    "-o",
    "Dir::Etc::sourceparts=/etc/apt/debship-test.d",
    "-o",
    "APT::Get::List-Cleanup=0",
]
NONINTERACTIVE = {"DEBIAN_FRONTEND": "noninteractive"}


@pytest.fixture
def debs(tmp_path):
    """demo-svc 1.0.0 and 2.0.0, and another 1.0.0 with other contents."""
    project = write_project(tmp_path / "project", MINIMAL)
    built = {v: build_deb(project, tmp_path / "out", v).path for v in ("1.0.0", "2.0.0")}
    (project / "scripts" / "serve.py").write_text("#!/usr/bin/python3\nprint('changed')\n")
    built["1.0.0-other"] = build_deb(project, tmp_path / "other", "1.0.0").path
    return built


class Client:
    """A Debian root whose only apt source is the served repository, trusted through Signed-By."""

    def __init__(self, root, url: str, keyring: Path):
        self.root = root
        (root.path / "etc/apt/keyrings").mkdir(exist_ok=True)
        shutil.copy(keyring, root.path / "etc/apt/keyrings/debship-test.gpg")
        parts = root.path / "etc/apt/debship-test.d"
        parts.mkdir()
        (parts / "debship-test.sources").write_text(
            sources_deb822(url, "stable", "main", "/etc/apt/keyrings/debship-test.gpg", "debship-test")
        )

    def apt(self, *argv: str):
        proc = self.root.run([argv[0], *APT_OPTS, *argv[1:]], env=NONINTERACTIVE, check=False)
        proc.output = proc.stdout + proc.stderr
        return proc

    def versions(self) -> list[str]:
        out = self.apt("apt-cache", "madison", "demo-svc").stdout
        return [line.split("|")[1].strip() for line in out.splitlines() if "|" in line]

    def installed(self) -> str:
        return self.root.run(["dpkg-query", "-W", "-f=${Version}", "demo-svc"], check=False).stdout


@pytest.fixture
def client_root():
    if os.geteuid() != 0:
        _missing("root (the tests mount overlays and chroot)")
    require_tool("mmdebstrap")
    from hostlab.rootfs import Root, cached_root

    with Root(cached_root()) as root:
        yield root


def _snapshot(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.root
def test_apt_installs_the_newest_and_downgrades_to_a_kept_version(keys, debs, server, client_root):
    r1 = publish([debs["1.0.0"]], server.repo, sign_key=keys.main)
    r2 = publish([debs["2.0.0"]], server.repo, sign_key=keys.main)
    assert r1.added == ("pool/main/d/demo-svc/demo-svc_1.0.0_all.deb",) and r2.packages == 2
    client = Client(client_root, server.url, r2.keyring)
    update = client.apt("apt-get", "update")
    assert update.returncode == 0 and "W:" not in update.output and "E:" not in update.output, update.output
    # apt took InRelease, then the index by its hash; it needs no binary-all index
    assert server.requested[0] == "/dists/stable/InRelease"
    assert any("/main/binary-amd64/by-hash/SHA256/" in p for p in server.requested), server.requested
    assert not any("binary-all" in p for p in server.requested)
    assert client.versions() == ["2.0.0", "1.0.0"]

    proc = client.apt("apt-get", "install", "-y", "demo-svc")
    assert proc.returncode == 0 and client.installed() == "2.0.0", proc.output
    proc = client.apt("apt-get", "install", "-y", "--allow-downgrades", "demo-svc=1.0.0")
    assert proc.returncode == 0 and client.installed() == "1.0.0", proc.output


@pytest.mark.root
def test_a_tampered_index_is_refused_by_apt(keys, debs, server, client_root):
    result = publish([debs["1.0.0"]], server.repo, sign_key=keys.main)
    for path in [p for p in (server.repo / "dists").rglob("*") if p.is_file() and "binary-" in str(p)]:
        data = path.read_bytes()
        for unpack, pack in ((gzip.decompress, gzip.compress), (lzma.decompress, lzma.compress)):
            try:
                path.write_bytes(pack(unpack(data).replace(b"Version: 1.0.0", b"Version: 9.9.9")))
                break
            except (OSError, lzma.LZMAError):
                continue
        else:
            path.write_bytes(data.replace(b"Version: 1.0.0", b"Version: 9.9.9"))
    client = Client(client_root, server.url, result.keyring)
    update = client.apt("apt-get", "update")
    assert update.returncode != 0, update.output
    assert "Hash Sum mismatch" in update.output or "unexpected size" in update.output, update.output
    assert client.versions() == []


@pytest.mark.root
def test_a_release_signed_by_another_key_is_refused_by_apt(keys, debs, server, client_root, tmp_path):
    publish([debs["1.0.0"]], server.repo, sign_key=keys.other)
    client = Client(client_root, server.url, export_key(keys.main, tmp_path / "archive.gpg"))
    update = client.apt("apt-get", "update")
    assert update.returncode != 0, update.output
    assert "NO_PUBKEY" in update.output and "is not signed" in update.output, update.output
    assert client.versions() == []


@pytest.mark.root
def test_a_reader_holding_the_previous_inrelease_still_gets_its_indexes(keys, debs, server, client_root):
    publish([debs["1.0.0"]], server.repo, sign_key=keys.main)
    old_inrelease = (server.repo / "dists/stable/InRelease").read_bytes()
    result = publish([debs["2.0.0"]], server.repo, sign_key=keys.main)
    # the reader fetched InRelease just before the switch; everything else it fetches after
    server.overrides["/dists/stable/InRelease"] = old_inrelease
    client = Client(client_root, server.url, result.keyring)
    update = client.apt("apt-get", "update")
    assert update.returncode == 0 and "E:" not in update.output, update.output
    assert client.versions() == ["1.0.0"]


def test_the_same_deb_again_is_a_noop_and_other_bytes_are_refused(keys, debs, tmp_path):
    repo = tmp_path / "repo"
    publish([debs["1.0.0"]], repo, sign_key=keys.main)
    before = _snapshot(repo)
    again = publish([debs["1.0.0"]], repo, sign_key=keys.main)
    assert not again.changed and again.unchanged == ("pool/main/d/demo-svc/demo-svc_1.0.0_all.deb",)
    assert _snapshot(repo) == before

    r = cli_runner().invoke(main, ["publish", str(debs["1.0.0-other"]), "--repo", str(repo), "--sign-key", keys.main])
    assert r.exit_code == 7, r.output
    assert r.stderr.startswith("publish: error: ") and len(r.stderr.splitlines()) == 1
    assert "demo-svc 1.0.0 (all) is already published with other contents" in r.stderr
    assert "new version" in r.stderr
    assert _snapshot(repo) == before


def test_the_index_is_rebuilt_from_the_pool_files(keys, debs, tmp_path):
    repo = tmp_path / "repo"
    publish([debs["1.0.0"]], repo, sign_key=keys.main)
    (repo / "pool/main/d/demo-svc/demo-svc_1.0.0_all.deb").unlink()  # an operator prunes the pool
    result = publish([debs["2.0.0"]], repo, sign_key=keys.main)
    assert result.packages == 1
    text = (repo / "dists/stable/main/binary-amd64/Packages").read_text()
    assert "Version: 2.0.0" in text and "Version: 1.0.0" not in text


def test_the_public_key_next_to_the_repository_is_the_signing_key(keys, debs, tmp_path):
    result = publish([debs["1.0.0"]], tmp_path / "repo", sign_key=keys.main)
    binary = export_key(keys.main, tmp_path / "k.gpg").read_bytes()
    assert result.keyring.read_bytes() == binary
    armored = subprocess.run(
        ["gpg", "--batch", "--armor", "--export", keys.main], check=True, capture_output=True, text=True
    ).stdout
    assert (result.keyring.with_suffix(".asc")).read_text() == armored  # our armor is gpg's, byte for byte
    dist = tmp_path / "repo/dists/stable"
    for argv in (
        ["gpgv", "--keyring", str(result.keyring), str(dist / "InRelease")],
        ["gpgv", "--keyring", str(result.keyring), str(dist / "Release.gpg"), str(dist / "Release")],
    ):
        proc = subprocess.run(argv, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr


def _children(pid: int) -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        comm, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :].split()
        if int(rest[1]) == pid:
            found.append((int(entry.name), comm))
    return found


def _agent_pid() -> int:
    out = subprocess.run(
        ["gpg-connect-agent", "getinfo pid", "/bye"], check=True, capture_output=True, text=True
    ).stdout
    return int(next(line.split()[1] for line in out.splitlines() if line.startswith("D ")))


def _by_hash_files(repo: Path) -> set[Path]:
    return set((repo / "dists").glob("*/*/binary-*/by-hash/SHA256/*"))


def _publisher(deb: Path, repo: Path, key: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from builder.cli import main; main()",
            "publish",
            str(deb),
            "--repo",
            str(repo),
            "--sign-key",
            key,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _kill_while_signing(deb: Path, repo: Path, key: str, indexes_before: set[Path]) -> None:
    """Freeze gpg-agent, so that a publisher writes its pool file and new indexes and then
    blocks in signing; SIGKILL it there (a real kill, no test hook in the code)."""
    agent = _agent_pid()
    os.kill(agent, signal.SIGSTOP)
    signing: list[int] = []
    try:
        proc = _publisher(deb, repo, key)
        try:
            while proc.poll() is None:
                signing = [pid for pid, comm in _children(proc.pid) if comm == "gpg"]
                if signing and _by_hash_files(repo) - indexes_before:
                    break
                time.sleep(0.05)
            assert proc.poll() is None, proc.stdout.read()
        finally:
            proc.kill()
            proc.wait()
        for pid in signing:
            os.kill(pid, signal.SIGKILL)
    finally:
        os.kill(agent, signal.SIGCONT)


@pytest.mark.root
def test_a_publish_killed_before_the_switch_leaves_the_previous_repository_usable(keys, debs, server, client_root):
    result = publish([debs["1.0.0"]], server.repo, sign_key=keys.main)
    indexes_before = _by_hash_files(server.repo)
    inrelease = (server.repo / "dists/stable/InRelease").read_bytes()
    _kill_while_signing(debs["2.0.0"], server.repo, keys.main, indexes_before)
    assert (server.repo / "pool/main/d/demo-svc/demo-svc_2.0.0_all.deb").is_file()
    assert _by_hash_files(server.repo) > indexes_before  # the new indexes were written ...
    assert (server.repo / "dists/stable/InRelease").read_bytes() == inrelease  # ... and never switched to

    client = Client(client_root, server.url, result.keyring)
    update = client.apt("apt-get", "update")
    assert update.returncode == 0 and "E:" not in update.output, update.output
    assert client.versions() == ["1.0.0"]
    proc = client.apt("apt-get", "install", "-y", "demo-svc")
    assert proc.returncode == 0 and client.installed() == "1.0.0", proc.output

    # the lock died with the publisher: publishing again finishes the job
    again = publish([debs["2.0.0"]], server.repo, sign_key=keys.main)
    assert again.added == ("pool/main/d/demo-svc/demo-svc_2.0.0_all.deb",)
    assert client.apt("apt-get", "update").returncode == 0
    assert client.versions() == ["2.0.0", "1.0.0"]


@pytest.mark.root
def test_a_publish_in_the_same_second_as_the_last_one_reaches_the_clients(keys, debs, server, client_root):
    # The web server answers If-Modified-Since to the whole second (as nginx and Python's
    # http.server do).  Dating the first publish's files 30 s ahead stands for "the next
    # publish comes within the same second", without racing the clock.
    result = publish([debs["1.0.0"]], server.repo, sign_key=keys.main)
    ahead = int(time.time()) + 30
    for name in ("InRelease", "Release", "Release.gpg"):
        os.utime(server.repo / "dists/stable" / name, (ahead, ahead))
    client = Client(client_root, server.url, result.keyring)
    assert client.apt("apt-get", "update").returncode == 0 and client.versions() == ["1.0.0"]

    publish([debs["2.0.0"]], server.repo, sign_key=keys.main)
    assert int((server.repo / "dists/stable/InRelease").stat().st_mtime) > ahead
    update = client.apt("apt-get", "update")
    assert update.returncode == 0, update.output
    assert client.versions() == ["2.0.0", "1.0.0"], update.output


def _waits_for_lock(pid: int) -> bool:
    """True once ``pid`` is queued on a flock (a "->" line of /proc/locks)."""
    return any(
        line.split()[1] == "->" and line.split()[5] == str(pid)
        for line in Path("/proc/locks").read_text().splitlines()
        if len(line.split()) > 5
    )


def test_a_second_publisher_waits_for_the_first(keys, debs, tmp_path):
    import fcntl

    repo = tmp_path / "repo"
    publish([debs["1.0.0"]], repo, sign_key=keys.main)
    before = _snapshot(repo)
    with open(repo / ".debship-publish.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # the first publisher, mid-way
        proc = _publisher(debs["2.0.0"], repo, keys.main)
        while proc.poll() is None and not _waits_for_lock(proc.pid):
            time.sleep(0.05)
        assert proc.poll() is None, proc.stdout.read()
        assert _snapshot(repo) == before  # it wrote nothing while waiting
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "added pool/main/d/demo-svc/demo-svc_2.0.0_all.deb" in out


CLOUD_INIT_PACKAGES = ("cloud-init",)


@pytest.fixture(scope="module")
def cloud_init_root():
    """A cached Debian root with Debian's cloud-init, to run `cloud-init schema` without
    installing cloud-init (and its boot services) on this machine."""
    if os.geteuid() != 0:
        _missing("root (the tests mount overlays and chroot)")
    require_tool("mmdebstrap")
    from hostlab.rootfs import Root, cached_root

    with Root(cached_root(CLOUD_INIT_PACKAGES)) as root:
        yield root


@pytest.mark.root
def test_cloud_init_user_data_passes_cloud_inits_schema(keys, debs, tmp_path, cloud_init_root):
    result = publish([debs["1.0.0"]], tmp_path / "repo", sign_key=keys.main)
    r = cli_runner().invoke(
        main,
        [
            "cloud-init",
            "--repo",
            "http://10.0.2.2:8080/fleet",
            "--repo-key",
            str(result.keyring),
            "--package",
            "demo-svc=1.0.0",
            "--package",
            "curl",
        ],
    )
    assert r.exit_code == 0, r.stderr
    (cloud_init_root.path / "tmp/user-data").write_text(r.stdout)
    proc = cloud_init_root.run(["cloud-init", "schema", "--config-file", "/tmp/user-data"], check=False)
    assert proc.returncode == 0 and "Valid cloud-config" in proc.stdout, proc.stdout + proc.stderr
    # what cloud-init will read: the armored key (from the binary keyring), the source, the packages
    read = cloud_init_root.run(
        ["python3", "-c", "import yaml, json; print(json.dumps(yaml.safe_load(open('/tmp/user-data'))))"]
    )
    data = json.loads(read.stdout)
    source = data["apt"]["sources"]["debship.list"]
    assert source["key"] == result.keyring.with_suffix(".asc").read_text()
    assert source["source"] == "deb [signed-by=$KEY_FILE] http://10.0.2.2:8080/fleet stable main"
    assert data["packages"] == [["demo-svc", "1.0.0"], "curl"] and data["package_update"] is True

    (cloud_init_root.path / "tmp/broken").write_text(
        r.stdout.replace("package_update: true", "package_update: sometimes")
    )
    proc = cloud_init_root.run(["cloud-init", "schema", "--config-file", "/tmp/broken"], check=False)
    assert proc.returncode != 0, proc.stdout  # the check can fail

    base = ["cloud-init", "--repo", "http://10.0.2.2:8080/fleet", "--repo-key", str(result.keyring)]
    r = cli_runner().invoke(main, [*base, "--package", "demo-svc", "--follow"])
    assert r.exit_code == 0, r.stderr
    (cloud_init_root.path / "tmp/follow").write_text(r.stdout)
    proc = cloud_init_root.run(["cloud-init", "schema", "--config-file", "/tmp/follow"], check=False)
    assert proc.returncode == 0 and "Valid cloud-config" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.root
def test_cloud_init_apply_user_data_passes_cloud_inits_schema(keys, debs, tmp_path, cloud_init_root):
    result = publish([debs["1.0.0"]], tmp_path / "repo", sign_key=keys.main)
    base = ["cloud-init", "--apply", "--repo", "http://10.0.2.2:8080/fleet", "--repo-key", str(result.keyring)]
    r = cli_runner().invoke(main, [*base, "--package", "demo-svc=1.0.0", "--start-timeout", "30"])
    assert r.exit_code == 0, r.stderr
    (cloud_init_root.path / "tmp/user-data-apply").write_text(r.stdout)
    proc = cloud_init_root.run(["cloud-init", "schema", "--config-file", "/tmp/user-data-apply"], check=False)
    assert proc.returncode == 0 and "Valid cloud-config" in proc.stdout, proc.stdout + proc.stderr
