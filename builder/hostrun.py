"""Running one host's plan over SSH: connect, wait for boot, read facts, execute steps, emit events.

``HostRun`` is the executor: it knows how to carry out each ``hostplan.Step``
over a ``remote.Connection`` and reports every step as an ``Event``; the
decisions are ``hostplan``'s.  ``ship_host``, ``rollback_host`` and
``list_host`` are the three things ``ship`` does to a host, each a short
table of contents.  Nothing here prints.
"""
from __future__ import annotations

import contextlib
import getpass
import os
import shlex
import socket
from pathlib import Path
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

from . import commands, facts, hostplan, store, verify
from .debinfo import PackageInfo
from .errors import DebshipError, RemoteError, ShipError
from .hostplan import HostPlan, Step
from .layout import DEBSHIP_STATE, Layout
from .manifest import Manifest
from .remote import ConnectOptions, Connection, HostSpec, Result, connect


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
        self.held = None
        self.uploaded: store.Kept | None = None
        self.repaired = False
        self.first_facts: facts.HostFacts | None = None

    @property
    def layout(self) -> Layout:
        return Layout(self.pkg.name)

    def find_package(self):
        """No package named: the host's debship state says which package it manages."""
        if self.pkg.name:
            return ("skip", f"package {self.pkg.name}")
        r = self.sh(facts.managed_command())
        names = facts.parse_managed(r.stdout)
        if len(names) != 1:
            listed = f"it manages {', '.join(names)}" if names else "it manages no debship package"
            raise ShipError(f"cannot tell which package: {listed} ({DEBSHIP_STATE}); pass --package NAME")
        self.pkg = name_only(names[0])
        return ("ok", f"package {names[0]} (the one debship package on the host)")

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

    def wait_for_boot(self):
        timeout = self.opts.boot_timeout
        r = self.sh(facts.boot_command(timeout), timeout=timeout + 30)
        boot = facts.parse_boot(r.exit_code, r.stdout, r.stderr)
        if boot.state == "timeout":
            raise ShipError(f"{boot.detail} after {timeout:g} s; raise --boot-timeout or look at the host")
        if boot.state == "fail":
            raise ShipError(boot.detail)
        return (boot.state, boot.detail)

    def lock(self):
        """Take the host's ship lock for this package (held until the connection closes); a ship
        already holding it is waited for, up to --lock-timeout, and named."""
        lay, wait = self.layout, self.opts.lock_timeout
        who = (f"{getpass.getuser()}@{socket.gethostname()} pid {os.getpid()} since "
               f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, shipping {self.pkg.name} {self.pkg.version}")
        busy: list[str] = []

        def waiting(line: str) -> None:
            if line.startswith("BUSY "):
                busy.append(line[5:])
                self.emit("lock", "warn", f"waiting up to {wait} s for the ship lock, held by {line[5:]}")

        got = self.conn.hold(commands.host_lock(lay.lock, lay.lock_holder, who.strip(), wait), sudo=True,
                             until=commands.LOCKED, timeout=wait + 60, on_line=waiting)
        if isinstance(got, Result):
            if got.exit_code == commands.LOCK_TIMED_OUT:
                raise ShipError(f"another ship holds this host's lock ({busy[0] if busy else lay.lock}) for more "
                                f"than {wait} s; wait for it to finish or raise --lock-timeout")
            raise ShipError(f"cannot take the ship lock {lay.lock} (exit {got.exit_code}): "
                            f"{(got.stderr or got.stdout).strip()[-200:]}")
        self.held = got
        return ("ok", f"{lay.lock}" + (f" (waited for {busy[0]})" if busy else ""))

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
                now = self.repair(now)
            self.first_facts = now
            self.before = now.before
            plans.append(make_plan(now))
            if plans[0].action == "refuse":
                raise ShipError(plans[0].reason)
            return (plans[0].decide_status, plans[0].reason)

        self.step("decide", body)
        return plans[0]

    def repair(self, now: facts.HostFacts) -> facts.HostFacts:
        """dpkg was interrupted (a killed apt, a power cut): finish configuring what it left,
        waiting for the lock like apt does, before deciding anything."""
        what = now.audit.splitlines()[0] if now.audit else f"{self.pkg.name} is {now.installed.status.strip()}"
        self.emit("repair", "warn", f"dpkg was interrupted ({what}); running dpkg --configure -a")
        self.repaired = True
        r = self.sh(commands.configure_pending(self.opts.lock_timeout), sudo=True, timeout=self.opts.lock_timeout + 900)
        after = self.read_facts()
        if not r.ok:
            self.emit("repair", "warn", f"dpkg --configure -a failed: {self.last_line(r.stdout + r.stderr)}")
        return after

    @staticmethod
    def last_line(output: str) -> str:
        return next((l.strip() for l in reversed(output.splitlines()) if l.startswith(("E:", "dpkg:"))),
                    " ".join(output.split())[-200:] or "no output")

    # --- executing steps -------------------------------------------------------------------
    def execute(self, steps: Sequence[Step]) -> None:
        """Run ``steps`` in order; on a failure ``self.failed`` is the step that failed."""
        for s in steps:
            self.failed = s
            self.step(s.op, lambda s=s: self._ops[s.op](self, s))
        self.failed = None

    def upload(self, _step: Step):
        stored = hostplan.stored_path(self.pkg)
        if self.facts and self.facts.stored_sha == self.pkg.sha256:
            return ("ok", f"already in {self.layout.store}")
        r = self.sh(commands.stage(self.pkg.name, self.conn.user), sudo=True, check=True)
        staging = r.stdout.strip()
        remote = f"{staging}/{self.pkg.filename}"
        try:
            self.conn.put(self.pkg.path, remote)
        except DebshipError:
            with contextlib.suppress(DebshipError):  # a dropped connection: the next ship removes it
                self.sh(commands.remove_dir(staging))
            raise
        r = self.sh(commands.check_and_keep(staging, remote, stored, self.pkg.sha256), sudo=True)
        if r.exit_code == commands.DAMAGED:
            raise ShipError(f"upload damaged: sha256 on the host is {r.stdout.strip()}, expected "
                            f"{self.pkg.sha256}; ship again")
        if not r.ok:
            raise ShipError(f"cannot keep the upload in {self.layout.store}: {(r.stderr or r.stdout).strip()[-200:]}")
        self.uploaded = store.Kept(stored.rsplit("/", 1)[1], self.pkg.version)
        return ("ok", f"{self.pkg.size} bytes, sha256 checked, kept as {stored}")

    def add_source(self, _step: Step):
        """Put the repository's key and deb822 source on the host and refresh that source alone."""
        repo, lay = self.opts.via_repo, self.layout
        self.sh(commands.write_file(lay.repo_keyring), sudo=True, stdin=repo.key.encode(), check=True)
        self.sh(commands.write_file(lay.repo_source), sudo=True, stdin=repo.sources.encode(), check=True)
        r = self.sh(commands.apt_update_source(lay.repo_source), sudo=True, timeout=self.opts.lock_timeout + 300)
        problems = [l.strip() for l in (r.stdout + r.stderr).splitlines() if l.startswith(("E:", "W:", "Err:"))]
        if not r.ok or any(l.startswith(("E:", "Err:")) for l in problems):
            raise ShipError(f"apt-get update of {repo.url} failed ({' | '.join(problems[:3]) or f'exit {r.exit_code}'}); "
                            "check the URL, that the host reaches it, and --repo-key")
        now = self.read_facts()
        return ("ok", f"{lay.repo_source}: {self.pkg.name} {', '.join(now.available) or 'not found'} available")

    def refresh_store(self, _step: Step):
        """Prune to the newest N plus the installed version, then rebuild the index from the files."""
        now = self.facts or self.read_facts()
        kept = list(now.kept)
        if self.uploaded is not None and self.uploaded.filename not in {k.filename for k in kept}:
            kept = store.parse_list("".join(f"{k.filename}\t{k.version}\n" for k in [*kept, self.uploaded]))
        keep = self.installed_manifest(now).keep_versions
        pruned = store.to_prune(kept, keep, now.before)
        if pruned:
            self.sh(store.prune_command(self.layout, pruned), sudo=True, check=True)
        self.sh(store.index_command(self.layout), sudo=True, check=True, timeout=300)
        kept = [k.version for k in kept if k.filename not in pruned]
        return ("ok", f"kept {', '.join(kept)}" + (f"; pruned {', '.join(pruned)}" if pruned else ""))

    def install(self, s: Step):
        """apt-get install a stored file path or ``name=version`` from the host's repository."""
        argv = commands.apt_install(s.target, self.opts.lock_timeout, s.downgrade, s.reinstall, self.layout.install_log)
        r = self.sh(argv, sudo=True, timeout=self.opts.lock_timeout + 900)
        if not r.ok:
            raise ShipError(self._install_failure(r.stdout + r.stderr))
        now = self.read_facts()
        if now.installed is None or not now.installed.ok or now.installed.version != s.version:
            raise ShipError(f"apt finished but dpkg reports {now.installed}; see {self.layout.deploy_log}")
        return ("ok", s.why + self.new_dpkg_dist())

    def _install_failure(self, output: str) -> str:
        if "Could not get lock" in output or "Unable to acquire the dpkg frontend lock" in output:
            return (f"dpkg is locked by another process for more than {self.opts.lock_timeout} s "
                    "(unattended-upgrades?); raise --lock-timeout or try again later")
        last = next((l.strip() for l in reversed(output.splitlines()) if l.startswith(("E:", "dpkg:"))), "")
        return f"apt-get install failed ({last or 'see ' + self.layout.install_log})"

    def remove(self, _step: Step):
        r = self.sh(commands.apt_remove(self.pkg.name, self.opts.lock_timeout), sudo=True, timeout=900)
        if not r.ok:
            raise ShipError(f"could not remove {self.pkg.name} either: {r.stderr.strip()[-300:]}")
        return ("ok", f"removed {self.pkg.name}; its deploy log stays in {self.layout.log_dir}/")

    def verify_units(self, s: Step):
        o = self.opts
        systemd = self.facts.systemd if self.facts else None
        return verify.units(self.sh, self.installed_manifest(), o.start_timeout, o.settle, s.after_boot, systemd)

    def health(self, s: Step):
        version = (self.installed_version() or s.version) if s.after_boot else s.version
        systemd = self.facts.systemd if self.facts else None
        return verify.health(self.sh, self.installed_manifest(), self.pkg.name, version, self.opts.start_timeout,
                             systemd)

    def record(self, s: Step):
        """Append to the deploy log (for people) and the ship history (for --rollback)."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        installed = (self.facts.before if self.facts else None) or "nothing"
        line = f"{stamp} ship: {s.why}; now {installed}; by {self.conn.user} via debship\n"
        self.sh(commands.append_lines(self.layout.deploy_log, line, self.layout.history,
                                      store.history_line(stamp, s.target, installed)), sudo=True, check=True)
        return ("ok", self.layout.deploy_log)

    def reboot(self, _step: Step):
        boot_id = self.sh(facts.BOOT_ID, check=True).stdout.strip()
        try:
            self.sh(["systemctl", "reboot"], sudo=True, timeout=30)
        except RemoteError:
            pass  # the connection may drop before the command returns
        deadline = time.monotonic() + self.opts.connect.connect_timeout + self.opts.boot_timeout
        while time.monotonic() < deadline:
            time.sleep(2)
            try:
                self.conn.reconnect()
                if self.sh(facts.BOOT_ID, check=True).stdout.strip() != boot_id:
                    self.wait_for_boot()
                    return ("ok", "host rebooted")
            except DebshipError:
                continue
        raise ShipError("the host did not come back after reboot; check its console")

    _ops = {"source": add_source, "upload": upload, "store": refresh_store, "install": install, "remove": remove,
            "verify": verify_units, "health": health, "record": record, "reboot": reboot}

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

    def new_dpkg_dist(self) -> str:
        """The .dpkg-dist files this ship made: the new default of a conffile the admin edited."""
        first = self.first_facts.dpkg_dist if self.first_facts else ()
        new = [p for p in (self.facts.dpkg_dist if self.facts else ()) if p not in first]
        return f"; new default config to merge: {', '.join(new)}" if new else ""

    def log_tail(self) -> str:
        r = self.sh(commands.tail(self.layout.deploy_log), sudo=True)
        lines = [l.strip() for l in r.stdout.splitlines() if l.strip()] if r.ok else []
        return f"; deploy log: {' | '.join(lines)}" if lines else ""


def name_only(name: str) -> PackageInfo:
    """A package known only by its name: what --rollback, --to-version and --list need."""
    return PackageInfo(path=Path(), name=name, version="", architecture="all", sha256="", size=0)


# --- what ship does to one host ------------------------------------------------------------

def ship_host(run: HostRun) -> HostResult:
    """Connect, wait for boot, read facts, plan, then carry the plan out (recovering on failure)."""
    run.step("connect", run.connect)
    run.step("boot", run.wait_for_boot)
    o = run.opts
    if not o.dry_run:
        run.step("lock", run.lock)
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
    return run.result(plan.outcome, after=plan.to, detail=plan.detail + run.new_dpkg_dist())


def recover(run: HostRun, plan: HostPlan, error: Exception) -> HostResult:
    """A step marked ``recover`` failed: roll back to ``plan.before`` or remove a first install."""
    reason = str(error)
    tail = run.log_tail()
    rec = hostplan.plan_recovery(run.pkg.name, plan, run.read_facts(), reason, run.opts.via_repo is not None)
    try:
        run.execute(rec.steps)
    except DebshipError as e:
        return run.result("failed", after=run.installed_version(), detail=f"{reason}; then {e}")
    return run.result(rec.outcome, after=rec.after, detail=rec.detail + (tail if rec.with_log_tail else ""))


def rollback_host(run: HostRun, target: str | None) -> HostResult:
    """``--rollback`` (target None: the version before the installed one) or ``--to-version``."""
    run.step("connect", run.connect)
    if not run.pkg.name:
        run.step("package", run.find_package)
    run.step("boot", run.wait_for_boot)
    if not run.opts.dry_run:
        run.step("lock", run.lock)
    via = run.opts.via_repo is not None
    plan = run.decide(lambda now: hostplan.plan_rollback(run.pkg.name, now, target, run.opts.dry_run, via))
    run.execute(plan.steps)
    return run.result(plan.outcome, after=plan.to, detail=plan.detail)


def list_host(run: HostRun) -> HostResult:
    """The installed and the kept versions (needs no sudo)."""
    run.step("connect", run.connect)
    if not run.pkg.name:
        run.step("package", run.find_package)
    now = run.read_facts(sudo=False)
    run.before = now.before
    kept = [k.version or f"{k.filename} (unreadable)" for k in now.kept]
    return run.result("listed", after=now.before, detail="kept: " + (", ".join(kept) or "none"))
