"""The package lifecycle with real apt/dpkg in a throwaway Debian root, as
piuparts does it: install → admin edits a conffile and disables/masks units →
upgrade → downgrade → remove → purge, with nothing left behind; and a version
whose startup fails, then a fixed one.

The root is a chroot (no systemd as PID 1): units are enabled through
deb-systemd-helper's symlinks and every start is skipped, which is itself
part of what is tested.  Needs root and mmdebstrap (a cached root, see
hostlab/rootfs.py); skipped otherwise unless DEBSHIP_REQUIRE_ALL=1.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from tests.harness.helpers import require_root, require_tool
from tests.harness.hoststate import BOOKKEEPING as HOST_BOOKKEEPING
from tests.harness.project import copy_sample

pytestmark = pytest.mark.root

APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
CONFOLD = ["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"]
WANTS = "etc/systemd/system/multi-user.target.wants"
LOG = "var/log/fleet-agent/deploy.log"
# apt's and dpkg's bookkeeping, and what the test itself copies into the root.
BOOKKEEPING = (*HOST_BOOKKEEPING, "var/tmp/fleet-agent_")
FAILING_STARTUP = """#!/usr/bin/python3
import sys
print("preparing /var/lib/fleet-agent")
sys.exit("fleet-agent startup: error: cannot reach the config service")
"""


@pytest.fixture
def root():
    require_root()
    require_tool("mmdebstrap")
    from hostlab.rootfs import Root, cached_root

    with Root(cached_root()) as r:
        yield r


def build(tmp_path: Path, version: str, edit=None) -> Path:
    """The sample project copied to a temp folder, changed by ``edit(project)``, built as ``version``."""
    from builder.build import build_deb

    src = copy_sample(tmp_path / f"src-{version}")
    if edit:
        edit(src)
    return build_deb(src, tmp_path / "debs", version=version).path


def v2_changes(src: Path) -> None:
    """A new default in a conffile and a changed unit."""
    conf = src / "configs/agent.conf"
    conf.write_text(conf.read_text() + "\n# New in 2.0.0: nothing yet.\n")
    unit = src / "units/fleet-agent.service"
    unit.write_text(unit.read_text().replace("RestartSec=2s", "RestartSec=3s"))


def failing_startup(src: Path) -> None:
    (src / "scripts/startup.py").write_text(FAILING_STARTUP)


def apt(root, *args: str):
    return root.run(["apt-get", "-q", "-y", *args], env=APT_ENV, check=False)


def install(root, deb: Path, *extra: str):
    shutil.copy(deb, root.path / "var/tmp" / deb.name)
    return apt(root, *CONFOLD, *extra, "install", f"/var/tmp/{deb.name}")


def status(root) -> str:
    proc = root.run(["dpkg-query", "-W", "-f=${Status} ${Version}", "fleet-agent"], check=False)
    return proc.stdout.strip() if proc.returncode == 0 else "not known"


def log_lines(root, pattern: str) -> list[str]:
    return [line for line in (root.path / LOG).read_text().splitlines() if re.search(pattern, line)]


def ok(proc) -> None:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_install_upgrade_downgrade_remove_purge(root, tmp_path):
    v1, v2 = build(tmp_path, "1.0.0"), build(tmp_path, "2.0.0", v2_changes)
    p = root.path
    before = root.files()

    # 1. Fresh install: units enabled, startup ran once, everything logged.
    ok(install(root, v1))
    assert status(root) == "install ok installed 1.0.0"
    assert (p / WANTS / "fleet-agent.service").is_symlink()
    assert (p / WANTS / "fleet-agent-startup.service").is_symlink()
    assert len(log_lines(root, r"startup: ok$")) == 1
    assert log_lines(root, r"^\S+Z fleet-agent 1\.0\.0 postinst configure: startup: ok$")
    assert log_lines(root, r"fleet-agent 1\.0\.0 startup: done: ok$")  # startup.py's own lines
    assert log_lines(root, r"postinst configure: start units: skipped \(systemd is not running\)$")
    assert json.loads((p / "var/lib/fleet-agent/last-startup.json").read_text())["version"] == "1.0.0"

    # 2. The admin edits a conffile, disables the agent and masks the startup unit.
    conf = p / "etc/fleet-agent/agent.conf"
    conf.write_text(conf.read_text().replace("port = 8787", "port = 9999"))
    ok(root.run(["systemctl", "disable", "fleet-agent.service"], check=False))
    ok(root.run(["systemctl", "mask", "fleet-agent-startup.service"], check=False))
    mask = p / "etc/systemd/system/fleet-agent-startup.service"
    assert not (p / WANTS / "fleet-agent.service").exists() and str(mask.readlink()) == "/dev/null"

    # 3. Upgrade: the edit is kept, the new default lands next to it, the admin's
    #    disable and mask survive, the new unit is installed, startup ran again.
    ok(install(root, v2))
    assert status(root) == "install ok installed 2.0.0"
    assert "port = 9999" in conf.read_text()
    assert "New in 2.0.0" in (p / "etc/fleet-agent/agent.conf.dpkg-dist").read_text()
    assert not (p / "etc/fleet-agent/startup.conf.dpkg-dist").exists()
    assert "RestartSec=3s" in (p / "usr/lib/systemd/system/fleet-agent.service").read_text()
    assert not (p / WANTS / "fleet-agent.service").exists()
    assert log_lines(
        root,
        r"2\.0\.0 postinst configure 1\.0\.0: enable fleet-agent\.service: "
        r"disabled by the admin, left disabled$",
    )
    assert str(mask.readlink()) == "/dev/null"
    assert log_lines(root, r"fleet-agent 2\.0\.0 postinst configure 1\.0\.0: startup: ok$")
    assert len(log_lines(root, r"postinst configure.*: startup: ok$")) == 2
    assert json.loads((p / "var/lib/fleet-agent/last-startup.json").read_text())["version"] == "2.0.0"

    # 4. Downgrade: v1's postinst gets "configure 2.0.0" and succeeds.
    ok(install(root, v1, "--allow-downgrades"))
    assert status(root) == "install ok installed 1.0.0"
    assert log_lines(root, r"fleet-agent 1\.0\.0 postinst configure 2\.0\.0: startup: ok$")
    assert log_lines(root, r"fleet-agent 1\.0\.0 postinst configure 2\.0\.0: done$")
    assert "RestartSec=2s" in (p / "usr/lib/systemd/system/fleet-agent.service").read_text()
    assert "port = 9999" in conf.read_text() and not (p / WANTS / "fleet-agent.service").exists()

    # 5. Remove: program files and units go, conffiles and state stay.
    ok(apt(root, "remove", "fleet-agent"))
    assert status(root) == "deinstall ok config-files 1.0.0"
    assert "port = 9999" in conf.read_text()
    assert not (p / "usr/lib/fleet-agent").exists()
    assert not (p / "usr/lib/systemd/system/fleet-agent.service").exists()
    assert (p / LOG).exists()

    # 6. Purge: nothing of the package is left.  The admin's own mask is the
    #    admin's to remove (debhelper's scripts leave it too).
    ok(apt(root, "purge", "fleet-agent"))
    assert status(root) in ("not known", "unknown ok not-installed")
    after = root.files() - {"etc/systemd/system/fleet-agent-startup.service"}
    assert sorted(f for f in after - before if not f.startswith(BOOKKEEPING)) == []
    assert sorted(before - after) == []


def test_failing_startup_leaves_half_configured_and_a_fix_installs_over_it(root, tmp_path):
    v1 = build(tmp_path, "1.0.0")
    bad = build(tmp_path, "2.0.0", failing_startup)
    fixed = build(tmp_path, "2.0.1")
    ok(install(root, v1))

    proc = install(root, bad)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert (
        "fleet-agent: startup script /usr/lib/fleet-agent/startup.py failed (exit 1); "
        "see /var/log/fleet-agent/deploy.log"
    ) in output
    assert "cannot reach the config service" in output  # the script's own words, on stderr
    assert status(root) == "install ok half-configured 2.0.0"
    assert log_lines(
        root,
        r"2\.0\.0 postinst configure 1\.0\.0: startup: fleet-agent startup: error: "
        r"cannot reach the config service$",
    )
    assert log_lines(root, r"2\.0\.0 postinst configure 1\.0\.0: startup: FAILED \(exit 1\)$")
    assert not log_lines(root, r"2\.0\.0 postinst .*: done$")

    # The fixed version configures over the half-configured one; dpkg passes the
    # last version that configured successfully.
    ok(install(root, fixed))
    assert status(root) == "install ok installed 2.0.1"
    assert log_lines(root, r"fleet-agent 2\.0\.1 postinst configure 1\.0\.0: startup: ok$")
    assert log_lines(root, r"fleet-agent 2\.0\.1 postinst configure 1\.0\.0: done$")
