"""Shipping to loopback SSH hosts (tests/harness/fixtures.py): the sample's .debs, running
`ship` through click, and what the host then has."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest

from builder.build import build_deb
from builder.cli import ship
from tests.harness.helpers import cli_runner
from tests.harness.project import break_startup, copy_sample


@pytest.fixture(scope="module")
def debs(tmp_path_factory):
    """v1, v1 with other bytes, v2 (a changed config and unit) of the sample."""
    base = tmp_path_factory.mktemp("ship-debs")
    project = copy_sample(base / "project")
    out = {"v1": build_deb(project, base / "v1", version="1.0.0").path}
    conf = project / "configs" / "agent.conf"
    conf.write_text(conf.read_text() + "\n# other bytes, same version\n")
    out["v1-other"] = build_deb(project, base / "v1-other", version="1.0.0").path
    out["v2"] = build_deb(project, base / "v2", version="1.1.0").path
    return out


def rollback_debs(base: Path) -> dict[str, Path]:
    """1.0.0 .. 3.0.0 of the sample (a changed config each time), and a 4.0.0 whose startup.py fails."""
    project = copy_sample(base / "project")
    out = {}
    for v in ("1.0.0", "2.0.0", "3.0.0"):
        conf = project / "configs" / "agent.conf"
        conf.write_text(conf.read_text() + f"\n# shipped with {v}\n")
        out[v] = build_deb(project, base / v, version=v).path
    break_startup(project)
    out["4.0.0-bad"] = build_deb(project, base / "4.0.0", version="4.0.0").path
    return out


def run_ship(hosts, deb: Path | None, *args: str, json_out: bool = False):
    argv = [str(deb)] if deb is not None else []
    for h in hosts:
        argv += ["--host", h.address]
    argv += [*hosts[0].ship_args(), "--connect-timeout", "30", *args]  # share_key: the first host's key logs in
    if json_out:
        argv.append("--json")
    runner = cli_runner()
    return runner.invoke(ship, argv, env={"SSH_AUTH_SOCK": ""})


def installed(host) -> str:
    r = host.run_root(["dpkg-query", "-W", "-f=${db:Status-Abbrev}${Version}", "fleet-agent"], check=False)
    return r.stdout.strip() if r.returncode == 0 else ""


def share_key(hosts):
    """All hosts accept the first host's key and share its known_hosts (one --identity for all)."""
    key = hosts[0].public_key
    for h in hosts[1:]:
        (h.root.path / "home/ops/.ssh/authorized_keys").write_text(key)


@contextlib.contextmanager
def dpkg_lock_held(host, seconds: int):
    """A process inside the host holds dpkg's frontend lock (fcntl, as apt takes it) for ``seconds``."""
    holder = subprocess.Popen(
        [
            "chroot",
            str(host.root.path),
            "python3",
            "-c",
            "import fcntl, time; f = open('/var/lib/dpkg/lock-frontend', 'w'); "
            f"fcntl.lockf(f, fcntl.LOCK_EX); print('locked', flush=True); time.sleep({seconds})",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        holder.kill()
        holder.wait()
