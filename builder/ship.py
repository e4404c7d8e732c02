"""``ship``: take one .deb to many hosts, each step reported as an event.

For each host: connect (waiting while it boots), wait for cloud-init, upload
to a staging folder and check the checksum, keep the package in its root-owned
store, decide from facts, install with apt, verify the services, record what
was done in the host's deploy log.  Hosts run on a thread pool, in rolling
batches.  Nothing here prints: ``emit(Event)`` is the only output.
"""
from __future__ import annotations

import json
import shlex
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from . import facts, store, verify
from .control import manifest_path
from .debfile import deb_filename
from .debinfo import PackageInfo, read_package
from .errors import DebshipError, RemoteError, ShipError
from .remote import ConnectOptions, Connection, HostSpec, connect
from .version import compare


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
    outcome: str                   # installed | unchanged | dry-run | listed | rolled-back | failed | skipped
    before: str | None = None
    after: str | None = None
    elapsed: float = 0.0
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome in ("installed", "unchanged", "dry-run", "listed")


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


class HostShip:
    """The steps for one host, in order; each emits its events."""

    def __init__(self, pkg: PackageInfo, spec: HostSpec, opts: ShipOptions, emit: Callable[[Event], None]):
        self.pkg, self.spec, self.opts, self._emit = pkg, spec, opts, emit
        self.name = pkg.name
        self.host = str(spec)
        self.conn: Connection | None = None
        self.t0 = time.monotonic()
        self.before: str | None = None
        self.decision: Decision | None = None
        self.stored = f"{store.store_dir(pkg.name)}/{deb_filename(pkg.name, pkg.version, pkg.architecture)}"

    def emit(self, step: str, status: str, detail: str = "") -> None:
        self._emit(Event(self.host, step, status, round(time.monotonic() - self.t0, 3), detail))

    def run(self, mode: Callable[[], HostResult] | None = None) -> HostResult:
        try:
            return (mode or self.ship)()
        except DebshipError as e:
            return self.result("failed", after=self._installed_version(), detail=str(e))
        except Exception as e:  # a bug must not take the other hosts down with a traceback
            return self.result("failed", detail=f"internal error in debship ({type(e).__name__}: {e}); "
                                                "please report it with this line")
        finally:
            if self.conn is not None:
                self.conn.close()

    def result(self, outcome: str, after: str | None = None, detail: str = "") -> HostResult:
        return HostResult(self.host, outcome, self.before, after, round(time.monotonic() - self.t0, 3), detail)

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

    # --- the modes -------------------------------------------------------------------------
    def ship(self) -> HostResult:
        self.step("connect", self.connect)
        self.step("boot", self.wait_for_boot)
        self.step("decide", self.decide)
        if self.decision.action == "noop":
            if self.opts.reboot and not self.opts.dry_run:  # asked for: prove the services come back
                self.reboot_and_verify()
            return self.result("unchanged", after=self.before, detail=self.decision.reason)
        if self.opts.dry_run:
            self.emit("install", "skip", f"dry run: would {self.decision.reason}")
            return self.result("dry-run", after=self.before, detail=f"would {self.decision.reason}")
        self.step("upload", self.upload)
        self.step("store", self.refresh_store)  # the index must describe the file apt is given
        try:
            self.step("install", lambda: self.install(self.stored, self.decision))
            self.verify_all(self.pkg.version)
        except DebshipError as e:
            if not self.opts.rollback_on_failure:
                raise
            return self.recover(e)
        self.step("record", lambda: self.record("ship", self.decision.reason))
        if self.opts.reboot:
            self.reboot_and_verify()
        return self.result("installed", after=self.pkg.version, detail=self.decision.reason)

    def reboot_and_verify(self) -> None:
        self.step("reboot", self.reboot)
        self.verify_all(self._installed_version() or self.pkg.version, after_boot=True)

    def rollback_to(self, target: str | None) -> HostResult:
        """``--rollback`` (target None: the version before the installed one) or ``--to-version``."""
        self.step("connect", self.connect)
        self.step("boot", self.wait_for_boot)
        installed = self._installed()
        self.before = installed.version if installed else None
        status, version = self.step("decide", lambda: self._choose(target))
        if status == "skip":
            return self.result("unchanged", after=self.before, detail=f"already at {version}")
        if self.opts.dry_run:
            return self.result("dry-run", after=self.before, detail=f"would install {version}")
        self.step("store", self.refresh_store)
        self.step("install", lambda: self.install(f"{self.name}={version}", Decision(
            "install", f"{self.before} -> {version}", downgrade=True)))
        self.verify_all(version)
        self.step("record", lambda: self.record("rollback", f"rollback {self.before} -> {version}"))
        return self.result("installed", after=version, detail=f"rolled back {self.before} -> {version}")

    def list_kept(self) -> HostResult:
        self.step("connect", self.connect)
        installed = self._installed()
        self.before = installed.version if installed else None
        kept = [k.version or f"{k.filename} (unreadable)" for k in self._kept()]
        return self.result("listed", after=self.before, detail="kept: " + (", ".join(kept) or "none"))

    def recover(self, error: Exception) -> HostResult:
        """Install or verify failed: back to the version the host had, or remove a first install."""
        reason = str(error)
        tail = self._log_tail()
        if self.decision.reinstall:
            return self.result("failed", after=self._installed_version(),
                               detail=f"{reason}; a reinstall of the same version cannot be rolled back{tail}")
        current = self._installed()
        if current is None and self.before is None:
            return self.result("failed", after=None, detail=f"{reason}; nothing was installed")
        if current is not None and current.ok and current.version == self.before:
            return self.result("failed", after=self.before, detail=f"{reason}; the host still has {self.before}")
        try:
            if self.before is None:
                self.step("rollback", lambda: self._remove())
                return self.result("failed", after=None, detail=f"{reason}; removed the package (the host had "
                                                               f"no earlier version){tail}")
            if self.before not in {k.version for k in self._kept()}:
                raise ShipError(f"cannot roll back: {self.before} is not kept in {store.store_dir(self.name)}")
            self.step("store", self.refresh_store)
            self.step("rollback", lambda: self.install(f"{self.name}={self.before}", Decision(
                "install", f"roll back to {self.before}", downgrade=True)))
            self.verify_all(self.before)
            self.step("record", lambda: self.record("rollback", f"rolled back to {self.before}: {reason}"))
        except DebshipError as e:
            return self.result("failed", after=self._installed_version(), detail=f"{reason}; then {e}")
        return self.result("rolled-back", after=self.before, detail=f"rolled back to {self.before}: {reason}{tail}")

    def verify_all(self, version: str, after_boot: bool = False) -> None:
        manifest, o = self._installed_manifest(), self.opts
        self.step("verify", lambda: verify.units(self.sh, manifest, o.start_timeout, o.settle, after_boot))
        self.step("health", lambda: verify.health(self.sh, manifest, self.name, version, o.start_timeout))

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
            raise ShipError(f"{boot.detail} after {self.opts.boot_timeout:g} s; raise --boot-timeout or look at the host")
        if boot.state == "fail":
            raise ShipError(boot.detail)
        return (boot.state, boot.detail)

    def decide(self):
        installed = self._installed()
        self.before = installed.version if installed else None
        stored = self.sh(["sha256sum", "--", self.stored])
        self.decision = decide(self.pkg, installed, stored.stdout.split()[0] if stored.ok else None, self.opts.force)
        if self.decision.action == "refuse":
            raise ShipError(self.decision.reason)
        return ("ok", self.decision.reason)

    def _choose(self, target: str | None):
        kept = self._kept()
        versions = [k.version for k in kept if k.version]
        if target is None:
            history = self.sh(["cat", store.history_path(self.name)]).stdout
            target = store.previous_version(history, self.before, kept)
            if target is None:
                raise ShipError(f"nothing to roll back to: installed {self.before or 'nothing'}, "
                            f"kept {', '.join(versions) or 'none'}")
        elif target not in versions:
            raise ShipError(f"version {target} is not kept on the host (kept: {', '.join(versions) or 'none'}); "
                        "ship it first")
        if target == self.before:
            return ("skip", target)
        return ("ok", target)

    def upload(self):
        if self.sh(["sha256sum", "--", self.stored]).stdout.split()[:1] == [self.pkg.sha256]:
            return ("ok", f"already in {store.store_dir(self.name)}")
        staging = self.sh(["mktemp", "-d", "/var/tmp/debship.XXXXXXXX"], check=True).stdout.strip()
        try:
            remote = f"{staging}/{self.pkg.filename}"
            self.conn.put(self.pkg.path, remote)
            got = self.conn.sha256(remote)
            if got != self.pkg.sha256:
                raise ShipError(f"upload damaged: sha256 on the host is {got}, expected {self.pkg.sha256}; ship again")
            self.sh(["sh", "-c", 'install -d -m 0755 "$1" && install -o root -g root -m 0644 "$2" "$3"',
                     "sh", store.store_dir(self.name), remote, self.stored], sudo=True, check=True)
        finally:
            self.sh(["rm", "-rf", "--", staging])
        return ("ok", f"{self.pkg.size} bytes, sha256 checked, kept as {self.stored}")

    def install(self, target: str, decision: Decision):
        """apt-get install a stored file path or ``name=version`` from the host's repository."""
        argv = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-q",
                "--no-install-recommends", "-o", f"DPkg::Lock::Timeout={self.opts.lock_timeout}",
                "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"]
        argv += ["--allow-downgrades"] if decision.downgrade else []
        argv += ["--reinstall"] if decision.reinstall else []
        r = self.sh([*argv, target], sudo=True, timeout=self.opts.lock_timeout + 900)
        if not r.ok:
            raise ShipError(self._install_failure(r.stdout + r.stderr))
        installed = self._installed()
        want = target.split("=", 1)[1] if "=" in target else self.pkg.version
        if installed is None or not installed.ok or installed.version != want:
            raise ShipError(f"apt finished but dpkg reports {installed}; see /var/log/{self.name}/deploy.log")
        return ("ok", decision.reason)

    def _install_failure(self, output: str) -> str:
        if "Could not get lock" in output or "Unable to acquire the dpkg frontend lock" in output:
            return (f"dpkg is locked by another process for more than {self.opts.lock_timeout} s "
                    "(unattended-upgrades?); raise --lock-timeout or try again later")
        last = next((l.strip() for l in reversed(output.splitlines()) if l.startswith(("E:", "dpkg:"))), "")
        return f"apt-get install failed ({last or 'see the deploy log'})"

    def _remove(self):
        r = self.sh(["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "remove", "-y", "-q",
                     "-o", f"DPkg::Lock::Timeout={self.opts.lock_timeout}", self.name], sudo=True, timeout=900)
        if not r.ok:
            raise ShipError(f"could not remove {self.name} either: {r.stderr.strip()[-300:]}")
        return ("ok", f"removed {self.name}; its deploy log stays in /var/log/{self.name}/")

    def record(self, action: str, what: str):
        """Append to the deploy log (for people) and the ship history (for --rollback)."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        installed = self._installed_version() or "nothing"
        line = f"{stamp} ship: {what}; now {installed}; by {self.conn.user} via debship\n"
        log_dir = f"/var/log/{self.name}"
        self.sh(["sh", "-c", 'install -d -m 0755 "$1" && cat >> "$1/deploy.log"', "sh", log_dir],
                sudo=True, stdin=line.encode(), check=True)
        self.sh(["sh", "-c", 'install -d -m 0755 "${1%/*}" && cat >> "$1"', "sh", store.history_path(self.name)],
                sudo=True, stdin=store.history_line(stamp, action, installed).encode(), check=True)
        return ("ok", f"{log_dir}/deploy.log")

    def refresh_store(self):
        """Prune to the newest N plus the installed version, then rebuild the index from the files."""
        keep = int(self._installed_manifest().get("keep_versions", self.pkg.keep_versions))
        pruned = store.to_prune(self._kept(), keep, self._installed_version())
        if pruned:
            self.sh(store.prune_command(self.name, pruned), sudo=True, check=True)
        self.sh(store.index_command(self.name), sudo=True, check=True, timeout=300)
        kept = [k.version for k in self._kept()]
        return ("ok", f"kept {', '.join(kept)}" + (f"; pruned {', '.join(pruned)}" if pruned else ""))

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
            except DebshipError:
                continue
        raise ShipError("the host did not come back after reboot; check its console")

    # --- helpers ---------------------------------------------------------------------------
    def sh(self, argv: Sequence[str], *, sudo: bool = False, check: bool = False, timeout: float = 120.0,
           stdin: bytes | None = None):
        r = self.conn.run(list(argv), sudo=sudo, timeout=timeout, stdin=stdin)
        if check and not r.ok:
            raise ShipError(f"`{shlex.join(argv)}` failed (exit {r.exit_code}): {r.stderr.strip() or r.stdout.strip()}")
        return r

    def _installed(self) -> facts.Installed | None:
        r = self.sh(facts.installed_command(self.name))
        return facts.parse_installed(r.exit_code, r.stdout)

    def _installed_version(self) -> str | None:
        try:
            fact = self._installed() if self.conn is not None else None
        except DebshipError:
            return None
        return fact.version if fact else None

    def _installed_manifest(self) -> dict:
        """The manifest of the version now installed (after a rollback: the older one's)."""
        r = self.sh(["cat", manifest_path(self.name)])
        try:
            return json.loads(r.stdout) if r.ok else dict(self.pkg.manifest)
        except ValueError:
            return dict(self.pkg.manifest)

    def _kept(self) -> list[store.Kept]:
        return store.parse_list(self.sh(store.list_command(self.name)).stdout)

    def _log_tail(self) -> str:
        r = self.sh(["tail", "-n", "5", f"/var/log/{self.name}/deploy.log"], sudo=True)
        lines = [l.strip() for l in r.stdout.splitlines() if l.strip()] if r.ok else []
        return f"; deploy log: {' | '.join(lines)}" if lines else ""


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


def package_for(mode: str, deb: Path | None, name: str | None, project: Path) -> PackageInfo:
    """The package to ship, or (for --rollback, --to-version, --list) just its name."""
    if mode != "ship" and name:
        return PackageInfo(path=Path(), name=name, version="", architecture="all", sha256="", size=0)
    return read_package(deb if deb is not None else newest_deb(Path(project) / "dist"))


def ship(pkg: PackageInfo, hosts: Sequence[HostSpec], opts: ShipOptions, emit: Callable[[Event], None],
         parallel: int = 4, batch: int = 0, max_failures: int = 0, mode: str = "ship",
         to_version: str | None = None) -> list[HostResult]:
    """Ship ``pkg`` to ``hosts``: ``parallel`` at a time, in batches of ``batch`` (0 = all at once),
    stopping before the next batch once ``max_failures`` hosts failed (0 = never stop).

    ``mode`` "rollback" installs ``to_version`` (default: the version before the installed one)
    from each host's store; "list" reports the installed and kept versions."""
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
            results += list(pool.map(lambda h: _run_mode(HostShip(pkg, h, opts, safe_emit), mode, to_version),
                                     group))
    return results


def _run_mode(host: HostShip, mode: str, to_version: str | None) -> HostResult:
    modes = {"ship": host.ship, "rollback": lambda: host.rollback_to(to_version), "list": host.list_kept}
    return host.run(modes[mode])


def exit_code(results: Sequence[HostResult]) -> int:
    """0 all hosts fine; 3 every failed host was rolled back to its previous version; 1 otherwise."""
    bad = [r for r in results if not r.ok]
    if not bad:
        return 0
    return 3 if all(r.outcome == "rolled-back" for r in bad) else 1
