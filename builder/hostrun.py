"""Running one host's plan over SSH: connect, wait for boot, read facts, execute steps, emit events.

``HostRun`` is the executor: it knows how to carry out each ``hostplan.Step``
over a ``remote.Connection`` and reports every step as an ``Event``; the
decisions are ``hostplan``'s.  ``ship_host``, ``rollback_host`` and
``list_host`` are the three things ``ship`` does to a host, each a short
table of contents.  Nothing here prints.
"""
from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from . import facts, hostops, hostplan, store
from .debinfo import PackageInfo
from .errors import DebshipError, ShipError
from .hostplan import HostPlan, Step
from .layout import Layout
from .manifest import Manifest
from .pkgsig import TrustedKey
from .remote import ConnectOptions, Connection, Held, HostSpec, connect


@dataclass(frozen=True)
class ViaRepo:
    """``ship --via-repo``: the signed repository hosts install from, instead of an upload."""

    url: str
    key: str                       # the armored public key the source is Signed-By
    sources: str                   # the deb822 .sources text (Signed-By: Layout.repo_keyring)


@dataclass(frozen=True)
class ShipOptions:
    connect: ConnectOptions = field(default_factory=ConnectOptions)
    boot_timeout: float = 600.0
    lock_timeout: int = 300
    settle: float = 3.0            # s between the two looks at a unit's restart count
    start_timeout: float = 60.0    # s for units to become active and health to pass
    force: bool = False
    dry_run: bool = False
    reboot: bool = False
    rollback_on_failure: bool = True   # --no-rollback turns it off
    via_repo: ViaRepo | None = None
    trust_key: TrustedKey | None = None   # --trust-key: installed on each host before anything else


@dataclass(frozen=True)
class Event:
    host: str
    step: str
    status: str                    # start | ok | warn | fail | skip
    elapsed: float
    detail: str = ""
    data: dict | None = None       # structured detail (the plan); JSON output shows it as "detail"


@dataclass(frozen=True)
class HostResult:
    host: str
    outcome: str                   # installed | unchanged | dry-run | listed | rolled-back | failed | skipped
    before: str | None = None
    after: str | None = None
    elapsed: float = 0.0
    detail: str = ""
    package: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome in ("installed", "unchanged", "dry-run", "listed")


class HostRun:
    """The connection to one host and the steps run over it, each between two events."""

    def __init__(self, pkg: PackageInfo, spec: HostSpec, opts: ShipOptions, emit: Callable[[Event], None]):
        self.pkg, self.spec, self.opts, self._emit = pkg, spec, opts, emit
        self.host = str(spec)
        self.conn: Connection | None = None
        self.t0 = time.monotonic()
        self.before: str | None = None
        self.facts: facts.HostFacts | None = None
        self.failed: Step | None = None
        self.held: Held | None = None
        self.uploaded: store.Kept | None = None
        self.repaired = False
        self.first_facts: facts.HostFacts | None = None

    @property
    def layout(self) -> Layout:
        return Layout(self.pkg.name)

    # --- events and results ----------------------------------------------------------------
    def emit(self, step: str, status: str, detail: str = "", data: dict | None = None) -> None:
        self._emit(Event(self.host, step, status, round(time.monotonic() - self.t0, 3), detail, data))

    def result(self, outcome: str, after: str | None = None, detail: str = "") -> HostResult:
        return HostResult(self.host, outcome, self.before, after, round(time.monotonic() - self.t0, 3), detail,
                          self.pkg.name)

    def step(self, name: str, func: Callable[[], tuple]) -> tuple:
        """Run one step between a start event and an ok/warn/skip/fail event carrying its detail."""
        self.emit(name, "start")
        try:
            status, detail = func()
        except DebshipError as e:
            self.emit(name, "fail", str(e))
            raise
        self.emit(name, status, detail)
        return status, detail

    def guarded(self, body: Callable[[], HostResult]) -> HostResult:
        """Run ``body``; a foreseen failure fails this host with its message, a bug with one line."""
        try:
            return body()
        except DebshipError as e:
            return self.result("failed", after=self.installed_version(), detail=str(e))
        except Exception as e:  # a bug must not take the other hosts down with a traceback
            return self.result("failed", detail=f"internal error in debship ({type(e).__name__}: {e}); "
                                                "please report it with this line")
        finally:
            if self.held is not None:
                self.held.close()
            if self.conn is not None:
                self.conn.close()

    # --- reaching the host -----------------------------------------------------------------
    def connect(self):
        self.conn = connect(self.spec, self.opts.connect)
        return ("ok", f"as {self.conn.user}")

    def read_facts(self, sudo: bool = True) -> facts.HostFacts:
        """Everything the plan needs, in one round trip (with sudo: conffiles may be 0600)."""
        stored = hostplan.stored_path(self.pkg) if self.pkg.version else ""
        units = [u.name for u in self.pkg.manifest.units]
        r = self.sh(facts.host_facts_command(self.layout, stored, units), sudo=sudo, check=True)
        self.facts = facts.parse_host_facts(r.stdout)
        return self.facts

    def decide(self, make_plan: Callable[[facts.HostFacts], HostPlan]) -> HostPlan:
        """The "decide" step: read the facts, plan from them; a refused plan fails the host."""
        plans: list[HostPlan] = []

        def body():
            now = self.read_facts()
            if now.needs_repair and not self.opts.dry_run:
                now = hostops.repair(self, now)
            self.first_facts = now
            self.before = now.before
            plans.append(make_plan(now))
            if plans[0].action == "refuse":
                raise ShipError(plans[0].reason)
            return (plans[0].decide_status, plans[0].reason)

        self.step("decide", body)
        return plans[0]

    # --- executing steps -------------------------------------------------------------------
    def execute(self, steps: Sequence[Step]) -> None:
        """Run ``steps`` in order; on a failure ``self.failed`` is the step that failed."""
        for s in steps:
            self.failed = s
            self.step(s.op, lambda s=s: hostops.OPS[s.op](self, s))
        self.failed = None

    # --- helpers ---------------------------------------------------------------------------
    def sh(self, argv: Sequence[str], *, sudo: bool = False, check: bool = False, timeout: float = 120.0,
           stdin: bytes | None = None):
        r = self.conn.run(list(argv), sudo=sudo, timeout=timeout, stdin=stdin)
        if check and not r.ok:
            raise ShipError(f"`{shlex.join(argv)}` failed (exit {r.exit_code}): {r.stderr.strip() or r.stdout.strip()}")
        return r

    def installed_version(self) -> str | None:
        if self.conn is None:
            return None
        try:
            r = self.sh(facts.installed_command(self.pkg.name))
        except DebshipError:
            return None
        fact = facts.parse_installed(r.exit_code, r.stdout)
        return fact.version if fact else None

    def installed_manifest(self, now: facts.HostFacts | None = None) -> Manifest:
        """The manifest of the version now installed (after a rollback: the older one's)."""
        now = now or self.facts
        if now is not None and now.manifest.strip():
            parsed = Manifest.from_json(now.manifest, self.pkg.name)
            if parsed.name:
                return parsed
        return self.pkg.manifest


# --- what ship does to one host ------------------------------------------------------------

def ship_host(run: HostRun) -> HostResult:
    """Connect, wait for boot, read facts, plan, then carry the plan out (recovering on failure)."""
    run.step("connect", run.connect)
    run.step("boot", lambda: hostops.wait_for_boot(run))
    o = run.opts
    if not o.dry_run:
        run.step("lock", lambda: hostops.take_lock(run))
        if o.trust_key is not None:
            run.step("trust", lambda: hostops.trust_key(run))
    via = o.via_repo is not None
    plan = run.decide(lambda now: hostplan.plan_ship(run.pkg, now, o.force, o.dry_run, o.reboot, via))
    if plan.preview is not None:
        run.emit("plan", "ok", plan.preview.summary(), plan.preview.as_dict())
    if plan.action == "dry-run":
        run.emit("install", "skip", f"dry run: {plan.detail}")
    steps = plan.steps
    if run.repaired and plan.action == "noop" and not o.reboot:  # finished by the repair: prove it runs
        steps = hostplan.verify_steps(plan.before or run.pkg.version)
    try:
        run.execute(steps)
    except DebshipError as e:
        if run.failed is None or not run.failed.recover or not o.rollback_on_failure:
            raise
        return recover(run, plan, e)
    return run.result(plan.outcome, after=plan.to, detail=plan.detail + hostops.new_dpkg_dist(run))


def recover(run: HostRun, plan: HostPlan, error: Exception) -> HostResult:
    """A step marked ``recover`` failed: roll back to ``plan.before`` or remove a first install."""
    reason = str(error)
    try:
        tail = hostops.log_tail(run)
        now = run.read_facts()
    except DebshipError:  # the connection dropped (did the host reboot?): nothing can be rolled back now
        return run.result("failed", detail=f"{reason}; the connection dropped during {run.failed.op}, nothing was "
                                           "rolled back; ship again: it first finishes an interrupted dpkg "
                                           "(dpkg --configure -a)")
    rec = hostplan.plan_recovery(run.pkg.name, plan, now, reason, run.opts.via_repo is not None)
    try:
        run.execute(rec.steps)
    except DebshipError as e:
        return run.result("failed", after=run.installed_version(), detail=f"{reason}; then {e}")
    return run.result(rec.outcome, after=rec.after, detail=rec.detail + (tail if rec.with_log_tail else ""))


def rollback_host(run: HostRun, target: str | None) -> HostResult:
    """``--rollback`` (target None: the version before the installed one) or ``--to-version``."""
    run.step("connect", run.connect)
    if not run.pkg.name:
        run.step("package", lambda: hostops.find_package(run))
    run.step("boot", lambda: hostops.wait_for_boot(run))
    if not run.opts.dry_run:
        run.step("lock", lambda: hostops.take_lock(run))
    via = run.opts.via_repo is not None
    plan = run.decide(lambda now: hostplan.plan_rollback(run.pkg.name, now, target, run.opts.dry_run, via))
    run.execute(plan.steps)
    return run.result(plan.outcome, after=plan.to, detail=plan.detail)


def list_host(run: HostRun) -> HostResult:
    """The installed and the kept versions (needs no sudo)."""
    run.step("connect", run.connect)
    if not run.pkg.name:
        run.step("package", lambda: hostops.find_package(run))
    now = run.read_facts(sudo=False)
    run.before = now.before
    kept = [k.version or f"{k.filename} (unreadable)" for k in now.kept]
    return run.result("listed", after=now.before, detail="kept: " + (", ".join(kept) or "none"))
