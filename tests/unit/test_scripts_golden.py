"""The maintainer-script templates in debian/: golden files, shellcheck, sh -n,
and every argument dpkg passes, run for real.

Golden files live in tests/golden/<context>.<script>.golden and are rewritten
only with DEBSHIP_UPDATE_GOLDEN=1 (review the diff).  An empty golden file
means the script renders to nothing and the package does not ship it.

The run tests execute the rendered scripts with the real deb-systemd-helper
against a scratch DPKG_ROOT (dpkg's "install into another root" mode), which
needs neither root nor a chroot: systemd starts and startup.py are skipped
there by design, everything else runs.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from builder import control, plan
from tests.harness.helpers import require_tool

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
SCRIPTS = ("preinst", "postinst", "prerm", "postrm")
UPDATE = os.environ.get("DEBSHIP_UPDATE_GOLDEN") == "1"


def Unit(
    name: str,
    enable: bool = True,
    start: bool = True,
    on_upgrade: str = "restart",
    template: bool = False,
    has_install: bool = True,
) -> plan.Unit:
    """A builder.plan.Unit with the defaults a unit gets from its config."""
    return plan.Unit(name, enable, start, on_upgrade, template, has_install)


CONTEXTS = {
    # This repository's bundle, as builder.plan makes it from pyproject.toml.
    "sample": control.scripts_context(
        "fleet-agent",
        "1.0.0",
        [Unit("fleet-agent.service"), Unit("fleet-agent-startup.service", start=False, on_upgrade="none")],
        "/usr/lib/fleet-agent/startup.py",
        conffiles=["/etc/fleet-agent/agent.conf", "/etc/fleet-agent/startup.conf"],
        py_files=[f"/usr/lib/fleet-agent/{n}.py" for n in ("agent", "healthcheck", "startup")],
    ),
    # Scripts and configs only.
    "bare": control.scripts_context("plain-files", "0.3~rc1-2", [], None),
    # Drop-ins for units of other packages, and nothing else.
    "dropins": control.scripts_context("tuning", "1.0", [], None, unit_files=True),
    # Every unit case: template, stop/none on upgrade, no-start, not enabled, no [Install].
    "mixed": control.scripts_context(
        "jobs",
        "2:4.1-1",
        [
            Unit("worker.service", on_upgrade="stop"),
            Unit("poller.timer", on_upgrade="none"),
            Unit("poller.service", enable=False, start=False, has_install=False),
            Unit("job@.service", enable=False, start=False, template=True),
            Unit("helper.service", enable=False),
            Unit("api.socket", on_upgrade="stop"),
        ],
        "/opt/jobs/bin/startup.py",
    ),
}
RENDERED = [(c, s) for c in CONTEXTS for s in SCRIPTS]


def render(context: str, script: str) -> str:
    """Through builder.control's own rendering; "" for a script the package does not ship."""
    return control.render_scripts(CONTEXTS[context]).get(script, "")


@pytest.mark.parametrize("context,script", RENDERED)
def test_golden(context, script):
    text = render(context, script)
    golden = GOLDEN / f"{context}.{script}.golden"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"{golden} missing; run with DEBSHIP_UPDATE_GOLDEN=1 and review it"
    assert text == golden.read_text(), f"{golden} differs; rerun with DEBSHIP_UPDATE_GOLDEN=1 and review the diff"


@pytest.mark.parametrize("context,script", [r for r in RENDERED if render(*r)])
def test_shape(context, script):
    """POSIX sh, set -e, tabs not spaces, ends with exit 0, nothing left of jinja."""
    text = render(context, script)
    lines = text.splitlines()
    assert lines[0] == "#!/bin/sh"
    assert "set -e" in lines
    assert lines[-1] == "exit 0"
    assert "{{" not in text and "{%" not in text
    assert not any(line.startswith("    ") for line in lines), "indent with tabs, as debhelper does"


@pytest.mark.parametrize("context,script", [r for r in RENDERED if render(*r)])
def test_sh_syntax(context, script, tmp_path):
    path = tmp_path / script
    path.write_text(render(context, script))
    proc = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("context,script", [r for r in RENDERED if render(*r)])
def test_shellcheck(context, script, tmp_path):
    shellcheck = require_tool("shellcheck")
    path = tmp_path / script
    path.write_text(render(context, script))
    proc = subprocess.run([shellcheck, "--shell=sh", "--severity=style", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_sample_context_matches_the_real_pipeline():
    """CONTEXTS["sample"] is what builder.control gives the templates for this repository."""
    from builder import config, control, plan

    spec = config.load(REPO)
    real = control.script_context(spec, plan.build(spec))
    expected = dict(CONTEXTS["sample"], version=spec.version)
    units = sorted(real.pop("units"), key=lambda u: u.name)
    assert real == {k: v for k, v in expected.items() if k != "units"}
    assert [Unit(u.name, u.enable, u.start, u.on_upgrade, u.template, u.has_install) for u in units] == sorted(
        expected["units"], key=lambda u: u.name
    )


def test_dh_snippets_in_sample():
    """The lines debhelper 13.11.4 generates for a restart-after-upgrade service are all there."""
    postinst = render("sample", "postinst")
    for line in (
        'deb-systemd-helper unmask "$1" >/dev/null || true',
        'if deb-systemd-helper --quiet was-enabled "$1"; then',
        'deb-systemd-helper enable "$1" >/dev/null || true',
        'deb-systemd-helper update-state "$1" >/dev/null || true',
        "systemctl --system daemon-reload >/dev/null || true",
        "invoke restart 'fleet-agent.service'",
        "invoke start 'fleet-agent.service'",
    ):
        assert line in postinst
    assert "deb-systemd-invoke stop 'fleet-agent-startup.service' 'fleet-agent.service' >/dev/null || true" in render(
        "sample", "prerm"
    )
    assert "deb-systemd-helper purge 'fleet-agent-startup.service' 'fleet-agent.service' >/dev/null || true" in render(
        "sample", "postrm"
    )
    # before an upgrade only the units the new version drops are stopped (none is on-upgrade = stop)
    assert "deb-systemd-invoke stop '" not in render("sample", "preinst")


def test_postinst_order_enable_startup_start():
    body = render("sample", "postinst").split('case "$1" in', 1)[1]
    assert body.index("enable_units") < body.index("run_startup") < body.index("start_units")


def test_mixed_unit_handling():
    postinst, preinst = render("mixed", "postinst"), render("mixed", "preinst")
    prerm, postrm = render("mixed", "prerm"), render("mixed", "postrm")
    assert "job@" not in postinst + prerm + postrm  # templates: no instance to act on
    assert (
        'shipped_units=" api.socket helper.service job@.service poller.service poller.timer worker.service "' in preinst
    )  # ... but an upgrade keeps them
    assert "keep_unit 'helper.service'" in postinst  # enable = false: admin's choice kept
    assert "enable_unit 'poller.service'" not in postinst  # no [Install]: nothing to enable
    assert "invoke try-restart 'poller.service'" in postinst  # start = false: only if running
    assert "invoke start 'api.socket' 'poller.timer' 'worker.service'" in postinst
    assert "deb-systemd-invoke stop 'api.socket' 'worker.service' >/dev/null" in preinst
    assert "'poller.timer'" not in preinst  # on-upgrade = none: left running
    assert "deb-systemd-helper purge 'api.socket' 'helper.service' 'poller.timer' 'worker.service'" in postrm


# --- running the scripts with every argument dpkg passes -------------------

UNIT_TEXT = "[Unit]\nDescription=test\n\n[Service]\nExecStart=/bin/true\n\n[Install]\nWantedBy=multi-user.target\n"
TIMER_TEXT = "[Unit]\nDescription=test\n\n[Timer]\nOnCalendar=daily\n\n[Install]\nWantedBy=timers.target\n"
CALLS = {
    "preinst": [["install"], ["install", "0.9"], ["upgrade", "0.9"], ["upgrade", "9.0"], ["abort-upgrade", "9.0"]],
    "postinst": [
        ["configure", ""],
        ["configure", "0.9"],
        ["configure", "9.0"],
        ["abort-upgrade", "9.0"],
        ["abort-remove"],
        ["abort-deconfigure", "in-favour", "other", "1.0"],
        ["triggered", "x"],
    ],
    "prerm": [["remove"], ["upgrade", "9.0"], ["deconfigure", "in-favour", "other", "1.0"], ["failed-upgrade", "0.9"]],
    "postrm": [
        ["remove"],
        ["upgrade", "9.0"],
        ["failed-upgrade", "0.9"],
        ["abort-install"],
        ["abort-install", "0.9"],
        ["abort-upgrade", "0.9"],
        ["disappear", "other", "1.0"],
        ["purge"],
    ],
}


def _dpkg_root(tmp_path: Path, context: str) -> Path:
    """A scratch root holding the context's unit files, as dpkg would have unpacked them."""
    root = tmp_path / "root"
    system = root / "usr/lib/systemd/system"
    system.mkdir(parents=True)
    for unit in CONTEXTS[context]["units"]:
        text = TIMER_TEXT if unit.name.endswith(".timer") else UNIT_TEXT
        (system / unit.name).write_text(text if unit.has_install else text.split("\n[Install]")[0])
    return root


def _run(tmp_path: Path, root: Path, context: str, script: str, args: list[str]) -> subprocess.CompletedProcess:
    path = tmp_path / script
    path.write_text(render(context, script))
    path.chmod(0o755)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "DPKG_ROOT": str(root),
        "DPKG_MAINTSCRIPT_PACKAGE": CONTEXTS[context]["name"],
        "DPKG_MAINTSCRIPT_NAME": script,
    }
    return subprocess.run(
        [str(path), *args], env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60
    )


@pytest.mark.parametrize("context", sorted(CONTEXTS))
def test_every_dpkg_argument_succeeds(context, tmp_path):
    require_tool("deb-systemd-helper")
    root = _dpkg_root(tmp_path, context)
    for script, calls in CALLS.items():
        if not render(context, script):
            continue
        for args in calls:
            proc = _run(tmp_path, root, context, script, args)
            assert proc.returncode == 0, f"{script} {' '.join(args)}: {proc.stdout}{proc.stderr}"


def test_configure_enables_logs_and_purge_cleans(tmp_path):
    require_tool("deb-systemd-helper")
    root = _dpkg_root(tmp_path, "sample")
    wants = root / "etc/systemd/system/multi-user.target.wants"
    assert _run(tmp_path, root, "sample", "postinst", ["configure", ""]).returncode == 0
    assert (wants / "fleet-agent.service").is_symlink() and (wants / "fleet-agent-startup.service").is_symlink()
    log = (root / "var/log/fleet-agent/deploy.log").read_text()
    assert "fleet-agent 1.0.0 postinst configure: enable fleet-agent.service: enabled" in log
    assert "startup: skipped (DPKG_ROOT is set" in log
    assert "start units: skipped (systemd is not running)" in log
    # An admin disables a unit; configure again (an upgrade) keeps it disabled.
    (wants / "fleet-agent.service").unlink()
    assert _run(tmp_path, root, "sample", "postinst", ["configure", "0.9"]).returncode == 0
    assert not (wants / "fleet-agent.service").exists()
    assert (
        "postinst configure 0.9: enable fleet-agent.service: disabled by the admin, left disabled"
        in (root / "var/log/fleet-agent/deploy.log").read_text()
    )
    # ship's store and apt source; purge removes them with the state and logs.
    (root / "var/lib/debship/fleet-agent").mkdir(parents=True)
    (root / "etc/apt/sources.list.d").mkdir(parents=True)
    (root / "etc/apt/sources.list.d/debship-fleet-agent.list").write_text("deb [trusted=yes] file:/x ./\n")
    for script, args in (("prerm", ["remove"]), ("postrm", ["remove"]), ("postrm", ["purge"])):
        assert _run(tmp_path, root, "sample", script, args).returncode == 0
    for gone in (
        "var/lib/fleet-agent",
        "var/log/fleet-agent",
        "var/lib/debship",
        "etc/apt/sources.list.d/debship-fleet-agent.list",
        "var/lib/systemd/deb-systemd-helper-enabled/multi-user.target.wants/fleet-agent-startup.service",
    ):
        assert not (root / gone).exists(), gone
    assert not (wants / "fleet-agent-startup.service").exists()
