"""Debian's piuparts on debship's packages, offline: a cached bookworm base tarball and a local apt
repository of older versions for the upgrade (and downgrade) tests.

``base_tarball()`` makes the base once with mmdebstrap (minbase plus what our packages depend
on, so piuparts installs nothing from the network), keyed by its package list, under
``$DEBSHIP_CACHE/piuparts``.  Its sources.list is empty and apt accepts the unsigned local
repository ``run()`` passes as piuparts' mirror: ``file:<dir> bookworm main``, bind-mounted into
piuparts' chroot.  A package piuparts' apt knows (its older version is in that repository) is
installed from there first and then upgraded to the .deb under test; one it does not know gets
the install/purge test only.  Needs root, mmdebstrap, piuparts and dpkg-scanpackages.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hostlab.rootfs import cache_dir

SUITE = "bookworm"
# minbase + what the corpus packages depend on (python3) and use (deb-systemd-helper).
BASE_PACKAGES = ("python3", "init-system-helpers")
_LAYOUT = "1"  # bump when the way the base is made changes
PASS = "PASS: All tests."


def base_tarball(packages: tuple[str, ...] = BASE_PACKAGES, suite: str = SUITE) -> Path:
    key = hashlib.sha256("\n".join([_LAYOUT, suite, "minbase", *sorted(packages)]).encode()).hexdigest()[:16]
    final = cache_dir() / "piuparts" / f"{suite}-{key}.tar.gz"
    if final.is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=final.name + ".", suffix=".tar.gz", dir=final.parent)
    os.close(fd)
    try:
        subprocess.run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=minbase",
                "--include=" + ",".join(sorted(packages)),
                # offline: no archive in sources.list, apt lists dropped; the local repository is unsigned
                '--customize-hook=: > "$1"/etc/apt/sources.list; rm -rf "$1"/var/lib/apt/lists/*',
                "--customize-hook=echo 'Acquire::AllowInsecureRepositories \"true\";' > "
                '"$1"/etc/apt/apt.conf.d/99debship-local-repository',
                suite,
                tmp,
            ],
            check=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
        )
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return final


def make_repo(folder: Path, debs: list[Path], suite: str = SUITE) -> Path:
    """A minimal unsigned apt repository (dists/<suite>/main/binary-amd64, pool/) holding ``debs``."""
    pool, index = folder / "pool", folder / "dists" / suite / "main" / "binary-amd64"
    pool.mkdir(parents=True)
    index.mkdir(parents=True)
    for deb in debs:
        shutil.copy(deb, pool / deb.name)
    packages = subprocess.run(
        ["dpkg-scanpackages", "pool", "/dev/null"], cwd=folder, check=True, capture_output=True
    ).stdout
    (index / "Packages").write_bytes(packages)
    digest = hashlib.sha256(packages).hexdigest()
    (folder / "dists" / suite / "Release").write_text(
        f"Suite: {suite}\nCodename: {suite}\nComponents: main\nArchitectures: amd64\n"
        f"SHA256:\n {digest} {len(packages)} main/binary-amd64/Packages\n"
    )
    return folder


@dataclass(frozen=True)
class Result:
    deb: Path
    returncode: int
    log: str

    @property
    def passed(self) -> bool:
        return self.returncode == 0 and PASS in "\n".join(self.log.splitlines()[-3:])

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.splitlines()[-lines:])


def run(deb: Path, work: Path, older: list[Path] = (), base: Path | None = None) -> Result:
    """piuparts on ``deb``: install/purge; and, when ``older`` holds another version of it, install
    that from the local repository, upgrade (or downgrade) to ``deb``, purge."""
    work.mkdir(parents=True, exist_ok=True)
    repo = make_repo(work / "repo", list(older))
    log = work / "piuparts.log"
    proc = subprocess.run(
        [
            "piuparts",
            "--basetgz",
            str(base or base_tarball()),
            "--distribution",
            SUITE,
            "--mirror",
            f"file:{repo} main",
            "--do-not-verify-signatures",
            "--bindmount",
            str(repo),
            "--no-eatmydata",
            "--skip-logrotatefiles-test",
            "--tmpdir",
            str(work),
            "--log-file",
            str(log),
            str(deb),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=900,
    )
    text = log.read_text() if log.exists() else proc.stdout + proc.stderr
    return Result(deb, proc.returncode, text)
