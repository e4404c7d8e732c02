"""Upgrades clean up what the new version dropped, and purge removes exactly what the package made,
with real dpkg in a throwaway Debian root (as piuparts would run it):

- v1 ships a.service, old.service (enabled) and conf.d/legacy.conf; v2 drops the last two: after the
  upgrade old.service is disabled, deb-systemd-helper's state of it is gone, legacy.conf is removed
  (or kept as .dpkg-bak when the admin edited it), on a downgrade too, and an upgrade that dpkg
  aborts puts legacy.conf back;
- /opt, which every Debian host has and no package owns, survives the purge of a package under it;
- a startup.py that imports a helper module leaves no byte-code, nor does a service that wrote some;
- units installed by a version built with the old /lib/systemd/system default stay enabled and
  working after an upgrade to /usr/lib/systemd/system (Debian 12 and 13).

A chroot has no systemd as PID 1: "stopped" is proven on a booted host (tests/system).  Needs root
and mmdebstrap; skipped otherwise unless DEBSHIP_REQUIRE_ALL=1.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from tests.harness.helpers import require_root, require_tool
from tests.harness.hoststate import BOOKKEEPING
from tests.harness.project import REPO, write_project

pytestmark = pytest.mark.root

WANTS = "etc/systemd/system/multi-user.target.wants"
DSH = "var/lib/systemd/deb-systemd-helper-enabled"
SERVICE = """
    [Unit]
    Description={what}

    [Service]
    ExecStart=/usr/bin/python3 /usr/lib/dropper/serve.py

    [Install]
    WantedBy=multi-user.target
"""


def _root(suite: str = "bookworm"):
    require_root()
    require_tool("mmdebstrap")
    from hostlab.rootfs import Root, cached_root

    return Root(cached_root(suite=suite))


@pytest.fixture
def root():
    with _root() as r:
        yield r


def dropper(tmp_path: Path, version: str, *, drop: bool, extra: dict | None = None) -> Path:
    """The package of the scenario: v1 (drop=False) ships old.service and legacy.conf, v2 does not."""
    files = {
        "debship.toml": f"""
            name = "dropper"
            version = "{version}"
            maintainer = "Ops <ops@example.com>"
            description = "upgrade scenario that drops a unit and a conffile"
            depends = ["python3"]
            startup = false
        """,
        "units/a.service": SERVICE.format(what="kept"),
        "scripts/serve.py": "#!/usr/bin/python3\nprint('serving')\n",
        "configs/main.conf": "port = 1\n",
    }
    if not drop:
        files["units/old.service"] = SERVICE.format(what="dropped in v2")
        files["configs/conf.d/legacy.conf"] = "legacy = yes\n"
    files.update(extra or {})
    from builder.build import build_deb

    return build_deb(write_project(tmp_path / f"src-{version}", files), tmp_path / "debs").path


def dpkg(root, *args: str, check: bool = True):
    proc = root.run(["dpkg", *args], check=False)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def install(root, deb: Path, check: bool = True):
    staged = root.path / "var/tmp" / deb.name
    staged.write_bytes(deb.read_bytes())
    try:
        return dpkg(root, "-i", f"/var/tmp/{deb.name}", check=check)
    finally:
        staged.unlink()


def enabled(root, unit: str) -> bool:
    return (root.path / WANTS / unit).is_symlink()


def dsh_state(root, unit: str) -> list[str]:
    base = root.path / DSH
    return sorted(str(p.relative_to(base)) for p in base.rglob(f"*{unit}*")) if base.is_dir() else []


def test_upgrade_drops_unit_and_unmodified_conffile_downgrade_brings_them_back(root, tmp_path):
    v1, v2 = dropper(tmp_path, "1.0", drop=False), dropper(tmp_path, "2.0", drop=True)
    install(root, v1)
    assert enabled(root, "old.service") and dsh_state(root, "old.service")
    legacy = root.path / "etc/dropper/conf.d/legacy.conf"
    assert legacy.is_file()

    install(root, v2)
    assert not enabled(root, "old.service") and dsh_state(root, "old.service") == []
    assert enabled(root, "a.service")
    assert not legacy.exists() and not list(legacy.parent.glob("legacy.conf.*"))
    assert not legacy.parent.exists()  # conf.d/: v2 does not list it, nothing is in it
    assert not (root.path / "usr/lib/systemd/system/old.service").exists()
    assert not (root.path / "var/lib/debship").exists()  # the hand-over file is gone with its folders
    log = (root.path / "var/log/dropper/deploy.log").read_text()
    assert "dropped unit old.service: stopped, disabled, state purged" in log
    assert "dropped conffile /etc/dropper/conf.d/legacy.conf: removed" in log

    # A downgrade is the same comparison the other way: v1's units are back and enabled.
    install(root, v1)
    assert enabled(root, "old.service") and dsh_state(root, "old.service")
    dpkg(root, "--purge", "dropper")
    assert (
        not (root.path / "etc/dropper").exists()
        and not (root.path / DSH / "multi-user.target.wants/old.service").exists()
    )


def test_an_edited_dropped_conffile_is_kept_as_dpkg_bak(root, tmp_path):
    install(root, dropper(tmp_path, "1.0", drop=False))
    legacy = root.path / "etc/dropper/conf.d/legacy.conf"
    legacy.write_text("legacy = edited by the admin\n")
    proc = install(root, dropper(tmp_path, "2.0", drop=True))
    assert "obsolete conffile /etc/dropper/conf.d/legacy.conf was modified by you" in proc.stderr
    assert not legacy.exists()
    assert (legacy.parent / "legacy.conf.dpkg-bak").read_text() == "legacy = edited by the admin\n"
    assert not list(legacy.parent.glob("*.dpkg-backup")) and not list(legacy.parent.glob("*.dpkg-remove"))


def test_an_aborted_upgrade_puts_the_conffiles_back(root, tmp_path):
    """A real dpkg failure after preinst: v2 would overwrite a file another package owns, so dpkg
    stops the unpack and runs v2's postrm abort-upgrade and v1's postinst abort-upgrade."""
    from builder import debfile

    clash = debfile.write(
        [
            debfile.Member(
                "control",
                0o644,
                data=(
                    b"Package: clash\nVersion: 1\nArchitecture: all\nMaintainer: Ops <ops@example.com>\n"
                    b"Description: owns a file v2 wants\n"
                ),
            )
        ],
        [debfile.Member("usr/lib/dropper/clash.py", 0o644, data=b"#\n")],
        tmp_path / "clash",
        name="clash",
        version="1",
        mtime=0,
    )
    install(root, dropper(tmp_path, "1.0", drop=False))
    install(root, clash.path)
    legacy = root.path / "etc/dropper/conf.d/legacy.conf"
    legacy.write_text("legacy = edited\n")
    bad = dropper(tmp_path, "2.0", drop=True, extra={"scripts/clash.py": "#\n"})
    proc = install(root, bad, check=False)
    assert proc.returncode != 0 and "trying to overwrite '/usr/lib/dropper/clash.py'" in proc.stderr
    status = root.run(["dpkg-query", "-W", "-f=${Version} ${db:Status-Abbrev}", "dropper"]).stdout
    assert status.split() == ["1.0", "ii"]
    assert legacy.read_text() == "legacy = edited\n"
    assert not list(legacy.parent.glob("legacy.conf.*"))
    assert enabled(root, "old.service") and dsh_state(root, "old.service")
    assert not (root.path / "var/lib/debship/dropper/dropped").exists()


def test_purge_keeps_opt_and_leaves_no_byte_code(root, tmp_path):
    """nightly-backup installs under /opt; a second package's startup.py imports a helper module,
    which postinst byte-compiled: purge of both leaves the root as it was."""
    before = root.files()
    assert "opt" in before
    from builder.build import build_deb

    opt_pkg = build_deb(REPO / "tests/fixtures/nightly-backup", tmp_path / "debs").path
    helper = write_project(
        tmp_path / "helper",
        {
            "debship.toml": """
            name = "with-helper"
            version = "1.0"
            maintainer = "Ops <ops@example.com>"
            description = "startup script importing a module of its own"
            depends = ["python3"]
            [folders]
            units = false
            configs = false
        """,
            "scripts/startup.py": "#!/usr/bin/python3\nimport helpers\nhelpers.hello()\n",
            "scripts/helpers.py": "def hello():\n    print('hello from a helper module')\n",
        },
    )
    install(root, opt_pkg)
    install(root, build_deb(helper, tmp_path / "debs").path)
    lib = root.path / "usr/lib/with-helper"
    # postinst byte-compiled the package's Python files (as dh_python3 does: adequate wants them)
    assert sorted(p.name.split(".")[0] for p in (lib / "__pycache__").iterdir()) == ["helpers", "startup"]
    assert "hello from a helper module" in (root.path / "var/log/with-helper/deploy.log").read_text()
    # A service running the same code finds it compiled and writes nothing more.
    root.run(["python3", "-c", "import sys; sys.path.insert(0, '/usr/lib/with-helper'); import helpers"])
    assert len(list((lib / "__pycache__").iterdir())) == 2
    dpkg(root, "--purge", "with-helper", "nightly-backup")
    after = root.files()
    assert sorted(f for f in before - after) == []  # /opt is still there
    assert sorted(f for f in after - before if not f.startswith(BOOKKEEPING)) == []


@pytest.mark.parametrize("suite", ["bookworm", "trixie"])
def test_units_from_the_old_lib_default_stay_enabled_after_the_upgrade(suite, tmp_path):
    """v1 as debship built it before (units in /lib/systemd/system), v2 with the new default: on a
    merged /usr both names are one folder and dpkg must not delete the moved unit as v1's leftover."""
    old = dropper(
        tmp_path / "old",
        "1.0",
        drop=False,
        extra={
            "debship.toml": textwrap.dedent("""
                      name = "dropper"
                      version = "1.0"
                      maintainer = "Ops <ops@example.com>"
                      description = "upgrade scenario that drops a unit and a conffile"
                      depends = ["python3"]
                      startup = false
                      [install]
                      units = "/lib/systemd/system"
                  """)
        },
    )
    new = dropper(tmp_path / "new", "2.0", drop=False)
    with _root(suite) as root:
        assert os.path.islink(root.path / "lib")  # merged /usr, as on every Debian 12/13 host
        install(root, old)
        assert "/lib/systemd/system/a.service" in root.run(["dpkg", "-L", "dropper"]).stdout.split()
        install(root, new)
        listed = root.run(["dpkg", "-L", "dropper"]).stdout.split()
        assert "/usr/lib/systemd/system/a.service" in listed and "/lib/systemd/system/a.service" not in listed
        for unit in ("a.service", "old.service"):
            assert (root.path / "usr/lib/systemd/system" / unit).is_file(), unit
            target = os.readlink(root.path / WANTS / unit)  # absolute inside the root
            assert enabled(root, unit) and (root.path / target.lstrip("/")).is_file(), (unit, target)
            assert root.run(["systemctl", "is-enabled", unit], check=False).stdout.strip() == "enabled"
        dpkg(root, "--purge", "dropper")
        assert not (root.path / WANTS / "a.service").exists()
