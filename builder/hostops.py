"""The executor's actions: how ``hostrun.HostRun`` carries out each ``hostplan.Step`` op (and
waits for boot, takes the host lock, repairs an interrupted dpkg) over its connection.
Each action takes the run and returns ``(status, detail)`` for its event, or raises
``ShipError``; what to run is ``commands``', what the host is ``facts``'."""
from __future__ import annotations

import contextlib
import getpass
import os
import socket
import time
from typing import TYPE_CHECKING

from . import commands, facts, hostguard, hostplan, pkgsig, store, verify
from .debinfo import name_only
from .errors import DebshipError, RemoteError, ShipError
from .hostplan import Step
from .layout import DEBSHIP_STATE
from .remote import Result

if TYPE_CHECKING:
    from .hostrun import HostRun


def wait_for_boot(run: HostRun):
    timeout = run.opts.boot_timeout
    r = run.sh(facts.boot_command(timeout), timeout=timeout + 30)
    boot = facts.parse_boot(r.exit_code, r.stdout, r.stderr)
    if boot.state == "timeout":
        raise ShipError(f"{boot.detail} after {timeout:g} s; raise --boot-timeout or look at the host")
    if boot.state == "fail":
        raise ShipError(boot.detail)
    return (boot.state, boot.detail)

def find_package(run: HostRun):
    """No package named: the host's debship state says which package it manages."""
    if run.pkg.name:
        return ("skip", f"package {run.pkg.name}")
    r = run.sh(facts.managed_command())
    names = facts.parse_managed(r.stdout)
    if len(names) != 1:
        listed = f"it manages {', '.join(names)}" if names else "it manages no debship package"
        raise ShipError(f"cannot tell which package: {listed} ({DEBSHIP_STATE}); pass --package NAME")
    run.pkg = name_only(names[0])
    return ("ok", f"package {names[0]} (the one debship package on the host)")

def take_lock(run: HostRun):
    """Take the host's ship lock for this package (held until the connection closes); a ship
    already holding it is waited for, up to --lock-timeout, and named."""
    lay, wait = run.layout, run.opts.lock_timeout
    who = (f"{getpass.getuser()}@{socket.gethostname()} pid {os.getpid()} since "
           f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}, shipping {run.pkg.name} {run.pkg.version}")
    busy: list[str] = []

    def waiting(line: str) -> None:
        if line.startswith("BUSY "):
            busy.append(line[5:])
            run.emit("lock", "warn", f"waiting up to {wait} s for the ship lock, held by {line[5:]}")

    got = run.conn.hold(commands.host_lock(lay.lock, lay.lock_holder, who.strip(), wait, lay.store, lay.log_dir),
                        sudo=True, until=commands.LOCKED, timeout=wait + 60, on_line=waiting)
    if isinstance(got, Result):
        if got.exit_code == hostguard.UNSAFE:
            raise ShipError(hostguard.unsafe_message(got.stdout) or f"unsafe path on the host: {got.stdout.strip()}")
        if got.exit_code == commands.LOCK_TIMED_OUT:
            raise ShipError(f"another ship holds this host's lock ({busy[0] if busy else lay.lock}) for more "
                            f"than {wait} s; wait for it to finish or raise --lock-timeout")
        raise ShipError(f"cannot take the ship lock {lay.lock} (exit {got.exit_code}): "
                        f"{(got.stderr or got.stdout).strip()[-200:]}")
    run.held = got
    return ("ok", f"{lay.lock}" + (f" (waited for {busy[0]})" if busy else ""))

def repair(run: HostRun, now: facts.HostFacts) -> facts.HostFacts:
    """dpkg was interrupted (a killed apt, a power cut): finish configuring what it left,
    waiting for the lock like apt does, before deciding anything."""
    what = now.audit.splitlines()[0] if now.audit else f"{run.pkg.name} is {now.installed.status.strip()}"
    run.emit("repair", "warn", f"dpkg was interrupted ({what}); running dpkg --configure -a")
    run.repaired = True
    r = run.sh(commands.configure_pending(run.opts.lock_timeout), sudo=True, timeout=run.opts.lock_timeout + 900)
    after = run.read_facts()
    if not r.ok:
        run.emit("repair", "warn", f"dpkg --configure -a failed: {last_line(r.stdout + r.stderr)}")
    return after

def last_line(output: str) -> str:
    return next((l.strip() for l in reversed(output.splitlines()) if l.startswith(("E:", "dpkg:"))),
                " ".join(output.split())[-200:] or "no output")

def upload(run: HostRun, _step: Step):
    stored = hostplan.stored_path(run.pkg)
    sig = pkgsig.sig_path(run.pkg.path)
    signed = sig.is_file()
    if run.facts and run.facts.stored_sha == run.pkg.sha256 and not signed:
        return ("ok", f"already in {run.layout.store}" + check_signature(run, stored))
    r = run.sh(commands.stage(run.pkg.name, run.conn.user), sudo=True, check=True)
    staging = r.stdout.strip()
    remote = f"{staging}/{run.pkg.filename}"
    remote_sig = f"{remote}{pkgsig.SIG_SUFFIX}" if signed else ""
    try:
        run.conn.put(run.pkg.path, remote)
        if signed:
            run.conn.put(sig, remote_sig)
    except DebshipError:
        with contextlib.suppress(DebshipError):  # a dropped connection: the next ship removes it
            run.sh(commands.remove_dir(staging))
        raise
    r = run.sh(commands.check_and_keep(staging, remote, stored, run.pkg.sha256, run.conn.user, remote_sig),
               sudo=True)
    if r.exit_code == hostguard.UNSAFE:
        raise ShipError(hostguard.unsafe_message(r.stdout) or f"unsafe path on the host: {r.stdout.strip()}")
    if r.exit_code == pkgsig.REFUSED:
        raise ShipError(pkgsig.verdict(r.exit_code, r.stdout, f"{run.pkg.name} {run.pkg.version}").detail)
    if r.exit_code == commands.DAMAGED:
        raise ShipError(f"upload damaged: sha256 on the host is {r.stdout.strip()}, expected "
                        f"{run.pkg.sha256}; ship again")
    if not r.ok:
        raise ShipError(f"cannot keep the upload in {run.layout.store}: {(r.stderr or r.stdout).strip()[-200:]}")
    checked = _signature_note(pkgsig.verdict(r.exit_code, r.stdout, run.pkg.name))
    run.uploaded = store.Kept(stored.rsplit("/", 1)[1], run.pkg.version)
    return ("ok", f"{run.pkg.size} bytes, sha256 checked, kept as {stored}{checked}")


def _signature_note(v: pkgsig.Verdict) -> str:
    return f"; signature {v.detail}" if v.ok and not v.detail.startswith("not checked") else ""


def check_signature(run: HostRun, stored: str) -> str:
    """A package already kept (not uploaded again) against its signature and the host's
    trusted keys; a refused package is removed from the store before anything installs it."""
    r = run.sh(pkgsig.verify_command(stored, stored + pkgsig.SIG_SUFFIX), sudo=True, timeout=300)
    v = pkgsig.verdict(r.exit_code, r.stdout, f"{run.pkg.name} {run.pkg.version}")
    if not v.ok:
        run.sh(["rm", "-f", "--", stored, stored + pkgsig.SIG_SUFFIX], sudo=True)
        raise ShipError(v.detail)
    return _signature_note(v)


def check_repo_signature(run: HostRun, version: str) -> str:
    """--via-repo: the package apt is about to install, against the signature published beside it."""
    r = run.sh(pkgsig.verify_repo_command(run.pkg.name, version), sudo=True, timeout=run.opts.lock_timeout + 300)
    v = pkgsig.verdict(r.exit_code, r.stdout, f"{run.pkg.name} {version} from {run.opts.via_repo.url}")
    if not v.ok:
        raise ShipError(v.detail)
    return _signature_note(v)


def trust_key(run: HostRun):
    """--trust-key: from now on this host installs only packages signed by the keys it holds."""
    key = run.opts.trust_key
    r = run.sh(pkgsig.trust_command(key), sudo=True, stdin=key.data)
    if r.exit_code == hostguard.UNSAFE:
        raise ShipError(hostguard.unsafe_message(r.stdout) or r.stdout.strip())
    if not r.ok:
        raise ShipError(f"cannot install the trusted key in {pkgsig.KEYS_DIR}: {(r.stderr or r.stdout).strip()[-200:]}")
    return ("ok", f"{pkgsig.KEYS_DIR}/{key.filename}")

def add_source(run: HostRun, _step: Step):
    """Put the repository's key and deb822 source on the host and refresh that source alone."""
    repo, lay = run.opts.via_repo, run.layout
    run.sh(commands.write_file(lay.repo_keyring), sudo=True, stdin=repo.key.encode(), check=True)
    run.sh(commands.write_file(lay.repo_source), sudo=True, stdin=repo.sources.encode(), check=True)
    r = run.sh(commands.apt_update_source(lay.repo_source), sudo=True, timeout=run.opts.lock_timeout + 300)
    problems = [l.strip() for l in (r.stdout + r.stderr).splitlines() if l.startswith(("E:", "W:", "Err:"))]
    if not r.ok or any(l.startswith(("E:", "Err:")) for l in problems):
        raise ShipError(f"apt-get update of {repo.url} failed ({' | '.join(problems[:3]) or f'exit {r.exit_code}'}); "
                        "check the URL, that the host reaches it, and --repo-key")
    now = run.read_facts()
    return ("ok", f"{lay.repo_source}: {run.pkg.name} {', '.join(now.available) or 'not found'} available")

def refresh_store(run: HostRun, _step: Step):
    """Prune to the newest N plus the installed version, then rebuild the index from the files."""
    now = run.facts or run.read_facts()
    kept = list(now.kept)
    if run.uploaded is not None and run.uploaded.filename not in {k.filename for k in kept}:
        kept = store.parse_list("".join(f"{k.filename}\t{k.version}\n" for k in [*kept, run.uploaded]))
    keep = run.installed_manifest(now).keep_versions
    pruned = store.to_prune(kept, keep, now.before)
    if pruned:
        run.sh(store.prune_command(run.layout, pruned), sudo=True, check=True)
    run.sh(store.index_command(run.layout), sudo=True, check=True, timeout=300)
    kept = [k.version for k in kept if k.filename not in pruned]
    return ("ok", f"kept {', '.join(kept)}" + (f"; pruned {', '.join(pruned)}" if pruned else ""))

def install(run: HostRun, s: Step):
    """apt-get install a stored file path or ``name=version`` from the host's repository."""
    checked = check_repo_signature(run, s.version) if run.opts.via_repo is not None else ""
    argv = commands.apt_install(s.target, run.opts.lock_timeout, s.downgrade, s.reinstall, run.layout.install_log)
    r = run.sh(argv, sudo=True, timeout=run.opts.lock_timeout + 900)
    if not r.ok:
        raise ShipError(_install_failure(run, r.stdout + r.stderr))
    now = run.read_facts()
    if now.installed is None or not now.installed.ok or now.installed.version != s.version:
        raise ShipError(f"apt finished but dpkg reports {now.installed}; see {run.layout.deploy_log}")
    return ("ok", s.why + checked + new_dpkg_dist(run))

def _install_failure(run: HostRun, output: str) -> str:
    if "Could not get lock" in output or "Unable to acquire the dpkg frontend lock" in output:
        return (f"dpkg is locked by another process for more than {run.opts.lock_timeout} s "
                "(unattended-upgrades?); raise --lock-timeout or try again later")
    last = next((l.strip() for l in reversed(output.splitlines()) if l.startswith(("E:", "dpkg:"))), "")
    return f"apt-get install failed ({last or 'see ' + run.layout.install_log})"

def remove(run: HostRun, _step: Step):
    r = run.sh(commands.apt_remove(run.pkg.name, run.opts.lock_timeout), sudo=True, timeout=900)
    if not r.ok:
        raise ShipError(f"could not remove {run.pkg.name} either: {r.stderr.strip()[-300:]}")
    return ("ok", f"removed {run.pkg.name}; its deploy log stays in {run.layout.log_dir}/")

def verify_units(run: HostRun, s: Step):
    o = run.opts
    systemd = run.facts.systemd if run.facts else None
    return verify.units(run.sh, run.installed_manifest(), o.start_timeout, o.settle, s.after_boot, systemd)

def health(run: HostRun, s: Step):
    version = (run.installed_version() or s.version) if s.after_boot else s.version
    systemd = run.facts.systemd if run.facts else None
    return verify.health(run.sh, run.installed_manifest(), run.pkg.name, version, run.opts.start_timeout,
                         systemd)

def record(run: HostRun, s: Step):
    """Append to the deploy log (for people) and the ship history (for --rollback)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    installed = (run.facts.before if run.facts else None) or "nothing"
    line = f"{stamp} ship: {s.why}; now {installed}; by {run.conn.user} via debship\n"
    run.sh(commands.append_lines(run.layout.deploy_log, line, run.layout.history,
                                  store.history_line(stamp, s.target, installed)), sudo=True, check=True)
    return ("ok", run.layout.deploy_log)

def reboot(run: HostRun, _step: Step):
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
                return ("ok", "host rebooted")
        except DebshipError:
            continue
    raise ShipError("the host did not come back after reboot; check its console")


def new_dpkg_dist(run: HostRun) -> str:
    """The .dpkg-dist files this ship made: the new default of a conffile the admin edited."""
    first = run.first_facts.dpkg_dist if run.first_facts else ()
    new = [p for p in (run.facts.dpkg_dist if run.facts else ()) if p not in first]
    return f"; new default config to merge: {', '.join(new)}" if new else ""



def log_tail(run: HostRun) -> str:
    r = run.sh(commands.tail(run.layout.deploy_log), sudo=True)
    lines = [l.strip() for l in r.stdout.splitlines() if l.strip()] if r.ok else []
    return f"; deploy log: {' | '.join(lines)}" if lines else ""


OPS = {"source": add_source, "upload": upload, "store": refresh_store, "install": install, "remove": remove,
       "verify": verify_units, "health": health, "record": record, "reboot": reboot}
