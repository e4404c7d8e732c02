"""`debship publish` reads only the new .debs: what the pool already holds comes from the
signed index and DIR/.debship-pool.json, trusted while a pool file keeps its size and mtime.
These tests check that the cache never changes what is published (a stale, missing or broken
cache gives the same indexes, byte for byte, as a full read of the pool), and that a pool file
changed behind debship's back is found (by the identity check, or by --verify when its size
and mtime were kept) and restored by publishing the original .deb again.  Real .debs from our
writer, real GnuPG keys (tests/harness/aptrepo.py), gpgv to check the signature."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from builder.build import build_deb
from builder.cli import main
from builder.repo import CACHE, publish
from tests.harness.helpers import cli_runner
from tests.harness.project import MINIMAL, write_project

VERSIONS = ("1.0.0", "2.0.0", "3.0.0")
POOL = "pool/main/d/demo-svc/demo-svc_{}_all.deb"


@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("debs")
    project = write_project(tmp / "project", MINIMAL)
    return {v: build_deb(project, tmp / "out", v).path for v in VERSIONS}


def _indexes(repo: Path) -> dict[str, bytes]:
    """The Release and every plain index of the suite (by-hash keeps older ones around)."""
    dist = repo / "dists/stable"
    found = {"Release": (dist / "Release").read_bytes()}
    for path in sorted(dist.glob("main/binary-*/Packages*")):
        found[str(path.relative_to(dist))] = path.read_bytes()
    return found


def _snapshot(folder: Path) -> dict:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _listed_sha256(repo: Path, version: str) -> str:
    text = (repo / "dists/stable/main/binary-amd64/Packages").read_text()
    stanza = next(s for s in text.split("\n\n") if f"Version: {version}\n" in s)
    return next(line.split(": ", 1)[1] for line in stanza.splitlines() if line.startswith("SHA256: "))


def test_a_stale_missing_or_broken_cache_gives_the_indexes_of_a_full_read(keys, debs, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    one, two, three = (debs[v] for v in VERSIONS)

    def grown(name: str, before_last=None, verify=False) -> Path:
        repo = tmp_path / name
        publish([one], repo, sign_key=keys.main)
        publish([two], repo, sign_key=keys.main)
        if before_last:
            before_last(repo)
        publish([three], repo, sign_key=keys.main, verify=verify)
        return repo

    cached = grown("cached")
    assert (cached / CACHE).is_file()
    missing = grown("missing", lambda r: (r / CACHE).unlink())
    broken = grown("broken", lambda r: (r / CACHE).write_text("{not json"))
    stale_copy = tmp_path / "stale.json"
    stale = tmp_path / "stale"
    publish([one], stale, sign_key=keys.main)
    shutil.copy(stale / CACHE, stale_copy)  # knows 1.0.0 only
    publish([two], stale, sign_key=keys.main)
    shutil.copy(stale_copy, stale / CACHE)
    publish([three], stale, sign_key=keys.main)
    # every pool file read again, and all three published at once into a new repository
    verified = grown("verified", verify=True)
    at_once = tmp_path / "at-once"
    publish([one, two, three], at_once, sign_key=keys.main)

    expected = _indexes(at_once)
    assert len(expected) == 1 + 10 * 3 and b"Version: 3.0.0" in expected["main/binary-amd64/Packages"]
    for repo in (cached, missing, broken, stale, verified):
        assert _indexes(repo) == expected, repo.name
    # Architecture: all only: every binary-<arch> index is one rendering, written once and linked
    dist = cached / "dists/stable/main"
    inodes = {(dist / f"binary-{a}/Packages").stat().st_ino for a in ("all", "amd64", "arm64", "s390x")}
    assert len(inodes) == 1


def test_a_pool_file_changed_behind_debships_back_is_found_and_restored(keys, debs, tmp_path):
    repo = tmp_path / "repo"
    publish([debs["1.0.0"]], repo, sign_key=keys.main)
    publish([debs["2.0.0"]], repo, sign_key=keys.main)
    pool_file = repo / POOL.format("1.0.0")
    original = pool_file.read_bytes()
    st = pool_file.stat()

    # Same size, one byte changed, mtime put back (as `cp -p`, `rsync -t` or a restore can do):
    # the identity check cannot see it and a plain publish trusts the signed index ...
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF
    pool_file.write_bytes(bytes(damaged))
    os.utime(pool_file, ns=(st.st_atime_ns, st.st_mtime_ns))
    result = publish([debs["3.0.0"]], repo, sign_key=keys.main)
    assert result.added == (POOL.format("3.0.0"),)
    assert _listed_sha256(repo, "1.0.0") == hashlib.sha256(original).hexdigest()  # the file was not re-read

    # ... --verify reads every pool file: one line naming the file and the fix, nothing written
    before = _snapshot(repo)
    r = cli_runner().invoke(main, ["publish", "--verify", "--repo", str(repo), "--sign-key", keys.main])
    assert r.exit_code == 7, r.output
    assert len(r.stderr.splitlines()) == 1 and r.stderr.startswith("publish: error: ")
    assert POOL.format("1.0.0") in r.stderr and "is not the file the signed index lists" in r.stderr
    assert "publish the original .deb again with --verify" in r.stderr
    assert _snapshot(repo) == before

    # publishing the original .deb again restores the published bytes
    r = cli_runner().invoke(
        main, ["publish", "--verify", str(debs["1.0.0"]), "--repo", str(repo), "--sign-key", keys.main]
    )
    assert r.exit_code == 0, r.output
    assert f"repaired {POOL.format('1.0.0')}" in r.stdout and "every pool file verified" in r.stdout
    assert pool_file.read_bytes() == original
    r = cli_runner().invoke(main, ["publish", "--verify", "--repo", str(repo), "--sign-key", keys.main])
    assert r.exit_code == 0 and "3 package(s)" in r.stdout, r.output


def test_a_pool_file_whose_mtime_moved_is_read_again_and_refused_if_its_bytes_changed(keys, debs, tmp_path):
    repo = tmp_path / "repo"
    publish([debs["1.0.0"], debs["2.0.0"]], repo, sign_key=keys.main)
    pool_file = repo / POOL.format("1.0.0")
    original = pool_file.read_bytes()

    os.utime(pool_file, ns=(0, pool_file.stat().st_mtime_ns + 10**9))  # touched, bytes kept: fine
    publish([debs["3.0.0"]], repo, sign_key=keys.main)
    assert _listed_sha256(repo, "1.0.0") == hashlib.sha256(original).hexdigest()

    pool_file.write_bytes(debs["2.0.0"].read_bytes())  # another version's bytes under 1.0.0's name
    before = _snapshot(repo)
    r = cli_runner().invoke(main, ["publish", str(debs["3.0.0"]), "--repo", str(repo), "--sign-key", keys.main])
    assert r.exit_code == 7, r.output
    assert POOL.format("1.0.0") in r.stderr and len(r.stderr.splitlines()) == 1
    assert _snapshot(repo) == before
