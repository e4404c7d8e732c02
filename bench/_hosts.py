"""Loopback hosts for the ship benchmarks: fresh roots with their own sshd, and what dpkg says in each."""

from __future__ import annotations

import contextlib
import subprocess
import threading
from pathlib import Path

from hostlab.rootfs import ROOT_PACKAGES, Root, cached_root
from hostlab.sshhost import SSHHost

# Ansible's apt module needs python3-apt on the host (else it tries to apt-get install it
# from the network); every tool gets the same root, so the extra package costs none of them.
BENCH_PACKAGES = (*ROOT_PACKAGES, "python3-apt")


def bench_root() -> Path:
    """The cached Debian root the hosts are overlays of (built by mmdebstrap on first use)."""
    return cached_root(BENCH_PACKAGES)


def make_hosts(stack: contextlib.ExitStack, lower: Path, n: int, work: Path) -> list[SSHHost]:
    """n running hosts that all accept the first host's key (as test_ship.share_key does)."""
    hosts = []
    for _ in range(n):
        root = stack.enter_context(Root(lower, workdir=work))
        hosts.append(stack.enter_context(SSHHost(root, workdir=work)))
    key = Path(f"{hosts[0].key_path}.pub").read_text()
    for h in hosts[1:]:
        (h.root.path / "home/ops/.ssh/authorized_keys").write_text(key)
    return hosts


def installed(host: SSHHost, package: str) -> str | None:
    """The version dpkg has fully installed in the host's root, read from the controller's side."""
    r = subprocess.run(
        [
            "dpkg-query",
            f"--admindir={host.root.path}/var/lib/dpkg",
            "-W",
            "-f",
            "${db:Status-Status} ${Version}",
            package,
        ],
        capture_output=True,
        text=True,
    )
    status, _, version = r.stdout.partition(" ")
    return version if r.returncode == 0 and status == "installed" else None


def check_installed(hosts: list[SSHHost], package: str, version: str, who: str) -> None:
    bad = [f"{h.port}: {installed(h, package) or 'not installed'}" for h in hosts if installed(h, package) != version]
    if bad:
        raise SystemExit(f"{who}: {package} {version} is not installed on {len(bad)} host(s): {', '.join(bad)}")


def in_thread(func):
    """Run func in a daemon thread; a Ctrl-C in the main thread unwinds the ExitStack (killing the
    hosts' sshd, which makes the worker fail fast) instead of waiting for the thread pool."""
    box: dict = {}
    t = threading.Thread(target=lambda: box.update(value=func()), daemon=True)
    t.start()
    while t.is_alive():
        t.join(0.2)
    if "value" not in box:
        raise RuntimeError("the worker thread failed (see its traceback above)")
    return box["value"]
