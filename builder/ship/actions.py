"""The executor's actions: how each ``plan.Step`` op is carried out on a host (and how to wait
for boot, take the host lock, repair an interrupted dpkg).

Each action takes ``run``, a narrow ``Context`` (the connection, the package, the options and the
facts read so far: a frozen snapshot the executor makes for the step, not the executor itself)
and returns a ``Done``: the status and detail of its event plus what it learnt (new facts, the
held lock, the kept upload, the package's name) for the executor to keep; or it raises
``ShipError``.  Only the executor changes its own state.  What to run is ``commands``', what the host is ``facts``'.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shlex
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

from .. import hostguard, pkgsig
from ..debinfo import PackageInfo, name_only
from ..errors import DebshipError, RemoteError, ShipError
from ..layout import DEBSHIP_STATE, Layout
from ..manifest import Manifest
from . import commands, deps, facts, pin, plan, store, verify
from .connection import Connection, Held, Result
from .facts import HostFacts
from .options import ShipOptions
from .plan import Step


@dataclass(frozen=True)
class Context:
    """What an action sees of one host's run (frozen: an action cannot change the run)."""

    conn: Connection
    pkg: PackageInfo
    opts: ShipOptions
    emit: Callable[..., None]  # emit(step, status, detail): a warning while the step runs
    facts: HostFacts | None = None  # the newest facts read
    first_facts: HostFacts | None = None  # the facts the plan was made from
    uploaded: store.Kept | None = None  # what this run put in the store

    @property
    def layout(self) -> Layout:
        return Layout(self.pkg.name)

    def sh(
        self,
        argv: Sequence[str],
        *,
        sudo: bool = False,
        check: bool = False,
        timeout: float = 120.0,
        stdin: bytes | None = None,
    ) -> Result:
        r = self.conn.run(list(argv), sudo=sudo, timeout=timeout, stdin=stdin)
        if check and not r.ok:
            raise ShipError(f"`{shlex.join(argv)}` failed (exit {r.exit_code}): {r.stderr.strip() or r.stdout.strip()}")
        return r


@dataclass(frozen=True)
class Done:
    """An action's result: its event, and what the executor keeps from it."""

    status: str
    detail: str
    facts: HostFacts | None = None  # read after the action changed the host
    held: Held | None = None  # the host lock, held until the run ends
    uploaded: store.Kept | None = None
    pkg: PackageInfo | None = None  # the package the host says it manages


def read_facts(run: Context, sudo: bool = True) -> facts.HostFacts:
    """Everything the plan needs, in one round trip (with sudo: conffiles may be 0600)."""
    stored = plan.stored_path(run.pkg) if run.pkg.version else ""
    units = [u.name for u in run.pkg.manifest.units]
    r = run.sh(facts.host_facts_command(run.layout, stored, units), sudo=sudo, check=True)
    return facts.parse_host_facts(r.stdout)


def installed_version(run: Context) -> str | None:
    try:
        r = run.sh(facts.installed_command(run.pkg.name))
    except DebshipError:
        return None
    fact = facts.parse_installed(r.exit_code, r.stdout)
    return fact.version if fact else None


def installed_manifest(run: Context, now: facts.HostFacts | None = None) -> Manifest:
    """The manifest of the version now installed (after a rollback: the older one's)."""
    now = now or run.facts
    if now is not None and now.manifest.strip():
        parsed = Manifest.from_json(now.manifest, run.pkg.name)
        if parsed.name:
            return parsed
    return run.pkg.manifest


def wait_for_boot(run: Context) -> Done:
    timeout = run.opts.boot_timeout
    r = run.sh(facts.boot_command(timeout), timeout=timeout + 30)
    boot = facts.parse_boot(r.exit_code, r.stdout, r.stderr)
    if boot.state == "timeout":
        raise ShipError(f"{boot.detail} after {timeout:g} s; raise --boot-timeout or look at the host")
    if boot.state == "fail":
        raise ShipError(boot.detail)
    return Done(boot.state, boot.detail)


def find_package(run: Context) -> Done:
    """No package named: the host's debship state says which package it manages."""
    if run.pkg.name:
        return Done("skip", f"package {run.pkg.name}")
    r = run.sh(facts.managed_command())
    names = facts.parse_managed(r.stdout)
    if len(names) != 1:
        listed = f"it manages {', '.join(names)}" if names else "it manages no debship package"
        raise ShipError(f"cannot tell which package: {listed} ({DEBSHIP_STATE}); pass --package NAME")
    return Done("ok", f"package {names[0]} (the one debship package on the host)", pkg=name_only(names[0]))


def take_lock(run: Context) -> Done:
    """Take the host's ship lock for this package (held until the connection closes); a ship
    already holding it is waited for, up to --lock-timeout, and named."""
    lay, wait = run.layout, run.opts.lock_timeout
    who = (
        f"{getpass.getuser()}@{socket.gethostname()} pid {os.getpid()} since "
        f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, shipping {run.pkg.name} {run.pkg.version}"
    )
    busy: list[str] = []

    def waiting(line: str) -> None:
        if line.startswith("BUSY "):
            busy.append(line[5:])
            run.emit("lock", "warn", f"waiting up to {wait} s for the ship lock, held by {line[5:]}")

    got = run.conn.hold(
        commands.host_lock(lay.lock, lay.lock_holder, who.strip(), wait, lay.store, lay.log_dir),
        sudo=True,
        until=commands.LOCKED,
        timeout=wait + 60,
        on_line=waiting,
    )
    if isinstance(got, Result):
        if got.exit_code == hostguard.UNSAFE:
            raise ShipError(hostguard.unsafe_message(got.stdout) or f"unsafe path on the host: {got.stdout.strip()}")
        if got.exit_code == commands.LOCK_TIMED_OUT:
            raise ShipError(
                f"another ship holds this host's lock ({busy[0] if busy else lay.lock}) for more "
                f"than {wait} s; wait for it to finish or raise --lock-timeout"
            )
        raise ShipError(
            f"cannot take the ship lock {lay.lock} (exit {got.exit_code}): {(got.stderr or got.stdout).strip()[-200:]}"
        )
    return Done("ok", f"{lay.lock}" + (f" (waited for {busy[0]})" if busy else ""), held=got)


def repair(run: Context, now: facts.HostFacts) -> facts.HostFacts:
    """dpkg was interrupted (a killed apt, a power cut): finish configuring what it left,
    waiting for the lock like apt does, before deciding anything."""
    what = now.audit.splitlines()[0] if now.audit else f"{run.pkg.name} is {now.installed.status.strip()}"
    run.emit("repair", "warn", f"dpkg was interrupted ({what}); running dpkg --configure -a")
    r = run.sh(commands.configure_pending(run.opts.lock_timeout), sudo=True, timeout=run.opts.lock_timeout + 900)
    after = read_facts(run)
    if not r.ok:
        run.emit("repair", "warn", f"dpkg --configure -a failed: {last_line(r.stdout + r.stderr)}")
    return after


def last_line(output: str) -> str:
    return next(
        (l.strip() for l in reversed(output.splitlines()) if l.startswith(("E:", "dpkg:"))),
        " ".join(output.split())[-200:] or "no output",
    )


def upload(run: Context, _step: Step) -> Done:
    stored = plan.stored_path(run.pkg)
    sig = pkgsig.sig_path(run.pkg.path)
    signed = sig.is_file()
    if run.facts and run.facts.stored_sha == run.pkg.sha256 and not signed:
        return Done("ok", f"already in {run.layout.store}" + check_signature(run, stored))
    r = run.sh(commands.stage(run.pkg.name, run.conn.user), sudo=True, check=True)
    staging = r.stdout.strip()
    remote = f"{staging}/{run.pkg.filename}"
    remote_sig = f"{remote}{pkgsig.SIG_SUFFIX}" if signed else ""
    try:
        shown = run.opts.progress
        run.conn.put(
            run.pkg.path, remote, progress=(lambda sent, total: shown(run.conn.name, sent, total)) if shown else None
        )
        if signed:
            run.conn.put(sig, remote_sig)
    except DebshipError:
        with contextlib.suppress(DebshipError):  # a dropped connection: the next ship removes it
            run.sh(commands.remove_dir(staging))
        raise
    r = run.sh(commands.check_and_keep(staging, remote, stored, run.pkg.sha256, run.conn.user, remote_sig), sudo=True)
    if r.exit_code == hostguard.UNSAFE:
        raise ShipError(hostguard.unsafe_message(r.stdout) or f"unsafe path on the host: {r.stdout.strip()}")
    if r.exit_code == pkgsig.REFUSED:
        raise ShipError(pkgsig.verdict(r.exit_code, r.stdout, f"{run.pkg.name} {run.pkg.version}").detail)
    if r.exit_code == commands.DAMAGED:
        raise ShipError(
            f"upload damaged: sha256 on the host is {r.stdout.strip()}, expected {run.pkg.sha256}; ship again"
        )
    if not r.ok:
        raise ShipError(f"cannot keep the upload in {run.layout.store}: {(r.stderr or r.stdout).strip()[-200:]}")
    checked = _signature_note(pkgsig.verdict(r.exit_code, r.stdout, run.pkg.name))
    kept = store.Kept(stored.rsplit("/", 1)[1], run.pkg.version)
    return Done("ok", f"{run.pkg.size} bytes, sha256 checked, kept as {stored}{checked}", uploaded=kept)


def _signature_note(v: pkgsig.Verdict) -> str:
    return f"; signature {v.detail}" if v.ok and not v.detail.startswith("not checked") else ""


def check_signature(run: Context, stored: str) -> str:
    """A package already kept (not uploaded again) against its signature and the host's
    trusted keys; a refused package is removed from the store before anything installs it."""
    r = run.sh(pkgsig.verify_command(stored, stored + pkgsig.SIG_SUFFIX), sudo=True, timeout=300)
    v = pkgsig.verdict(r.exit_code, r.stdout, f"{run.pkg.name} {run.pkg.version}")
    if not v.ok:
        run.sh(["rm", "-f", "--", stored, stored + pkgsig.SIG_SUFFIX], sudo=True)
        raise ShipError(v.detail)
    return _signature_note(v)


def check_repo_signature(run: Context, version: str) -> str:
    """--via-repo: the package apt is about to install, against the signature published beside it."""
    r = run.sh(pkgsig.verify_repo_command(run.pkg.name, version), sudo=True, timeout=run.opts.lock_timeout + 300)
    v = pkgsig.verdict(r.exit_code, r.stdout, f"{run.pkg.name} {version} from {run.opts.via_repo.url}")
    if not v.ok:
        raise ShipError(v.detail)
    return _signature_note(v)


def trust_key(run: Context) -> Done:
    """--trust-key: from now on this host installs only packages signed by the keys it holds."""
    key = run.opts.trust_key
    r = run.sh(pkgsig.trust_command(key), sudo=True, stdin=key.data)
    if r.exit_code == hostguard.UNSAFE:
        raise ShipError(hostguard.unsafe_message(r.stdout) or r.stdout.strip())
    if not r.ok:
        raise ShipError(f"cannot install the trusted key in {pkgsig.KEYS_DIR}: {(r.stderr or r.stdout).strip()[-200:]}")
    return Done("ok", f"{pkgsig.KEYS_DIR}/{key.filename}")


def add_source(run: Context, _step: Step) -> Done:
    """Put the repository's key and deb822 source on the host and refresh that source alone."""
    repo, lay = run.opts.via_repo, run.layout
    # What was there before, put back if apt refuses the new key or source (the host keeps
    # the repository it trusted, not a key that verifies nothing).
    before = {path: run.sh(["cat", "--", path], sudo=True) for path in (lay.repo_keyring, lay.repo_source)}
    run.sh(commands.write_file(lay.repo_keyring), sudo=True, stdin=repo.key.encode(), check=True)
    run.sh(commands.write_file(lay.repo_source), sudo=True, stdin=repo.sources.encode(), check=True)

    def put_back() -> None:
        for path, old in before.items():
            if old.ok:
                run.sh(commands.write_file(path), sudo=True, stdin=old.stdout.encode(), check=True)
            else:
                run.sh(["rm", "-f", "--", path], sudo=True, check=True)

    clash = run.sh(["apt-cache", "policy"], sudo=True)  # reads every source: apt refuses clashing Signed-By
    conflict = [l.strip() for l in clash.stderr.splitlines() if "Conflicting values set for option" in l]
    if conflict:
        put_back()
        raise ShipError(
            f"another apt source on the host lists {repo.url} with another key ({conflict[0][3:]}); "
            f"apt reads no source while both exist, so {lay.repo_source} was put back as it was: remove the "
            "other source (or ship without --via-repo)"
        )
    update = commands.apt_update_source(lay.repo_source, deps.lists_prefix(repo.url))
    r = run.sh(update, sudo=True, timeout=run.opts.lock_timeout + 300)
    problems = [" ".join(l.split()) for l in (r.stdout + r.stderr).splitlines() if l.startswith(("E:", "W:", "Err:"))]
    if not r.ok or any(l.startswith(("E:", "Err:")) for l in problems):
        put_back()
        # sqv (Debian 13's apt) refuses a key or a signature by policy: the URL and the key are right
        policy = any("Policy rejected" in l for l in problems)
        raise ShipError(
            f"apt-get update of {repo.url} failed ({' | '.join(problems[:3]) or f'exit {r.exit_code}'}); "
            + (
                "the host's apt refuses the repository's signing key or signature by policy: publish it "
                "again with a key debship publish accepts (ed25519, or RSA of 3072 bits or more)"
                if policy
                else "check the URL, that the host reaches it, and --repo-key"
            )
        )
    now = read_facts(run)
    return Done("ok", f"{lay.repo_source}: {run.pkg.name} {', '.join(now.available) or 'not found'} available", now)


def refresh_store(run: Context, _step: Step) -> Done:
    """Prune to the newest N plus the installed version, then rebuild the index from the files."""
    now = run.facts or read_facts(run)
    kept = list(now.kept)
    if run.uploaded is not None and run.uploaded.filename not in {k.filename for k in kept}:
        kept = store.parse_list("".join(f"{k.filename}\t{k.version}\n" for k in [*kept, run.uploaded]))
    keep = installed_manifest(run, now).keep_versions
    pruned = store.to_prune(kept, keep, now.before)
    if pruned:
        run.sh(store.prune_command(run.layout, pruned), sudo=True, check=True)
    run.sh(store.index_command(run.layout), sudo=True, check=True, timeout=300)
    kept = [k.version for k in kept if k.filename not in pruned]
    return Done("ok", f"kept {', '.join(kept)}" + (f"; pruned {', '.join(pruned)}" if pruned else ""), now)


def simulate(run: Context, s: Step) -> Done:
    """apt's own simulation of the install: what else it installs, upgrades and removes.  A
    dependency no source provides fails here, before anything is installed (after one refresh
    of missing or old package lists); so does an install that would remove other packages,
    unless --allow-removals."""
    name, version = run.pkg.name, s.version
    if run.opts.dry_run:
        sim = _simulate_dry(run, s)
        if sim is None:
            return Done("skip", f"{name} {version} is not on the host yet: apt's simulation needs --via-repo's source")
    else:
        sim = _simulate(run, s.target, s)
    if not sim.ok:
        age = deps.parse_lists_age(run.sh(deps.lists_age_command(_own_repo(run)), sudo=True).stdout)
        stale = age is None or age > run.opts.lists_max_age
        if stale and run.opts.dry_run:
            run.emit("simulate", "warn", f"the host's package lists are {_age(age)}: a ship refreshes them first")
        elif stale:
            run.emit(
                "simulate",
                "warn",
                f"apt cannot resolve {_unmet(sim) or 'the dependencies'} and the host's "
                f"package lists are {_age(age)}: refreshing them (apt-get update) once",
            )
            r = run.sh(deps.UPDATE_ALL, sudo=True, timeout=run.opts.lock_timeout + 600)
            if not r.ok:
                run.emit("simulate", "warn", f"apt-get update failed: {last_line(r.stdout + r.stderr)}")
            sim = _simulate(run, s.target, s)
    if not sim.ok:
        why = _unmet(sim) or f"apt cannot install {name} {version} ({sim.error or 'no reason given'})"
        raise ShipError(f"{why}; nothing installed: add a source that provides it, or change the dependency")
    other = sim.besides(name)
    if other.removes and not run.opts.allow_removals:
        gone = ", ".join(f"{n} {v}" for n, v in other.removes)
        raise ShipError(
            f"installing {name} {version} would remove {gone} (apt's simulation; a Conflicts: or "
            "Breaks:); nothing installed: pass --allow-removals to let it"
        )
    return Done("warn" if other.removes else "ok", f"apt {other.summary()}")


def _simulate(run: Context, target: str, s: Step) -> deps.Simulation:
    r = run.sh(deps.simulate_command(target, s.downgrade, s.reinstall), sudo=True, timeout=300)
    return deps.parse_simulation(r.stdout)


def _simulate_dry(run: Context, s: Step) -> deps.Simulation | None:
    """A dry run keeps nothing: the .deb goes to a temporary folder of the login user, or
    ``name=version`` is simulated when the repository source already lists it."""
    if run.opts.via_repo is not None:
        return _simulate(run, s.target, s) if s.version in (run.facts.available if run.facts else ()) else None
    if run.facts and run.facts.stored_sha == run.pkg.sha256:
        return _simulate(run, plan.stored_path(run.pkg), s)
    tmp = run.sh(["mktemp", "-d", "/var/tmp/debship-simulate.XXXXXXXX"], check=True).stdout.strip()
    try:
        run.conn.put(run.pkg.path, f"{tmp}/{run.pkg.filename}")
        return _simulate(run, f"{tmp}/{run.pkg.filename}", s)
    finally:
        with contextlib.suppress(DebshipError):
            run.sh(commands.remove_dir(tmp))


def _own_repo(run: Context) -> str | None:
    return run.opts.via_repo.url if run.opts.via_repo is not None else None


def _age(age: float | None) -> str:
    return "missing" if age is None else f"{age / 3600:.1f} h old"


def _unmet(sim: deps.Simulation) -> str:
    return "; ".join(u.explain() for u in sim.unmet)


def install(run: Context, s: Step) -> Done:
    """apt-get install a stored file path or ``name=version`` from the host's repository."""
    checked = check_repo_signature(run, s.version) if run.opts.via_repo is not None else ""
    intent = None
    if s.since:  # a ship's install: note it in the history first (store.unfinished reads it)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        intent = (run.layout.history, store.history_line(stamp, "begin", s.version, s.since))
    argv = commands.apt_install(
        s.target, run.opts.lock_timeout, s.downgrade, s.reinstall, run.layout.install_log, intent
    )
    r = run.sh(argv, sudo=True, timeout=run.opts.lock_timeout + 900)
    if not r.ok:
        raise ShipError(_install_failure(run, r.stdout + r.stderr))
    now = read_facts(run)
    if now.installed is None or not now.installed.ok or now.installed.version != s.version:
        raise ShipError(f"apt finished but dpkg reports {now.installed}; see {run.layout.deploy_log}")
    write_pin(run, s.version)
    return Done("ok", s.why + checked + new_dpkg_dist(run.first_facts, now), now)


def write_pin(run: Context, version: str) -> None:
    """Hold the host at ``version`` through apt-get upgrade (see ``pin``); under the host lock.
    A host that follows the repository (``apply --follow``) is not pinned: its pin is removed
    and the follow marker written; a push (``--take-over``) removes the marker and the versions
    the host refused while following (pushed versions are the operator's choice)."""
    lay = run.layout
    if run.opts.follow:
        url = run.opts.via_repo.url if run.opts.via_repo is not None else "?"
        run.sh(commands.remove_file(lay.apt_pin), sudo=True, check=True)
        run.sh(commands.write_file(lay.follow_marker), sudo=True, stdin=f"{url}\n".encode(), check=True)
        return
    path = lay.apt_pin
    run.sh(commands.write_file(path), sudo=True, stdin=pin.pin_text(run.pkg.name, version, path).encode(), check=True)
    if run.first_facts is not None and run.first_facts.follows:  # --take-over: push-managed from now on
        run.sh(["rm", "-f", "--", lay.follow_marker, lay.refused], sudo=True, check=True)


def pin_installed(run: Context, s: Step) -> Done:
    """The host is at the version asked for but debship's pin does not hold it there (yet)."""
    write_pin(run, s.version)
    if run.opts.follow:
        return Done("ok", f"{run.layout.follow_marker}: follows {run.opts.via_repo.url}; {run.layout.apt_pin} removed")
    return Done("ok", f"{run.layout.apt_pin}: {run.pkg.name} pinned at {s.version}")


def refuse_version(run: Context) -> Done:
    """apply --follow rolled back from this version: an apt preference at priority -1 keeps
    apt-get upgrade, unattended-upgrades and the next ``apply --follow`` from taking it again."""
    path = run.layout.refused
    current = run.sh(["cat", path], sudo=True).stdout
    text = pin.refused_text(run.pkg.name, [*pin.parse_refused(current), run.pkg.version], path)
    run.sh(commands.write_file(path), sudo=True, stdin=text.encode(), check=True)
    return Done("ok", f"{path}: {run.pkg.name} {run.pkg.version} refused (apt priority -1)")


def _install_failure(run: Context, output: str) -> str:
    if "Could not get lock" in output or "Unable to acquire the dpkg frontend lock" in output:
        return (
            f"dpkg is locked by another process for more than {run.opts.lock_timeout} s "
            "(unattended-upgrades?); raise --lock-timeout or try again later"
        )
    last = next((l.strip() for l in reversed(output.splitlines()) if l.startswith(("E:", "dpkg:"))), "")
    return f"apt-get install failed ({last or 'see ' + run.layout.install_log})"


def remove(run: Context, _step: Step) -> Done:
    r = run.sh(commands.apt_remove(run.pkg.name, run.opts.lock_timeout), sudo=True, timeout=900)
    if not r.ok:
        raise ShipError(f"could not remove {run.pkg.name} either: {r.stderr.strip()[-300:]}")
    run.sh(commands.remove_file(run.layout.apt_pin), sudo=True)  # a pin on nothing installed holds nothing
    return Done("ok", f"removed {run.pkg.name}; its deploy log stays in {run.layout.log_dir}/")


def verify_units(run: Context, s: Step) -> Done:
    o = run.opts
    systemd = run.facts.systemd if run.facts else None
    return Done(*verify.units(run.sh, installed_manifest(run), o.start_timeout, o.settle, s.after_boot, systemd))


def health(run: Context, s: Step) -> Done:
    version = (installed_version(run) or s.version) if s.after_boot else s.version
    systemd = run.facts.systemd if run.facts else None
    return Done(*verify.health(run.sh, installed_manifest(run), run.pkg.name, version, run.opts.start_timeout, systemd))


def soak(run: Context, duration: float, stop: Callable[[], bool]) -> Done:
    """Watch the installed units and the health command for ``duration`` s (``verify.soak``)."""
    systemd = run.facts.systemd if run.facts else None
    return Done(
        *verify.soak(
            run.sh, installed_manifest(run), run.pkg.name, run.pkg.version, duration, systemd=systemd, stop=stop
        )
    )


def record(run: Context, s: Step) -> Done:
    """Append to the deploy log (for people) and the ship history (for --rollback)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    installed = (run.facts.before if run.facts else None) or "nothing"
    line = f"{stamp} ship: {s.why}; now {installed}; by {run.conn.user} via debship\n"
    run.sh(
        commands.append_lines(
            run.layout.deploy_log,
            line,
            run.layout.history,
            store.history_line(
                stamp, s.target, installed, _shipped_from(run, s), f"{getpass.getuser()}@{socket.gethostname()}"
            ),
        ),
        sudo=True,
        check=True,
    )
    return Done("ok", run.layout.deploy_log)


def _shipped_from(run: Context, s: Step) -> str:
    """The version the host had before this step's change: a rollback after a failed ship comes
    from the version that failed (run.pkg's), an explicit one from what was installed."""
    if s.target == "rollback" and run.pkg.version:
        return run.pkg.version
    return (run.first_facts.before if run.first_facts else None) or "nothing"


def reboot(run: Context, _step: Step) -> Done:
    boot_id = run.sh(facts.BOOT_ID, check=True).stdout.strip()
    try:
        run.sh(["systemctl", "reboot"], sudo=True, timeout=30)
    except RemoteError:
        pass  # the connection may drop before the command returns
    deadline = time.monotonic() + run.opts.connect.connect_timeout + run.opts.boot_timeout
    while time.monotonic() < deadline:
        time.sleep(2)
        try:
            run.conn.reconnect()
            if run.sh(facts.BOOT_ID, check=True).stdout.strip() != boot_id:
                wait_for_boot(run)
                return Done("ok", "host rebooted")
        except DebshipError:
            continue
    raise ShipError("the host did not come back after reboot; check its console")


def new_dpkg_dist(first_facts: facts.HostFacts | None, now: facts.HostFacts | None) -> str:
    """The .dpkg-dist files this ship made: the new default of a conffile the admin edited."""
    first = first_facts.dpkg_dist if first_facts else ()
    new = [p for p in (now.dpkg_dist if now else ()) if p not in first]
    return f"; new default config to merge: {', '.join(new)}" if new else ""


def log_tail(run: Context) -> str:
    r = run.sh(commands.tail(run.layout.deploy_log), sudo=True)
    lines = [l.strip() for l in r.stdout.splitlines() if l.strip()] if r.ok else []
    return f"; deploy log: {' | '.join(lines)}" if lines else ""


OPS = {
    "source": add_source,
    "upload": upload,
    "store": refresh_store,
    "install": install,
    "remove": remove,
    "verify": verify_units,
    "health": health,
    "record": record,
    "reboot": reboot,
    "pin": pin_installed,
    "simulate": simulate,
}
