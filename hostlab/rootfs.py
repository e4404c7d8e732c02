"""Throwaway Debian roots for the tests: built once with mmdebstrap, cached, used through overlayfs.

``cached_root()`` builds a bookworm root (or another suite's) from Debian packages (nothing else is
downloaded) and keeps it under ``$DEBSHIP_CACHE`` (default ``~/.cache/debship``),
keyed by its package list, so a second run reuses it.  ``Root`` mounts an
overlay of that cache on a temp folder: every test gets a fresh, writable root
and the cache is never touched.  Needs root (mount, chroot), as on CI.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SUITE = "bookworm"
# What a minimal cloud host has that matters to us: apt/dpkg (essential),
# python3 for startup.py, systemd for units and systemctl, sshd and sudo for ship.
ROOT_PACKAGES = ("python3", "systemd", "openssh-server", "sudo", "curl")
_LAYOUT = "1"  # bump when the way roots are made changes


def cache_dir() -> Path:
    base = os.environ.get("DEBSHIP_CACHE") or Path.home() / ".cache" / "debship"
    return Path(base)


def root_key(packages: tuple[str, ...] = ROOT_PACKAGES, suite: str = SUITE) -> str:
    text = "\n".join([_LAYOUT, suite, "apt", *sorted(packages)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached_root(packages: tuple[str, ...] = ROOT_PACKAGES, suite: str = SUITE) -> Path:
    """The cached root for ``packages`` (of Debian ``suite``), built by mmdebstrap when absent."""
    final = cache_dir() / "roots" / root_key(packages, suite)
    if final.is_dir():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=final.name + ".", dir=final.parent))
    try:
        subprocess.run(
            [
                "mmdebstrap",
                "--quiet",
                "--variant=apt",
                "--include=" + ",".join(sorted(packages)),
                # no daemons may start inside the build; apt lists are kept for offline apt use
                '--customize-hook=rm -f "$1"/etc/ssh/ssh_host_*',
                suite,
                str(work / "root"),
            ],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        os.replace(work / "root", final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


class Root:
    """A writable overlay of a cached root, removed on ``close()``."""

    def __init__(self, lower: Path, workdir: Path | None = None):
        self.base = Path(tempfile.mkdtemp(prefix="debship-root-", dir=workdir))
        self.path = self.base / "merged"
        for sub in ("upper", "work", "merged"):
            (self.base / sub).mkdir()
        opts = f"lowerdir={lower},upperdir={self.base / 'upper'},workdir={self.base / 'work'}"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(self.path)], check=True)
        self._mounted = True

    def run(
        self, argv: list[str], check: bool = True, env: dict | None = None, offline: bool = False, **kw
    ) -> subprocess.CompletedProcess:
        """Run ``argv`` chrooted into the root, in its own mount namespace with /proc mounted
        (``offline``: also in a network namespace of its own, with no network at all)."""
        script = 'mount -t proc proc "$0/proc" && mount --rbind /dev "$0/dev" && exec chroot "$0" "$@"'
        full_env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}
        full_env.update(env or {})
        return subprocess.run(
            [
                "unshare",
                "--mount",
                *(["--net"] if offline else []),
                "--fork",
                "sh",
                "-c",
                script,
                str(self.path),
                *argv,
            ],
            check=check,
            env=full_env,
            text=True,
            capture_output=True,
            stdin=subprocess.DEVNULL,
            **kw,
        )

    def files(self) -> set[str]:
        """Every path in the root (relative), for before/after comparisons."""
        skip = {"proc", "dev", "sys", "run", "tmp"}
        out = set()
        for dirpath, dirnames, filenames in os.walk(self.path):
            rel = os.path.relpath(dirpath, self.path)
            if rel == ".":
                dirnames[:] = [d for d in dirnames if d not in skip]
            for name in dirnames + filenames:
                out.add(os.path.normpath(os.path.join(rel, name)))
        return out

    def close(self) -> None:
        if self._mounted:
            subprocess.run(["umount", "--lazy", str(self.path)], check=False)
            self._mounted = False
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> Root:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
