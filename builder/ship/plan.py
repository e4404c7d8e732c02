"""Deciding what to do on one host: pure functions from its facts to steps as plain data.

``plan_ship``, ``plan_rollback`` and ``plan_recovery`` read a frozen
``facts.HostFacts`` (one SSH round trip) and the request, and return a
``HostPlan``: the action, the versions before and after, and the steps to run,
each saying what to run and whether its failure calls for recovery.  Nothing
here touches a connection; ``executor`` carries the steps out (Convention 5).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..debinfo import PackageInfo, deb_filename
from ..layout import Layout
from ..manifest import Manifest
from ..version import compare
from . import store
from .facts import HostFacts, Installed


@dataclass(frozen=True)
class Decision:
    action: str  # install | noop | refuse
    reason: str
    downgrade: bool = False
    reinstall: bool = False


def decide(pkg: PackageInfo, installed: Installed | None, stored_sha: str | None, force: bool) -> Decision:
    """What to do with ``pkg`` on a host, from its facts alone."""
    if installed is None:
        return Decision("install", f"install {pkg.version} (not installed)")
    order = compare(pkg.version, installed.version)
    if order == 0 and installed.ok:
        if stored_sha == pkg.sha256:
            return Decision("noop", f"already at {pkg.version}")
        if not force:
            return Decision(
                "refuse",
                f"{installed.version} is installed with other contents than this "
                f"package; bump the version, or pass --force to reinstall",
            )
        return Decision("install", f"reinstall {pkg.version} (--force)", reinstall=True)
    if order == 0:
        return Decision("install", f"finish {pkg.version} (dpkg status {installed.status})", reinstall=True)
    verb = "upgrade" if order > 0 else "downgrade"
    return Decision("install", f"{verb} {installed.version} -> {pkg.version}", downgrade=order < 0)


@dataclass(frozen=True)
class Step:
    """One thing to do on the host.  ``op`` names the executor's action; ``recover``: when this
    step fails, go back to the version the host had (unless --no-rollback)."""

    op: str  # upload store simulate install remove verify health record reboot pin
    target: str = ""  # install: a stored .deb or name=version; record: ship | rollback
    version: str = ""  # the version the step installs, checks or records
    why: str = ""  # install: the decision; record: the line for the deploy log
    downgrade: bool = False
    reinstall: bool = False
    after_boot: bool = False  # verify: every enabled unit (the boot started them)
    recover: bool = False
    since: str = ""  # install by ship: the version the host had ("-": none), noted as "begin"


@dataclass(frozen=True)
class Preview:
    """What an install will do to the host, for the "plan" event (``ship --dry-run`` shows it)."""

    action: str  # install | upgrade | downgrade | reinstall | finish
    before: str | None
    to: str
    edited_conffiles: tuple[str, ...] = ()  # the admin changed them (md5 differs from dpkg's record)
    new_defaults: tuple[str, ...] = ()  # ... and this version changes them: <path>.dpkg-dist will appear
    left_alone: tuple[str, ...] = ()  # units the admin disabled or masked
    restarts: tuple[str, ...] = ()  # running units the install restarts
    starts: tuple[str, ...] = ()  # units it starts
    systemd: bool = True
    drops: tuple[str, ...] = ()  # units of the installed version this one no longer ships:
    # stopped, disabled and forgotten by its preinst/postinst

    def as_dict(self) -> dict:
        return {
            "action": self.action,
            "from": self.before,
            "to": self.to,
            "edited_conffiles": list(self.edited_conffiles),
            "dpkg_dist": [f"{p}.dpkg-dist" for p in self.new_defaults],
            "left_alone": list(self.left_alone),
            "restarts": list(self.restarts),
            "starts": list(self.starts),
            "systemd": self.systemd,
            "drops": list(self.drops),
        }

    def summary(self) -> str:
        parts = [f"{self.action} {self.before + ' -> ' if self.before else ''}{self.to}"]
        for label, items in (
            ("admin-edited conffiles kept", self.edited_conffiles),
            ("new defaults as .dpkg-dist", self.new_defaults),
            ("left alone (disabled/masked)", self.left_alone),
            ("restarts", self.restarts),
            ("starts", self.starts),
            ("stops and disables (not in this version)", self.drops),
        ):
            if items:
                parts.append(f"{label}: {', '.join(items)}")
        if not self.systemd:
            parts.append("systemd is not running: nothing is started or restarted")
        return "; ".join(parts)


@dataclass(frozen=True)
class HostPlan:
    action: str  # install | noop | refuse | dry-run (ship); rollback | noop | refuse | dry-run
    before: str | None
    to: str | None
    reason: str  # shown on the "decide" event
    steps: tuple[Step, ...] = ()
    outcome: str = "installed"  # the host's outcome when every step passes
    detail: str = ""  # the summary's detail then
    reinstall: bool = False
    decide_status: str = "ok"
    preview: Preview | None = None


@dataclass(frozen=True)
class Recovery:
    """What to do after a step marked ``recover`` failed."""

    steps: tuple[Step, ...]
    outcome: str  # failed | rolled-back
    after: str | None
    detail: str
    with_log_tail: bool = True


def verify_steps(version: str, after_boot: bool = False, recover: bool = False) -> tuple[Step, ...]:
    return (
        Step("verify", version=version, after_boot=after_boot, recover=recover),
        Step("health", version=version, recover=recover),
    )


def stored_path(pkg: PackageInfo) -> str:
    """Where ``pkg`` is kept in the host's store."""
    return f"{Layout(pkg.name).store}/{deb_filename(pkg.name, pkg.version, pkg.architecture)}"


def plan_ship(
    pkg: PackageInfo,
    facts: HostFacts,
    force: bool = False,
    dry_run: bool = False,
    reboot: bool = False,
    via_repo: bool = False,
    follow: bool = False,
) -> HostPlan:
    """Install, upgrade or downgrade to ``pkg``; nothing when the host has these very bytes.

    ``via_repo``: the host installs ``name=version`` from a signed repository instead of a file
    uploaded to its store (the repository refuses other bytes under a published version, so
    the same version installed is the same package)."""
    same = facts.installed is not None and facts.installed.version == pkg.version
    d = decide(pkg, facts.installed, pkg.sha256 if via_repo and same else facts.stored_sha, force)
    before = facts.before
    if d.action == "refuse":
        return HostPlan("refuse", before, None, d.reason)
    short = None if via_repo or facts.stored_sha == pkg.sha256 else short_of_space(pkg, facts)
    if short and d.action == "install":
        return HostPlan("refuse", before, None, short)
    reboot_steps = (Step("reboot"), *verify_steps(pkg.version, after_boot=True)) if reboot else ()
    cut = store.unfinished(facts.history)
    if d.action == "noop" and cut and cut[0] == pkg.version and not dry_run:
        why = (
            f"finish {pkg.version}: an earlier ship installed it (from {cut[1] or 'nothing'}) and was cut off "
            "before verifying it"
        )
        steps = (
            *verify_steps(pkg.version, recover=True),
            Step("record", "ship", pkg.version, why),
            *pin_steps(facts, follow),
            *reboot_steps,
        )
        return HostPlan("install", cut[1], pkg.version, why, steps, "installed", why)
    if d.action == "noop":
        steps = (*pin_steps(facts, follow), *reboot_steps) if not dry_run else ()
        return HostPlan("noop", before, before, d.reason, steps, "unchanged", d.reason)
    preview = preview_install(pkg, facts, d)
    target = f"{pkg.name}={pkg.version}" if via_repo else stored_path(pkg)
    simulate = Step("simulate", target, pkg.version, d.reason, d.downgrade, d.reinstall)
    if dry_run:
        return HostPlan(
            "dry-run", before, before, d.reason, (simulate,), "dry-run", f"would {d.reason}", preview=preview
        )
    install = Step(
        "install", target, pkg.version, d.reason, d.downgrade, d.reinstall, recover=True, since=before or "-"
    )
    fetch = (Step("source"),) if via_repo else (Step("upload"), Step("store"))
    steps = (
        *fetch,
        simulate,
        install,
        *verify_steps(pkg.version, recover=True),
        Step("record", "ship", pkg.version, d.reason),
        *reboot_steps,
    )
    return HostPlan(
        "install", before, pkg.version, d.reason, steps, "installed", d.reason, reinstall=d.reinstall, preview=preview
    )


def pin_steps(facts: HostFacts, follow: bool = False) -> tuple[Step, ...]:
    """The host is already at the version asked for: pin it there if debship's pin does not yet
    (a host shipped to before debship pinned, or the admin removed the pin by hand).
    ``follow``: the opposite, the host follows the repository: no pin, the follow marker."""
    if facts.installed is None or not facts.installed.ok:
        return ()
    if follow:
        return () if facts.follows and not facts.pinned else (Step("pin", version=facts.before),)
    if facts.pinned == facts.before and not facts.follows:
        return ()
    return (Step("pin", version=facts.before),)


def push_managed(name: str, pinned: str) -> str:
    """Why a push-managed host does not start following the repository on its own."""
    return (
        f"{name} is push-managed on this host (debship's pin holds it at {pinned}); pass "
        "--take-over to make the host follow the repository instead (the pin is removed)"
    )


def plan_managed(name: str, facts: HostFacts, follow: bool, take_over: bool) -> HostPlan | None:
    """A host is push-managed (debship's pin) or follows the repository (``apply --follow``),
    never both silently: going from one to the other takes ``--take-over``."""
    if take_over:
        return None
    if follow and facts.pinned and not facts.follows:
        return HostPlan("refuse", facts.before, None, push_managed(name, facts.pinned))
    if not follow and facts.follows:
        return HostPlan(
            "refuse",
            facts.before,
            None,
            f"this host follows the repository {facts.follows} for {name} (debship apply --follow); pass "
            "--take-over to manage it by push from now on (following stops)",
        )
    return None


def short_of_space(pkg: PackageInfo, facts: HostFacts) -> str | None:
    """The upload needs room twice: staged in /var/tmp, then kept in the store."""
    need = -(-pkg.size // 1024) + 64  # KiB, with a little room for the index
    store_dir = Layout(pkg.name).store
    store_folder = next(
        (f for f in (store_dir, store_dir.rsplit("/", 1)[0], "/var/lib") if facts.free(f) is not None), None
    )
    for folder, role in (("/var/tmp", "staging"), (store_folder, "the store")):
        free = facts.free(folder) if folder else None
        if free is not None and free < need:
            return (
                f"not enough disk space: {folder} ({role}) has {free} KiB free, the package needs {need} KiB; "
                "free some space on the host and ship again"
            )
    return None


def preview_install(pkg: PackageInfo, facts: HostFacts, d: Decision) -> Preview:
    """Conffiles the admin edited (and whether this version changes them), units left alone,
    and which services the maintainer scripts will restart or start."""
    before = facts.before
    action = d.reason.split()[0] if before else "install"
    edited = [c for c in facts.conffiles if c.edited and not c.obsolete]
    changed = [c.path for c in edited if c.path in pkg.conffiles and pkg.conffiles[c.path] != c.recorded]
    left_alone = [u.name for u in pkg.manifest.units if (f := facts.unit(u.name)) and f.left_alone]
    live = [u for u in pkg.manifest.units if u.name not in left_alone and facts.systemd]
    running = {u.name for u in facts.units if u.active == "active"}
    upgrading = before is not None
    restarts = [u.name for u in live if upgrading and u.name in running and u.on_upgrade in ("restart", "stop")]
    starts = [u.name for u in live if u.start and u.enable and u.name not in restarts]
    shipped = {u.name for u in pkg.manifest.units}
    drops = sorted({u.name for u in Manifest.from_json(facts.manifest).units} - shipped) if upgrading else []
    return Preview(
        action,
        before,
        pkg.version,
        tuple(c.path for c in edited),
        tuple(changed),
        tuple(left_alone),
        tuple(restarts),
        tuple(starts),
        facts.systemd,
        tuple(drops),
    )


def plan_rollback(
    name: str, facts: HostFacts, target: str | None, dry_run: bool = False, via_repo: bool = False
) -> HostPlan:
    """``--rollback`` (``target`` None: the version before the installed one) or ``--to-version``,
    from the host's store (or, ``via_repo``, from the repository's versions)."""
    before = facts.before
    versions = list(facts.available) if via_repo else [k.version for k in facts.kept if k.version]
    kept = [store.Kept("", v) for v in versions] if via_repo else list(facts.kept)
    if target is None:
        target = store.previous_version(facts.history, before, kept)
        if target is None:
            return HostPlan(
                "refuse",
                before,
                None,
                f"nothing to roll back to: installed {before or 'nothing'}, kept {', '.join(versions) or 'none'}",
            )
    elif target not in versions:
        return HostPlan(
            "refuse",
            before,
            None,
            f"version {target} is not kept on the host (kept: {', '.join(versions) or 'none'}); ship it first",
        )
    if target == before:
        return HostPlan(
            "noop",
            before,
            before,
            target,
            () if dry_run else pin_steps(facts),
            "unchanged",
            f"already at {target}",
            decide_status="skip",
        )
    if dry_run:
        return HostPlan("dry-run", before, before, target, (), "dry-run", f"would install {target}")
    fetch = Step("source") if via_repo else Step("store")
    steps = (
        fetch,
        Step("simulate", f"{name}={target}", target, f"{before} -> {target}", downgrade=True),
        Step("install", f"{name}={target}", target, f"{before} -> {target}", downgrade=True),
        *verify_steps(target),
        Step("record", "rollback", target, f"rollback {before} -> {target}"),
    )
    return HostPlan("rollback", before, target, target, steps, "installed", f"rolled back {before} -> {target}")


def plan_revert(name: str, facts: HostFacts, to: str | None, via_repo: bool = False) -> HostPlan:
    """A halted rollout puts a host it moved back to ``to``, the version it had (None: it had
    none, so the package is removed again)."""
    if to is not None:
        return plan_rollback(name, facts, to, via_repo=via_repo)
    if facts.installed is None:
        return HostPlan("noop", None, None, "not installed", (), "unchanged", "not installed", decide_status="skip")
    return HostPlan(
        "remove",
        facts.before,
        None,
        f"remove {facts.before} (the host had no earlier version)",
        (Step("remove"),),
        "installed",
        f"removed {facts.before}",
    )


def plan_recovery(name: str, plan: HostPlan, now: HostFacts, reason: str, via_repo: bool = False) -> Recovery:
    """A step marked ``recover`` failed with ``reason``: back to ``plan.before`` from the store (or
    the repository), or remove a first install, so that no half-configured package is left running."""
    before, current = plan.before, now.installed
    if plan.reinstall:
        return Recovery((), "failed", now.before, f"{reason}; a reinstall of the same version cannot be rolled back")
    if current is None and before is None:
        return Recovery((), "failed", None, f"{reason}; nothing was installed", with_log_tail=False)
    if current is not None and current.ok and current.version == before:
        return Recovery((), "failed", before, f"{reason}; the host still has {before}", with_log_tail=False)
    if before is None:
        return Recovery(
            (Step("remove"),), "failed", None, f"{reason}; removed the package (the host had no earlier version)"
        )
    available = set(now.available) if via_repo else {k.version for k in now.kept}
    if before not in available:
        where = "in the repository" if via_repo else f"kept in {Layout(name).store}"
        return Recovery(
            (), "failed", now.before, f"{reason}; then cannot roll back: {before} is not {where}", with_log_tail=False
        )
    steps = (
        Step("source" if via_repo else "store"),
        Step("install", f"{name}={before}", before, f"roll back to {before}", downgrade=True),
        *verify_steps(before),
        Step("record", "rollback", before, f"rolled back to {before}: {reason}"),
    )
    return Recovery(steps, "rolled-back", before, f"rolled back to {before}: {reason}")
