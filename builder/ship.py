"""``ship``: take one .deb to many hosts, each step reported as an event.

For each host: connect (waiting while it boots), wait for cloud-init, upload
to a staging folder and check the checksum, keep the package in its root-owned
store, decide from facts, install with apt, verify the services, record what
was done in the host's deploy log.  Hosts run on a thread pool, in rolling
batches.  Nothing here prints: ``emit(Event)`` is the only output.
"""
from __future__ import annotations

import shlex
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from . import facts
from .debfile import deb_filename
from .debinfo import PackageInfo
from .errors import DebshipError, RemoteError, ShipError
from .remote import ConnectOptions, Connection, HostSpec, connect
from .version import compare

STEPS = ("connect", "boot", "decide", "upload", "install", "verify", "health", "record", "reboot")


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


@dataclass(frozen=True)
class Event:
    host: str
    step: str
    status: str                    # start | ok | warn | fail | skip
    elapsed: float
    detail: str = ""


@dataclass(frozen=True)
class HostResult:
    host: str
    outcome: str                   # installed | unchanged | dry-run | failed | skipped
    before: str | None = None
    after: str | None = None
    elapsed: float = 0.0
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome in ("installed", "unchanged", "dry-run")


@dataclass(frozen=True)
class Decision:
    action: str                    # install | noop | refuse
    reason: str
    downgrade: bool = False
    reinstall: bool = False


def decide(pkg: PackageInfo, installed: facts.Installed | None, stored_sha: str | None, force: bool) -> Decision:
    """What to do on a host, from its facts alone."""
    if installed is None:
        return Decision("install", f"install {pkg.version} (not installed)")
    order = compare(pkg.version, installed.version)
    if order == 0 and installed.ok:
        if stored_sha == pkg.sha256:
            return Decision("noop", f"already at {pkg.version}")
        if not force:
            return Decision("refuse", f"{installed.version} is installed with other contents than this "
                                      f"package; bump the version, or pass --force to reinstall")
        return Decision("install", f"reinstall {pkg.version} (--force)", reinstall=True)
    if order == 0:
        return Decision("install", f"finish {pkg.version} (dpkg status {installed.status})", reinstall=True)
    verb = "upgrade" if order > 0 else "downgrade"
    return Decision("install", f"{verb} {installed.version} -> {pkg.version}", downgrade=order < 0)


def store_dir(name: str) -> str:
    return f"/var/lib/debship/{name}"


class _Step(Exception):
    """A step failed; the host's outcome is failed with this message."""


class HostShip:
    """The steps for one host, in order; each emits its events."""

    def __init__(self, pkg: PackageInfo, spec: HostSpec, opts: ShipOptions, emit: Callable[[Event], None]):
        self.pkg, self.spec, self.opts, self._emit = pkg, spec, opts, emit
        self.host = str(spec)
        self.conn: Connection | None = None
        self.t0 = time.monotonic()
        self.before: str | None = None
        self.stored = f"{store_dir(pkg.name)}/{deb_filename(pkg.name, pkg.version, pkg.architecture)}"

    def emit(self, step: str, status: str, detail: str = "") -> None:
        self._emit(Event(self.host, step, status, round(time.monotonic() - self.t0, 3), detail))

    def run(self) -> HostResult:
        try:
            return self._run()
        except (_Step, DebshipError) as e:
            return self.result("failed", after=self._installed_version(), detail=str(e))
        finally:
            if self.conn is not None:
                self.conn.close()

    def result(self, outcome: str, after: str | None = None, detail: str = "") -> HostResult:
        return HostResult(self.host, outcome, self.before, after, round(time.monotonic() - self.t0, 3), detail)

    def _run(self) -> HostResult:
        self.step("connect", self.connect)
        self.step("boot", self.wait_for_boot)
        decision = self.step("decide", self.decide)
        if decision.action == "noop":
            return self.result("unchanged", after=self.before, detail=decision.reason)
        if self.opts.dry_run:
            self.emit("install", "skip", f"dry run: would {decision.reason}")
            return self.result("dry-run", after=self.before, detail=f"would {decision.reason}")
        self.step("upload", self.upload)
        self.step("install", lambda: self.install(decision))
        self.verify_all()
        self.step("record", lambda: self.record(decision))
        if self.opts.reboot:
            self.step("reboot", self.reboot)
            self.verify_all()
        return self.result("installed", after=self.pkg.version, detail=decision.reason)

    def step(self, name: str, func):
        """Run one step between a start and an ok/warn/fail event; its detail is its return value."""
        self.emit(name, "start")
        try:
            value = func()
        except (_Step, DebshipError) as e:
            self.emit(name, "fail", str(e))
            raise
        status, detail = value if isinstance(value, tuple) and len(value) == 2 and value[0] in ("ok", "warn", "skip") \
            else ("ok", getattr(value, "reason", "") if value is not None else "")
        self.emit(name, status, detail)
        return value

    def verify_all(self) -> None:
        self.step("verify", self.verify_units)
        self.step("health", self.check_health)

    # --- the steps -------------------------------------------------------------------------
    def connect(self):
        self.conn = connect(self.spec, self.opts.connect)
        return ("ok", f"as {self.conn.user}")

    def wait_for_boot(self):
        if self.sh(facts.HAS_CLOUD_INIT).ok:
            r = self.sh(facts.cloud_init_command(self.opts.boot_timeout), timeout=self.opts.boot_timeout + 30)
            boot = facts.parse_cloud_init(r.exit_code, r.stdout + r.stderr)
        else:
            r = self.sh(facts.system_running_command(self.opts.boot_timeout), timeout=self.opts.boot_timeout + 30)
            boot = facts.parse_system_running(r.exit_code, r.stdout)
        if boot.state == "timeout":
            raise _Step(f"{boot.detail} after {self.opts.boot_timeout:g} s; raise --boot-timeout or look at the host")
        if boot.state == "fail":
            raise _Step(boot.detail)
        return (boot.state, boot.detail)

    def decide(self) -> Decision:
        installed = self._installed()
        self.before = installed.version if installed else None
        stored = self.sh(["sha256sum", "--", self.stored])
        decision = decide(self.pkg, installed, stored.stdout.split()[0] if stored.ok else None, self.opts.force)
        if decision.action == "refuse":
            raise _Step(decision.reason)
        return decision

    def upload(self):
        if self.sh(["sha256sum", "--", self.stored]).stdout.split()[:1] == [self.pkg.sha256]:
            return ("ok", f"already in {store_dir(self.pkg.name)}")
        staging = self.sh(["mktemp", "-d", "/var/tmp/debship.XXXXXXXX"], check=True).stdout.strip()
        try:
            remote = f"{staging}/{self.pkg.filename}"
            self.conn.put(self.pkg.path, remote)
            got = self.conn.sha256(remote)
            if got != self.pkg.sha256:
                raise _Step(f"upload damaged: sha256 on the host is {got}, expected {self.pkg.sha256}; ship again")
            self.sh(["sh", "-c", 'install -d -m 0755 "$1" && install -o root -g root -m 0644 "$2" "$3"',
                     "sh", store_dir(self.pkg.name), remote, self.stored], sudo=True, check=True)
        finally:
            self.sh(["rm", "-rf", "--", staging])
        return ("ok", f"{self.pkg.size} bytes, sha256 checked, kept as {self.stored}")

    def install(self, decision: Decision):
        argv = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q",
                "--no-install-recommends", "-o", f"DPkg::Lock::Timeout={self.opts.lock_timeout}",
                "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"]
        argv += ["--allow-downgrades"] if decision.downgrade else []
        argv += ["--reinstall"] if decision.reinstall else []
        r = self.sh([*argv, self.stored], sudo=True, timeout=self.opts.lock_timeout + 900)
        if not r.ok:
            raise _Step(self._install_failure(r.stdout + r.stderr))
        installed = self._installed()
        if installed is None or not installed.ok or installed.version != self.pkg.version:
            raise _Step(f"apt finished but dpkg reports {installed}; see /var/log/{self.pkg.name}/deploy.log")
        return ("ok", decision.reason)

    def _install_failure(self, output: str) -> str:
        if "Could not get lock" in output or "Unable to acquire the dpkg frontend lock" in output:
            return (f"dpkg is locked by another process for more than {self.opts.lock_timeout} s "
                    "(unattended-upgrades?); raise --lock-timeout or try again later")
        log = f"/var/log/{self.pkg.name}/deploy.log"
        tail = self.sh(["tail", "-n", "5", log], sudo=True).stdout.strip().splitlines()
        last = next((l.strip() for l in reversed(output.splitlines()) if l.startswith(("E:", "dpkg:"))), "")
        return f"apt-get install failed ({last or 'see output'}); deploy log {log}: " + " | ".join(tail)

    def verify_units(self):
        wanted = [u["name"] for u in self.pkg.units if u.get("start") and u.get("enable")]
        if not wanted:
            return ("ok", "no units to check")
        if not self.sh(facts.SYSTEMD_RUNNING).ok:
            links = facts.parse_enable_links(self.sh(facts.enable_links_command(wanted)).stdout)
            missing = [u for u in wanted if u not in links]
            if missing:
                raise _Step(f"not enabled: {', '.join(missing)} (no enable symlink under /etc/systemd/system)")
            return ("warn", "systemd is not running on the host: services not started; checked enable links only")
        return self._check_active(wanted)

    def _check_active(self, units: list[str]):
        deadline = time.monotonic() + self.opts.start_timeout
        while True:
            state = facts.parse_unit_state(self.sh(facts.unit_state_command(units), check=True).stdout)
            skipped = [u for u in units if state.get(u, {}).get("UnitFileState") in ("masked", "disabled")]
            pending = [u for u in units if u not in skipped and state.get(u, {}).get("ActiveState") != "active"]
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(1)
        if pending:
            shown = ", ".join(f"{u} {state.get(u, {}).get('ActiveState', '?')}" for u in pending)
            raise _Step(f"not active: {shown}; see journalctl -u {pending[0]}")
        time.sleep(self.opts.settle)
        again = facts.parse_unit_state(self.sh(facts.unit_state_command(units), check=True).stdout)
        climbing = [u for u in units if again.get(u, {}).get("NRestarts", "0") != state.get(u, {}).get("NRestarts", "0")]
        if climbing:
            raise _Step(f"restarting: {', '.join(climbing)}; see journalctl -u {climbing[0]}")
        note = f"; left alone (disabled by the admin): {', '.join(skipped)}" if skipped else ""
        return ("warn" if skipped else "ok", f"active: {', '.join(u for u in units if u not in skipped)}{note}")

    def check_health(self):
        if not self.pkg.health:
            return ("skip", "no health command configured")
        if not self.sh(facts.SYSTEMD_RUNNING).ok:
            return ("skip", "systemd is not running on the host: services were not started")
        deadline = time.monotonic() + self.opts.start_timeout
        while True:
            r = self.sh(["env", f"DEBSHIP_VERSION={self.pkg.version}", f"DEBSHIP_PACKAGE={self.pkg.name}",
                         "sh", "-c", self.pkg.health], timeout=self.opts.start_timeout)
            if r.ok or time.monotonic() > deadline:
                break
            time.sleep(1)
        out = " ".join((r.stdout.strip() or r.stderr.strip()).split())[:300]
        if not r.ok:
            raise _Step(f"health command failed (exit {r.exit_code}): {out}")
        return ("ok", out)

    def record(self, decision: Decision):
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        line = (f"{stamp} ship: {decision.reason}; package {self.pkg.filename} sha256 {self.pkg.sha256}; "
                f"by {self.conn.user} via debship\n")
        log_dir = f"/var/log/{self.pkg.name}"
        self.sh(["sh", "-c", 'install -d -m 0755 "$1" && cat >> "$1/deploy.log"', "sh", log_dir],
                sudo=True, stdin=line.encode(), check=True)
        return ("ok", f"{log_dir}/deploy.log")

    def reboot(self):
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
            except RemoteError:
                continue
        raise _Step("the host did not come back after reboot; check its console")

    # --- helpers ---------------------------------------------------------------------------
    def sh(self, argv: Sequence[str], *, sudo: bool = False, check: bool = False, timeout: float = 120.0,
           stdin: bytes | None = None):
        r = self.conn.run(list(argv), sudo=sudo, timeout=timeout, stdin=stdin)
        if check and not r.ok:
            raise _Step(f"`{shlex.join(argv)}` failed (exit {r.exit_code}): {r.stderr.strip() or r.stdout.strip()}")
        return r

    def _installed(self) -> facts.Installed | None:
        r = self.sh(facts.installed_command(self.pkg.name))
        return facts.parse_installed(r.exit_code, r.stdout)

    def _installed_version(self) -> str | None:
        try:
            fact = self._installed() if self.conn is not None else None
        except DebshipError:
            return None
        return fact.version if fact else None


def parse_hosts(hosts: Sequence[str], hosts_file: Path | None) -> list[HostSpec]:
    """Hosts from --host and --hosts-file (one per line, # comments), in order, without repeats."""
    texts = list(hosts)
    if hosts_file is not None:
        try:
            lines = Path(hosts_file).read_text().splitlines()
        except OSError as e:
            raise ShipError(f"{hosts_file}: cannot read the hosts file ({e.strerror})") from e
        texts += [l.split("#", 1)[0].strip() for l in lines]
    specs = [HostSpec.parse(t) for t in dict.fromkeys(t for t in texts if t)]
    if not specs:
        raise ShipError("no hosts given; pass --host HOST (repeatable) or --hosts-file FILE")
    return specs


def newest_deb(dist: Path) -> Path:
    """The most recently built .deb in ``dist`` (what `build-deb` just wrote)."""
    debs = sorted(Path(dist).glob("*.deb"), key=lambda p: (p.stat().st_mtime, p.name))
    if not debs:
        raise ShipError(f"{dist}: no .deb to ship; run build-deb first or pass the .deb's path")
    return debs[-1]


def ship(pkg: PackageInfo, hosts: Sequence[HostSpec], opts: ShipOptions, emit: Callable[[Event], None],
         parallel: int = 4, batch: int = 0, max_failures: int = 0) -> list[HostResult]:
    """Ship ``pkg`` to ``hosts``: ``parallel`` at a time, in batches of ``batch`` (0 = all at once),
    stopping before the next batch once ``max_failures`` hosts failed (0 = never stop)."""
    if not hosts:
        raise ShipError("no hosts given; pass --host HOST or --hosts-file FILE")
    lock = threading.Lock()

    def safe_emit(event: Event) -> None:
        with lock:
            emit(event)

    results: list[HostResult] = []
    size = batch or len(hosts)
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        for start in range(0, len(hosts), size):
            failed = sum(not r.ok for r in results)
            if max_failures and failed >= max_failures:
                reason = f"not shipped: {failed} host(s) failed (--max-failures {max_failures})"
                results += [HostResult(str(h), "skipped", detail=reason) for h in hosts[start:]]
                break
            group = hosts[start:start + size]
            results += list(pool.map(lambda h: HostShip(pkg, h, opts, safe_emit).run(), group))
    return results
