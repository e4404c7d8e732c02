"""The per-host planner, without SSH: real ``HOST_FACTS_SCRIPT`` output captured from a
loopback host (tests/unit/captured/*.txt: a fresh host; 1.0.0 installed with an
admin-edited agent.conf and the startup unit disabled; after the upgrade to
1.1.0) parsed by ``facts.parse_host_facts``, then planned, table-driven."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from builder.debinfo import PackageInfo
from builder.manifest import Manifest, UnitState
from builder.ship import facts
from builder.ship import plan as hostplan
from builder.ship.plan import decide

CAPTURED = Path(__file__).parent / "captured"
AGENT, STARTUP = "fleet-agent.service", "fleet-agent-startup.service"
MANIFEST = Manifest(
    "fleet-agent",
    "1.1.0",
    "/usr/lib/fleet-agent/startup.py",
    "true",
    5,
    (UnitState(STARTUP, True, False, "none"), UnitState(AGENT, True, True, "restart")),
)
V2_SHA = "1019c7a65b37112b9644b00bfda9322c30e41a6982923a5f5a4c00706e92650b"


def captured(name: str, **changes) -> facts.HostFacts:
    return dataclasses.replace(facts.parse_host_facts((CAPTURED / f"{name}.txt").read_text()), **changes)


def pkg(version="1.1.0", sha=V2_SHA, conffiles=None) -> PackageInfo:
    return PackageInfo(
        path=Path(f"fleet-agent_{version}_all.deb"),
        name="fleet-agent",
        version=version,
        architecture="all",
        sha256=sha,
        size=1,
        manifest=dataclasses.replace(MANIFEST, version=version),
        conffiles=conffiles
        or {
            "/etc/fleet-agent/agent.conf": "0" * 32,
            "/etc/fleet-agent/startup.conf": "bb88aee76629d4f8d5800cd80e65cc4f",
        },
    )


def test_captured_facts_parse():
    f = captured("v1-edited-conffile")
    assert f.installed == facts.Installed("ii", "1.0.0") and f.stored_sha is None and not f.systemd
    assert [k.version for k in f.kept] == ["1.0.0"] and f.available == ("1.0.0",)
    assert [c.path for c in f.conffiles if c.edited] == ["/etc/fleet-agent/agent.conf"]
    assert f.unit(STARTUP).left_alone and not f.unit(AGENT).left_alone
    assert Manifest.from_json(f.manifest).units == MANIFEST.units
    after = captured("v2-after-upgrade")
    assert after.stored_sha == V2_SHA and after.available == ("1.1.0", "1.0.0") and "ship 1.1.0" in after.history
    fresh = captured("fresh-host")
    assert fresh.installed is None and fresh.kept == () and fresh.conffiles == ()


STEPS_SHIP = ["upload", "store", "simulate", "install", "verify", "health", "record"]


@pytest.mark.parametrize(
    "host,package,options,action,steps,reason",
    [
        ("fresh-host", pkg("1.0.0"), {}, "install", STEPS_SHIP, "install 1.0.0 (not installed)"),
        ("v1-edited-conffile", pkg(), {}, "install", STEPS_SHIP, "upgrade 1.0.0 -> 1.1.0"),
        ("v2-after-upgrade", pkg(), {}, "noop", ["pin"], "already at 1.1.0"),  # captured before debship pinned
        (
            "v2-after-upgrade",
            pkg(),
            {"reboot": True},
            "noop",
            ["pin", "reboot", "verify", "health"],
            "already at 1.1.0",
        ),
        ("v2-after-upgrade", pkg(sha="f" * 64), {}, "refuse", [], "1.1.0 is installed with other contents"),
        ("v2-after-upgrade", pkg(sha="f" * 64), {"force": True}, "install", STEPS_SHIP, "reinstall 1.1.0 (--force)"),
        ("v2-after-upgrade", pkg("1.0.0"), {}, "install", STEPS_SHIP, "downgrade 1.1.0 -> 1.0.0"),
        ("v1-edited-conffile", pkg(), {"dry_run": True}, "dry-run", ["simulate"], "upgrade 1.0.0 -> 1.1.0"),
        (
            "v1-edited-conffile",
            pkg(),
            {"reboot": True},
            "install",
            [*STEPS_SHIP, "reboot", "verify", "health"],
            "upgrade 1.0.0 -> 1.1.0",
        ),
        (
            "v1-edited-conffile",
            pkg(),
            {"via_repo": True},
            "install",
            ["source", *STEPS_SHIP[2:]],
            "upgrade 1.0.0 -> 1.1.0",
        ),
        ("v2-after-upgrade", pkg(sha="f" * 64), {"via_repo": True}, "noop", ["pin"], "already at 1.1.0"),
    ],
)
def test_plan_ship(host, package, options, action, steps, reason):
    plan = hostplan.plan_ship(package, captured(host), **options)
    assert plan.action == action and [s.op for s in plan.steps] == steps
    assert plan.reason.startswith(reason)
    recovering = [s.op for s in plan.steps if s.recover]
    assert recovering == (["install", "verify", "health"] if action == "install" else [])


def test_a_host_at_the_version_is_pinned_there_only_when_the_pin_is_missing_or_other():
    at = hostplan.plan_ship(pkg(), captured("v2-after-upgrade", pinned="1.1.0"))
    assert at.action == "noop" and at.steps == ()
    moved = hostplan.plan_ship(pkg(), captured("v2-after-upgrade", pinned="1.0.0"))  # pinned by hand elsewhere
    assert [(s.op, s.version) for s in moved.steps] == [("pin", "1.1.0")]
    assert hostplan.plan_ship(pkg(), captured("v2-after-upgrade"), dry_run=True).steps == ()
    back = hostplan.plan_rollback("fleet-agent", captured("v2-after-upgrade"), "1.1.0")
    assert [(s.op, s.version) for s in back.steps] == [("pin", "1.1.0")]
    broken = captured("v2-after-upgrade", installed=facts.Installed("iF", "1.1.0"))
    assert hostplan.pin_steps(broken) == ()  # a half-configured version is not pinned


def test_pin_text_round_trips_and_foreign_files_are_not_read_as_ours():
    from builder.layout import Layout
    from builder.ship.pin import parse_pin, pin_text

    path = Layout("fleet-agent").apt_pin
    assert path == "/etc/apt/preferences.d/debship-fleet-agent.pref"
    assert Layout("libc++-tools").apt_pin.endswith("/debship-libc__-tools.pref")  # apt ignores names with +
    text = pin_text("fleet-agent", "1:2.0.0~rc1", path)
    assert parse_pin(text) == "1:2.0.0~rc1" and f"rm {path}" in text
    assert parse_pin("") is None
    assert parse_pin("Package: fleet-agent\nPin: release a=stable\nPin-Priority: 1001\n") is None
    assert parse_pin("Package: fleet-agent\nPin: version 1.0\nPin-Priority: 500\n") is None


def test_install_targets_the_stored_file_or_the_repository():
    direct = hostplan.plan_ship(pkg(), captured("v1-edited-conffile"))
    assert (
        next(s for s in direct.steps if s.op == "install").target
        == "/var/lib/debship/fleet-agent/fleet-agent_1.1.0_all.deb"
    )
    via = hostplan.plan_ship(pkg(), captured("v1-edited-conffile"), via_repo=True)
    assert next(s for s in via.steps if s.op == "install").target == "fleet-agent=1.1.0"
    down = hostplan.plan_ship(pkg("1.0.0"), captured("v2-after-upgrade"))
    assert next(s for s in down.steps if s.op == "install").downgrade


def test_preview_edited_conffile_units_left_alone_and_restarts():
    p = hostplan.plan_ship(pkg(), captured("v1-edited-conffile")).preview
    assert (p.action, p.before, p.to) == ("upgrade", "1.0.0", "1.1.0")
    assert p.edited_conffiles == ("/etc/fleet-agent/agent.conf",)
    assert p.new_defaults == ("/etc/fleet-agent/agent.conf",) and p.left_alone == (STARTUP,)
    assert p.restarts == () and p.starts == () and not p.systemd  # a chroot: nothing runs
    same_default = pkg(conffiles={"/etc/fleet-agent/agent.conf": "2167512a07862c57cc73848665b9b32b"})
    assert hostplan.plan_ship(same_default, captured("v1-edited-conffile")).preview.new_defaults == ()
    running = captured(
        "v1-edited-conffile",
        systemd=True,
        units=(facts.UnitFacts(AGENT, "enabled", "active"), facts.UnitFacts(STARTUP, "disabled", "")),
    )
    p = hostplan.plan_ship(pkg(), running).preview
    assert p.restarts == (AGENT,) and p.starts == () and p.left_alone == (STARTUP,)
    fresh = hostplan.plan_ship(pkg("1.0.0"), captured("fresh-host", systemd=True)).preview
    assert fresh.restarts == () and fresh.starts == (AGENT,) and fresh.as_dict()["from"] is None


@pytest.mark.parametrize(
    "host,target,options,action,to,detail",
    [
        ("v2-after-upgrade", None, {}, "rollback", "1.0.0", "rolled back 1.1.0 -> 1.0.0"),
        ("v2-after-upgrade", "1.1.0", {}, "noop", "1.1.0", "already at 1.1.0"),
        ("v2-after-upgrade", "0.9", {}, "refuse", None, ""),
        ("v1-edited-conffile", None, {}, "refuse", None, ""),
        ("v2-after-upgrade", None, {"dry_run": True}, "dry-run", "1.1.0", "would install 1.0.0"),
        ("v2-after-upgrade", "1.0.0", {"via_repo": True}, "rollback", "1.0.0", "rolled back 1.1.0 -> 1.0.0"),
    ],
)
def test_plan_rollback(host, target, options, action, to, detail):
    plan = hostplan.plan_rollback("fleet-agent", captured(host), target, **options)
    assert (plan.action, plan.to, plan.detail) == (action, to, detail)
    if action == "rollback":
        first = "source" if options.get("via_repo") else "store"
        assert [s.op for s in plan.steps] == [first, "simulate", "install", "verify", "health", "record"]
    if action == "refuse":
        assert "nothing to roll back to" in plan.reason or "is not kept on the host" in plan.reason


def test_recovery_goes_back_removes_or_explains():
    ship = hostplan.plan_ship(pkg(), captured("v1-edited-conffile"))
    broken = captured("v1-edited-conffile", installed=facts.Installed("iF", "1.1.0"))
    back = hostplan.plan_recovery("fleet-agent", ship, broken, "boom")
    assert back.outcome == "rolled-back" and back.after == "1.0.0"
    assert [s.op for s in back.steps] == ["store", "install", "verify", "health", "record"]
    assert back.steps[1].target == "fleet-agent=1.0.0" and back.steps[1].downgrade
    untouched = hostplan.plan_recovery("fleet-agent", ship, captured("v1-edited-conffile"), "locked")
    assert (untouched.outcome, untouched.steps, untouched.detail) == ("failed", (), "locked; the host still has 1.0.0")
    first = hostplan.plan_ship(pkg("1.0.0"), captured("fresh-host"))
    half = captured("fresh-host", installed=facts.Installed("iF", "1.0.0"))
    assert [s.op for s in hostplan.plan_recovery("fleet-agent", first, half, "x").steps] == ["remove"]
    nothing = hostplan.plan_recovery("fleet-agent", first, captured("fresh-host"), "x")
    assert nothing.detail == "x; nothing was installed" and nothing.steps == ()
    gone = captured("v1-edited-conffile", installed=facts.Installed("iF", "1.1.0"), kept=())
    assert (
        "1.0.0 is not kept in /var/lib/debship/fleet-agent"
        in hostplan.plan_recovery("fleet-agent", ship, gone, "x").detail
    )
    via = hostplan.plan_recovery("fleet-agent", ship, broken, "x", via_repo=True)
    assert via.steps[0].op == "source" and via.outcome == "rolled-back"


# decide(): the choice for one package from the installed version and the stored bytes alone.
SHA_A = "a" * 64


def test_decide_fresh_install_upgrade_downgrade():
    assert decide(pkg(sha=SHA_A), None, None, False).action == "install"
    up = decide(pkg("1.1.0", SHA_A), facts.Installed("ii", "1.0.0"), None, False)
    assert (up.action, up.downgrade, up.reason) == ("install", False, "upgrade 1.0.0 -> 1.1.0")
    down = decide(pkg("1.0.0", SHA_A), facts.Installed("ii", "1.1.0"), None, False)
    assert (down.action, down.downgrade) == ("install", True)


def test_decide_same_version_same_bytes_is_a_noop():
    d = decide(pkg(sha=SHA_A), facts.Installed("ii", "1.1.0"), "a" * 64, False)
    assert (d.action, d.reason) == ("noop", "already at 1.1.0")


def test_decide_same_version_other_bytes_is_refused_unless_forced():
    assert decide(pkg(sha=SHA_A), facts.Installed("ii", "1.1.0"), "b" * 64, False).action == "refuse"
    assert decide(pkg(sha=SHA_A), facts.Installed("ii", "1.1.0"), None, False).action == "refuse"
    forced = decide(pkg(sha=SHA_A), facts.Installed("ii", "1.1.0"), "b" * 64, True)
    assert (forced.action, forced.reinstall) == ("install", True)


def test_decide_half_configured_same_version_is_finished():
    d = decide(pkg(sha=SHA_A), facts.Installed("iF", "1.1.0"), "a" * 64, False)
    assert (d.action, d.reinstall) == ("install", True)


CUT_OFF = "2026-12-01T10:00:00Z ship 1.0.0\n2026-12-01T11:00:00Z begin 1.1.0 from 1.0.0\n"


def test_a_rerun_verifies_a_version_a_cut_off_ship_installed():
    """Same bytes installed, but the history says the ship that installed them never verified
    them: verify, health and record again, and roll back to the version noted if they fail."""
    after = captured("v2-after-upgrade", pinned="1.1.0")
    done = hostplan.plan_ship(pkg(), after)
    assert done.action == "noop" and done.outcome == "unchanged"  # the recorded ship: nothing to do
    cut = hostplan.plan_ship(pkg(), dataclasses.replace(after, history=after.history + CUT_OFF))
    assert cut.action == "install" and cut.before == "1.0.0" and cut.to == "1.1.0"
    assert [(s.op, s.recover) for s in cut.steps] == [("verify", True), ("health", True), ("record", False)]
    assert "cut off before verifying it" in cut.reason
    first = hostplan.plan_ship(pkg(), captured("v1-edited-conffile"))
    assert next(s for s in first.steps if s.op == "install").since == "1.0.0"  # noted before apt runs


def test_preview_names_the_units_the_new_version_drops():
    """The installed manifest (captured) lists both units; a version without the startup unit stops it."""
    one_unit = dataclasses.replace(MANIFEST, units=(UnitState(AGENT, True, True, "restart"),))
    new = dataclasses.replace(pkg(), manifest=one_unit)
    p = hostplan.plan_ship(new, captured("v1-edited-conffile")).preview
    assert p.drops == (STARTUP,) and p.as_dict()["drops"] == [STARTUP]
    assert f"stops and disables (not in this version): {STARTUP}" in p.summary()
    assert hostplan.plan_ship(pkg(), captured("v1-edited-conffile")).preview.drops == ()
    assert hostplan.plan_ship(new, captured("fresh-host")).preview.drops == ()


def test_push_managed_or_following_never_both_silently():
    pinned = captured("v2-after-upgrade", pinned="1.1.0")
    following = captured("v2-after-upgrade", follows="http://10.0.0.5/apt")
    refused = hostplan.plan_managed("fleet-agent", pinned, follow=True, take_over=False)
    assert refused.action == "refuse" and refused.reason == (
        "fleet-agent is push-managed on this host (debship's pin holds it at 1.1.0); pass --take-over "
        "to make the host follow the repository instead (the pin is removed)"
    )
    pushed = hostplan.plan_managed("fleet-agent", following, follow=False, take_over=False)
    assert pushed.action == "refuse" and pushed.reason.startswith(
        "this host follows the repository http://10.0.0.5/apt for fleet-agent (debship apply --follow)"
    )
    assert hostplan.plan_managed("fleet-agent", pinned, follow=True, take_over=True) is None
    assert hostplan.plan_managed("fleet-agent", following, follow=False, take_over=True) is None
    assert hostplan.plan_managed("fleet-agent", pinned, follow=False, take_over=False) is None
    assert hostplan.plan_managed("fleet-agent", following, follow=True, take_over=False) is None
    # at the version: a follower writes its marker (and drops the pin) once; a push pins it back
    assert hostplan.pin_steps(following, follow=True) == ()
    assert [s.op for s in hostplan.pin_steps(pinned, follow=True)] == ["pin"]
    assert [s.op for s in hostplan.pin_steps(following)] == ["pin"]
    assert hostplan.plan_ship(pkg(), following, follow=True).steps == ()


def test_refused_versions_preference_round_trips():
    from builder.layout import Layout
    from builder.ship.pin import parse_refused, refused_text

    path = Layout("fleet-agent").refused
    assert path == "/etc/apt/preferences.d/debship-fleet-agent-refused.pref"
    text = refused_text("fleet-agent", ["3.0.0", "1:4.0~rc1", "3.0.0"], path)
    assert parse_refused(text) == ["3.0.0", "1:4.0~rc1"]
    assert "Package: fleet-agent\nPin: version 1:4.0~rc1\nPin-Priority: -1\n" in text and f"rm {path}" in text
    assert parse_refused("") == []


def test_phase_field_in_a_stanza():
    from builder.errors import RepoError
    from builder.repo import check_percent, with_phase

    stanza = "Package: a\nVersion: 1\n"
    assert with_phase(stanza, 25) == "Package: a\nVersion: 1\nPhased-Update-Percentage: 25\n"
    assert with_phase(stanza, 0).endswith("Phased-Update-Percentage: 0\n")
    assert with_phase(stanza, 100) == with_phase(stanza, None) == stanza
    for bad in (-1, 101, "25"):
        with pytest.raises(RepoError, match="is not a percentage of hosts"):
            check_percent(bad)
