"""``ship``: take one .deb to many hosts, each step reported as an event.

For each host (``executor``): connect (waiting while it boots), wait for
cloud-init, read the host's facts in one round trip, plan from them
(``plan``, pure), then upload, keep the package in the root-owned store,
install with apt, verify the services and record what was done.  Here: the
fleet — hosts on a thread pool, in rolling batches — and the entry points
``ship``, ``rollback``, ``to_version`` and ``list_kept``.  Nothing here prints:
``emit(Event)`` is the only output.
"""
from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

from ..debinfo import PackageInfo, name_only, read_package
from ..errors import ShipError, UsageError
from ..layout import Layout
from .executor import Connector, Event, HostResult, HostRun, list_host, rollback_host, ship_host
from . import rollout
from .options import ShipOptions, ViaRepo
from .sshconfig import HostSpec

__all__ = ["Event", "HostResult", "ShipOptions", "exit_code", "list_kept", "newest_deb",
           "package_for", "parse_hosts", "rollback", "ship", "to_version"]

Emit = Callable[[Event], None]
HostJob = Callable[[HostRun], HostResult]


def ship(pkg: PackageInfo, hosts: Sequence[HostSpec], opts: ShipOptions, emit: Emit, parallel: int = 4,
         batch: int | str = 0, max_failures: int = 0, **rollout_kw) -> list[HostResult]:
    """Ship ``pkg`` to ``hosts``: ``parallel`` at a time, in batches (``batch``: ``N`` or a list such
    as ``1,10%,100%``; 0 = all at once), halting once the failure budget (``max_fail``, or
    ``max_failures`` hosts) is spent."""
    return run_fleet(pkg, hosts, opts, emit, ship_host, parallel, batch, max_failures, **rollout_kw)


def rollback(name: str, hosts: Sequence[HostSpec], opts: ShipOptions, emit: Emit, **fleet) -> list[HostResult]:
    """Each host goes back to the version it had before the current one (from its store)."""
    return run_fleet(name_only(name), hosts, opts, emit, lambda run: rollback_host(run, None), **fleet)


def to_version(name: str, version: str, hosts: Sequence[HostSpec], opts: ShipOptions, emit: Emit,
               **fleet) -> list[HostResult]:
    """Each host installs ``version`` from its store (an upgrade or a downgrade)."""
    return run_fleet(name_only(name), hosts, opts, emit, lambda run: rollback_host(run, version), **fleet)


def list_kept(name: str, hosts: Sequence[HostSpec], opts: ShipOptions, emit: Emit, **fleet) -> list[HostResult]:
    """The installed and the kept versions of ``name`` on each host."""
    return run_fleet(name_only(name), hosts, opts, emit, list_host, **fleet)


FLEET = ""  # the host of a fleet-wide event (batch, halt, revert)


def run_fleet(pkg: PackageInfo, hosts: Sequence[HostSpec], opts: ShipOptions, emit: Emit, job: HostJob,
              parallel: int = 4, batch: int | str = 0, max_failures: int = 0,
              connector: Connector | None = None, max_fail: str | None = None) -> list[HostResult]:
    """``job`` on every host, ``parallel`` at a time, batch after batch (``rollout.plan_batches``),
    each host reached through ``connector`` (default: SSH).  Once the failure budget is spent
    (``rollout.over_budget``), hosts not started yet are skipped."""
    if connector is None:
        from .ssh import connect as connector
    if not hosts:
        raise ShipError("no hosts given; pass --host HOST or --hosts-file FILE")
    budget = rollout.parse_max_fail(max_fail if max_fail is not None else max_failures)
    groups = rollout.split(list(hosts), rollout.plan_batches(len(hosts), rollout.parse_batches(batch)))
    lock = threading.Lock()
    halted: list[str] = []  # the reason, once the run halts

    def safe_emit(event: Event) -> None:
        with lock:
            emit(event)

    def fleet_event(step: str, status: str, detail: str, data: dict | None = None) -> None:
        safe_emit(Event(FLEET, step, status, round(time.monotonic() - t0, 3), detail, data))

    def one(spec: HostSpec) -> HostResult:
        if halted:
            return HostResult(str(spec), "skipped", detail=f"not shipped: {halted[0]}")
        run = HostRun(pkg, spec, opts, safe_emit, connector)
        return run.guarded(lambda: job(run))

    t0 = time.monotonic()
    results: list[HostResult] = []
    failed = 0
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        for number, group in enumerate(groups, 1):
            if halted:
                results += [HostResult(str(h), "skipped", detail=f"not shipped: {halted[0]}") for h in group]
                continue
            names = [str(h) for h in group]
            if len(groups) > 1:
                fleet_event("batch", "start", f"batch {number}/{len(groups)}: {', '.join(names)}",
                            {"batch": number, "of": len(groups), "hosts": names})
            done = list(pool.map(one, group))
            results += done
            bad = sum(not r.ok for r in done)
            failed += bad
            reason = rollout.over_budget(budget, bad, len(group), failed, len(hosts))
            if len(groups) > 1:
                fleet_event("batch", "fail" if bad else "ok",
                            f"batch {number}/{len(groups)}: {len(done) - bad} ok, {bad} failed",
                            {"batch": number, "of": len(groups), "hosts": names, "failed": bad})
            if reason:
                halted.append(reason)
                fleet_event("halt", "fail", f"halting the run: {reason}", {"reason": reason, "batch": number})
    return results


def parse_hosts(hosts: Sequence[str], hosts_file: Path | None) -> list[HostSpec]:
    """Hosts from --host and --hosts-file (one per line, # comments), in order, without repeats."""
    texts = list(hosts)
    if hosts_file is not None:
        try:
            lines = Path(hosts_file).read_text().splitlines()
        except OSError as e:
            raise UsageError(f"{hosts_file}: cannot read the hosts file ({e.strerror})") from e
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


def via_repo(name: str, url: str | None, key_file: Path | None, suite: str, component: str) -> ViaRepo:
    """What --via-repo URL --repo-key FILE puts on each host: the key and one deb822 source."""
    from ..gpg import read_key
    from ..repo import sources_deb822
    if not url or key_file is None:
        raise UsageError("--via-repo and --repo-key go together: pass the repository's URL and its public key")
    if not re.match(r"^(https?|file)://\S+$", url):
        raise UsageError(f"--via-repo {url!r} is not an http(s):// or file:// URL; give the URL the hosts reach")
    if not name:
        raise UsageError("--via-repo needs the package name: pass the .deb, or --package NAME")
    source = sources_deb822(url, suite, component, Layout(name).repo_keyring, f"debship-{name}")
    return ViaRepo(url, read_key(key_file), source)


def package_for(mode: str, deb: Path | None, name: str | None, project: Path) -> PackageInfo:
    """The package to ship, or (for --rollback, --to-version, --list) just its name: from
    --package, DEB or the newest .deb in dist/; with none of them each host says (an empty name)."""
    if mode != "ship":
        if name:
            return name_only(name)
        if deb is None and not list((Path(project) / "dist").glob("*.deb")):
            return name_only("")
    return read_package(deb if deb is not None else newest_deb(Path(project) / "dist"))


def exit_code(results: Sequence[HostResult]) -> int:
    """0 all hosts fine; 3 every failed host was rolled back to its previous version; 1 otherwise."""
    bad = [r for r in results if not r.ok]
    if not bad:
        return 0
    return 3 if all(r.outcome == "rolled-back" for r in bad) else 1
