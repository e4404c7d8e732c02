"""Running one host's plan: connect, wait for boot, read facts, execute steps, emit events.

``HostRun`` is the executor and the only holder of a host's state: it carries out each
``plan.Step`` through ``actions`` over a ``connection.Connection`` (SSH or local: whichever
``connector`` opens) and reports every step as an ``Event``; the decisions are ``plan``'s.
``ship_host``, ``rollback_host`` and ``list_host`` are the three things ``ship`` does to a
host, each a short table of contents.  Nothing here prints.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Callable

from ..debinfo import PackageInfo
from ..errors import DebshipError, ShipError
from ..layout import Layout
from . import actions, facts, store
from .connection import Connection, Held
from .options import ShipOptions
from .plan import HostPlan, Step, plan_managed, plan_recovery, plan_revert, plan_rollback, plan_ship, verify_steps
from .sshconfig import ConnectOptions, HostSpec

Connector = Callable[[HostSpec, ConnectOptions], Connection]


@dataclass(frozen=True)
class Event:
    host: str
    step: str
    status: str  # start | ok | warn | fail | skip
    elapsed: float
    detail: str = ""
    data: dict | None = None  # structured detail (the plan); JSON output shows it as "detail"


@dataclass(frozen=True)
class HostResult:
    host: str
    outcome: str  # installed | unchanged | dry-run | listed | rolled-back | failed | skipped
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

    def __init__(
        self, pkg: PackageInfo, spec: HostSpec, opts: ShipOptions, emit: Callable[[Event], None], connector: Connector
    ):
        self.pkg, self.spec, self.opts, self._emit, self._connector = pkg, spec, opts, emit, connector
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
        return HostResult(
            self.host, outcome, self.before, after, round(time.monotonic() - self.t0, 3), detail, self.pkg.name
        )

    def step(self, name: str, func: Callable[[], tuple]) -> tuple:
        """Run one step between a start event and an ok/warn/skip/fail event carrying its detail."""
        self.emit(name, "start")
        try:
            status, detail = func()
        except DebshipError as e:
            diagnosis = getattr(e, "diagnosis", None)
            self.emit(name, "fail", str(e), {"message": str(e), **diagnosis} if diagnosis else None)
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
            return self.result(
                "failed", detail=f"internal error in debship ({type(e).__name__}: {e}); please report it with this line"
            )
        finally:
            if self.held is not None:
                self.held.close()
            if self.conn is not None:
                self.conn.close()

    # --- reaching the host -----------------------------------------------------------------
    def connect(self):
        self.conn = self._connector(self.spec, self.opts.connect)
        return ("ok", f"as {self.conn.user}")

    def context(self) -> actions.Context:
        """What the next action sees: a frozen snapshot of this run."""
        return actions.Context(self.conn, self.pkg, self.opts, self.emit, self.facts, self.first_facts, self.uploaded)

    def keep(self, done: actions.Done) -> tuple:
        """Keep what an action learnt; its status and detail go on its event."""
        if done.facts is not None:
            self.facts = done.facts
        if done.held is not None:
            self.held = done.held
        if done.uploaded is not None:
            self.uploaded = done.uploaded
        if done.pkg is not None:
            self.pkg = done.pkg
        return (done.status, done.detail)

    def act(self, name: str, action: Callable[..., actions.Done], *args) -> tuple:
        """One action as one step: run it on a snapshot, keep what it returns."""
        return self.step(name, lambda: self.keep(action(self.context(), *args)))

    def read_facts(self, sudo: bool = True) -> facts.HostFacts:
        """Everything the plan needs, in one round trip (with sudo: conffiles may be 0600)."""
        self.facts = actions.read_facts(self.context(), sudo)
        return self.facts

    def decide(self, make_plan: Callable[[facts.HostFacts], HostPlan]) -> HostPlan:
        """The "decide" step: read the facts, plan from them; a refused plan fails the host."""
        plans: list[HostPlan] = []

        def body():
            now = self.read_facts()
            if now.needs_repair and not self.opts.dry_run:
                self.repaired = True
                now = self.facts = actions.repair(self.context(), now)
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
            self.act(s.op, actions.OPS[s.op], s)
        self.failed = None

    # --- helpers ---------------------------------------------------------------------------
    def installed_version(self) -> str | None:
        if self.conn is None:
            return None
        return actions.installed_version(self.context())


# --- what ship does to one host ------------------------------------------------------------


def ship_host(run: HostRun) -> HostResult:
    """Connect, wait for boot, read facts, plan, then carry the plan out (recovering on failure)."""
    run.step("connect", run.connect)
    o = run.opts
    if o.wait_for_boot:
        run.act("boot", actions.wait_for_boot)
    if not o.dry_run:
        run.act("lock", actions.take_lock)
        if o.trust_key is not None:
            run.act("trust", actions.trust_key)
    via = o.via_repo is not None
    plan = run.decide(
        lambda now: (
            plan_managed(run.pkg.name, now, o.follow, o.take_over)
            or plan_ship(run.pkg, now, o.force, o.dry_run, o.reboot, via, o.follow)
        )
    )
    run.before = plan.before  # a version a cut-off ship installed counts from the one before it
    if plan.preview is not None:
        run.emit("plan", "ok", plan.preview.summary(), plan.preview.as_dict())
    steps = plan.steps
    if run.repaired and plan.action == "noop" and not o.reboot:  # finished by the repair: prove it runs
        steps = verify_steps(plan.before or run.pkg.version)
    try:
        run.execute(steps)
    except DebshipError as e:
        if run.failed is None or not run.failed.recover or not o.rollback_on_failure:
            raise
        return recover(run, plan, e)
    if plan.action == "dry-run":
        run.emit("install", "skip", f"dry run: {plan.detail}")
    return run.result(
        plan.outcome, after=plan.to, detail=plan.detail + actions.new_dpkg_dist(run.first_facts, run.facts)
    )


def recover(run: HostRun, plan: HostPlan, error: Exception) -> HostResult:
    """A step marked ``recover`` failed: roll back to ``plan.before`` or remove a first install."""
    reason = str(error)
    try:
        tail = actions.log_tail(run.context())
        now = run.read_facts()
    except DebshipError:  # the connection dropped (did the host reboot?): nothing can be rolled back now
        return run.result(
            "failed",
            detail=f"{reason}; the connection dropped during {run.failed.op}, nothing was "
            "rolled back; ship again: it first finishes an interrupted dpkg "
            "(dpkg --configure -a)",
        )
    rec = plan_recovery(run.pkg.name, plan, now, reason, run.opts.via_repo is not None)
    try:
        run.execute(rec.steps)
        if run.opts.follow and rec.outcome == "rolled-back":  # the next timer run must not take it again
            run.act("refuse", actions.refuse_version)
    except DebshipError as e:
        return run.result("failed", after=run.installed_version(), detail=f"{reason}; then {e}")
    return run.result(rec.outcome, after=rec.after, detail=rec.detail + (tail if rec.with_log_tail else ""))


def rollback_host(run: HostRun, target: str | None) -> HostResult:
    """``--rollback`` (target None: the version before the installed one) or ``--to-version``."""
    run.step("connect", run.connect)
    if not run.pkg.name:
        run.act("package", actions.find_package)
    run.act("boot", actions.wait_for_boot)
    if not run.opts.dry_run:
        run.act("lock", actions.take_lock)
    via = run.opts.via_repo is not None
    plan = run.decide(lambda now: plan_rollback(run.pkg.name, now, target, run.opts.dry_run, via))
    run.execute(plan.steps)
    return run.result(plan.outcome, after=plan.to, detail=plan.detail)


def revert_host(run: HostRun, to: str | None) -> HostResult:
    """A halted rollout: back to ``to``, the version this host had before the run (None: remove)."""
    run.step("connect", run.connect)
    run.act("boot", actions.wait_for_boot)
    run.act("lock", actions.take_lock)
    via = run.opts.via_repo is not None
    plan = run.decide(lambda now: plan_revert(run.pkg.name, now, to, via))
    run.execute(plan.steps)
    return run.result(plan.outcome, after=plan.to, detail=plan.detail)


def soak_host(run: HostRun, shipped: HostResult, duration: float, stop: Callable[[], bool]) -> HostResult:
    """After its batch: watch a host that took the package for ``duration`` s; one that fails the
    soak is rolled back (when this run moved it) like a failed verify."""
    run.before = shipped.before
    run.step("connect", run.connect)
    run.act("lock", actions.take_lock)
    run.read_facts()
    try:
        run.act("soak", actions.soak, duration, stop)
    except DebshipError as e:
        moved = shipped.outcome == "installed" and shipped.before != shipped.after
        if not moved or not run.opts.rollback_on_failure:
            return run.result("failed", after=run.installed_version(), detail=str(e))
        run.failed = Step("soak", recover=True)
        return recover(run, HostPlan("install", shipped.before, shipped.after, ""), e)
    return replace(shipped, elapsed=round(shipped.elapsed + time.monotonic() - run.t0, 3))


def list_host(run: HostRun) -> HostResult:
    """The installed and the kept versions (needs no sudo)."""
    run.step("connect", run.connect)
    if not run.pkg.name:
        run.act("package", actions.find_package)
    now = run.read_facts(sudo=False)
    run.before = now.before
    kept = [k.version or f"{k.filename} (unreadable)" for k in now.kept]
    return run.result("listed", after=now.before, detail="kept: " + (", ".join(kept) or "none"))
