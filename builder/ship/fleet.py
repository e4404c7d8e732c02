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

import contextlib
import signal
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import Callable

from ..debinfo import PackageInfo, name_only, read_package
from ..errors import ShipError, UsageError
from ..layout import Layout
from . import rollout
from .executor import Connector, Event, HostResult, HostRun, list_host, revert_host, rollback_host, ship_host, soak_host
from .options import ShipOptions, ViaRepo
from .sshconfig import HostSpec

__all__ = [
    "Event",
    "HostResult",
    "ShipOptions",
    "exit_code",
    "list_kept",
    "newest_deb",
    "package_for",
    "parse_hosts",
    "rollback",
    "ship",
    "to_version",
]

Emit = Callable[[Event], None]
HostJob = Callable[[HostRun], HostResult]
Done = Callable[[HostResult], None]


def ship(
    pkg: PackageInfo,
    hosts: Sequence[HostSpec],
    opts: ShipOptions,
    emit: Emit,
    parallel: int = 4,
    batch: int | str = 0,
    max_failures: int = 0,
    **rollout_kw,
) -> list[HostResult]:
    """Ship ``pkg`` to ``hosts``: ``parallel`` at a time, in batches (``batch``: ``N`` or a list such
    as ``1,10%,100%``; 0 = all at once), halting once the failure budget (``max_fail``, or
    ``max_failures`` hosts) is spent or on SIGINT/SIGTERM; then, unless --no-rollback, the hosts
    this run moved go back to the versions they had."""
    revert = opts.rollback_on_failure and not opts.dry_run
    return run_fleet(pkg, hosts, opts, emit, ship_host, parallel, batch, max_failures, revert=revert, **rollout_kw)


def rollback(name: str, hosts: Sequence[HostSpec], opts: ShipOptions, emit: Emit, **fleet) -> list[HostResult]:
    """Each host goes back to the version it had before the current one (from its store)."""
    return run_fleet(name_only(name), hosts, opts, emit, lambda run: rollback_host(run, None), **fleet)


def to_version(
    name: str, version: str, hosts: Sequence[HostSpec], opts: ShipOptions, emit: Emit, **fleet
) -> list[HostResult]:
    """Each host installs ``version`` from its store (an upgrade or a downgrade)."""
    return run_fleet(name_only(name), hosts, opts, emit, lambda run: rollback_host(run, version), **fleet)


def list_kept(name: str, hosts: Sequence[HostSpec], opts: ShipOptions, emit: Emit, **fleet) -> list[HostResult]:
    """The installed and the kept versions of ``name`` on each host."""
    return run_fleet(name_only(name), hosts, opts, emit, list_host, **fleet)


FLEET = ""  # the host of a fleet-wide event (batch, halt, revert)


@contextlib.contextmanager
def _signals_halt(received: list[str]):
    """The first SIGINT (Ctrl-C) or SIGTERM is noted in ``received`` (the run halts at its next
    look); a second one gives up at once (KeyboardInterrupt).  Only the main thread may set them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def note(signum, _frame):
        if received:
            raise KeyboardInterrupt
        received.append(signal.Signals(signum).name)

    old = {sig: signal.signal(sig, note) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def run_fleet(
    pkg: PackageInfo,
    hosts: Sequence[HostSpec],
    opts: ShipOptions,
    emit: Emit,
    job: HostJob,
    parallel: int = 4,
    batch: int | str = 0,
    max_failures: int = 0,
    connector: Connector | None = None,
    max_fail: str | None = None,
    revert: bool = False,
    soak: float = 0.0,
    on_done: Done | None = None,
) -> list[HostResult]:
    """``job`` on every host, ``parallel`` at a time, batch after batch (``rollout.plan_batches``),
    each host reached through ``connector`` (default: SSH).  The run halts once the failure budget
    is spent (``rollout.over_budget``) or on SIGINT/SIGTERM: hosts not started are skipped, and
    with ``revert`` the hosts this run moved go back to their earlier versions, the last moved
    first.  A second interrupt gives up at once (each host stays on the version dpkg has).  With
    ``soak`` (seconds), each batch's hosts that took the package are watched that long before the
    next batch (``executor.soak_host``); one failing the soak counts as failed, and halts the run.
    ``on_done`` hears of each host as it finishes (the CLI's running count on a terminal)."""
    if connector is None:
        from .ssh import connect as connector
    if not hosts:
        raise ShipError("no hosts given; pass --host HOST or --hosts-file FILE")
    budget = rollout.parse_max_fail(max_fail if max_fail is not None else max_failures)
    groups = rollout.split(list(hosts), rollout.plan_batches(len(hosts), rollout.parse_batches(batch)))
    lock = threading.Lock()
    halted: list[str] = []  # the reason, once the run halts
    t0 = time.monotonic()

    def safe_emit(event: Event) -> None:
        with lock:
            emit(event)

    def fleet_event(step: str, status: str, detail: str, data: dict | None = None) -> None:
        safe_emit(Event(FLEET, step, status, round(time.monotonic() - t0, 3), detail, data))

    def halt(reason: str, data: dict, note: str = "") -> None:
        if not halted:
            halted.append(reason)
            fleet_event("halt", "fail", f"halting the run: {reason}{note}", {"reason": reason, **data})

    def on_host(spec: HostSpec, host_job: HostJob, p: PackageInfo = pkg, skip: bool = True) -> HostResult:
        if skip and halted:
            return HostResult(str(spec), "skipped", detail=f"not shipped: {halted[0]}", package=p.name)
        run = HostRun(p, spec, opts, safe_emit, connector)
        result = run.guarded(lambda: host_job(run))
        if on_done is not None:
            with lock:
                on_done(result)
        return result

    def look_at_signals() -> None:
        if signals:
            halt(
                f"interrupted ({signals[0]})",
                {"signal": signals[0]},
                "; hosts under way finish, then the ones this run moved go back (interrupt again to give up)",
            )

    def gather(futures: list) -> list[HostResult]:
        """Wait for ``futures``, halting the run when a signal came (hosts under way finish)."""
        while True:
            _, pending = wait(futures, timeout=0.5)
            look_at_signals()
            if not pending:
                return [f.result() for f in futures]

    def soak_batch(group: list[HostSpec], done: list[HostResult], info: dict) -> list[HostResult]:
        """Watch the batch's healthy hosts for ``soak`` s, all at once; the others stay as they are."""
        watch = [i for i, r in enumerate(done) if r.outcome in ("installed", "unchanged")]
        if not watch:
            return done
        hosts_ = [done[i].host for i in watch]
        fleet_event(
            "soak",
            "start",
            f"soaking {len(watch)} host(s) for {soak:g} s: {', '.join(hosts_)}",
            {**info, "hosts": hosts_, "seconds": soak},
        )
        stop = lambda: bool(halted)  # noqa: E731
        with ThreadPoolExecutor(max_workers=min(64, len(watch))) as soak_pool:
            futures = [
                soak_pool.submit(on_host, group[i], lambda run, r=done[i]: soak_host(run, r, soak, stop), skip=False)
                for i in watch
            ]
            soaked = gather(futures)
        out = list(done)
        for i, r in zip(watch, soaked):
            out[i] = r
        bad = [r.host for r in soaked if not r.ok]
        soak_failed.extend(bad)
        fleet_event(
            "soak",
            "fail" if bad else "ok",
            f"soak of {len(watch)} host(s): " + (f"failed: {', '.join(bad)}" if bad else "all stayed healthy"),
            {**info, "hosts": hosts_, "failed": bad},
        )
        return out

    soak_failed: list[str] = []
    results: list[HostResult] = []
    moved: list[list[tuple[HostSpec, HostResult]]] = []  # per batch: the hosts this run moved
    failed = 0
    signals: list[str] = []
    with _signals_halt(signals), ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        for number, group in enumerate(groups, 1):
            look_at_signals()
            if halted:
                results += [
                    HostResult(str(h), "skipped", detail=f"not shipped: {halted[0]}", package=pkg.name) for h in group
                ]
                continue
            names = [str(h) for h in group]
            info = {"batch": number, "of": len(groups), "hosts": names}
            if len(groups) > 1:
                fleet_event("batch", "start", f"batch {number}/{len(groups)}: {', '.join(names)}", info)
            done = gather([pool.submit(on_host, h, job) for h in group])
            if soak > 0 and not halted:
                done = soak_batch(group, done, info)
            results += done
            moved.append([(h, r) for h, r in zip(group, done) if _moved(r)])
            bad = sum(not r.ok for r in done)
            failed += bad
            if len(groups) > 1:
                fleet_event(
                    "batch",
                    "fail" if bad else "ok",
                    f"batch {number}/{len(groups)}: {len(done) - bad} ok, {bad} failed",
                    {**info, "failed": bad},
                )
            reason = rollout.over_budget(budget, bad, len(group), failed, len(hosts))
            if soak_failed and not reason:  # a batch that does not bake cleanly is not promoted
                reason = f"{len(soak_failed)} host(s) failed the {soak:g} s soak: {', '.join(soak_failed)}"
            if reason:
                halt(reason, {"batch": number})
        if halted and revert and any(moved):
            results = _revert(results, moved, halted[0], pool, on_host, gather, fleet_event)
    return results


def _moved(r: HostResult) -> bool:
    """This run changed the host's version (and left it there)."""
    return r.outcome == "installed" and r.before != r.after


def _revert(results, moved, reason, pool, on_host, gather, fleet_event) -> list[HostResult]:
    """Each host this run moved goes back to its ``before`` version: the last batch first, and
    within a batch the last host first (the batch's hosts in parallel)."""
    order = [list(reversed(b)) for b in reversed(moved) if b]
    hosts = [str(h) for b in order for h, _ in b]
    fleet_event(
        "revert",
        "start",
        f"reverting {len(hosts)} host(s) this run moved: {', '.join(hosts)}",
        {"hosts": hosts, "reason": reason},
    )
    final: dict[str, HostResult] = {}
    for group in order:
        futures = [pool.submit(on_host, h, lambda run, to=r.before: revert_host(run, to), skip=False) for h, r in group]
        for (_h, shipped), back in zip(group, gather(futures)):
            if back.ok:
                final[shipped.host] = replace(
                    shipped,
                    outcome="reverted",
                    after=back.after,
                    detail=f"shipped {shipped.after}, then back to "
                    f"{back.after or 'not installed'}: the run halted: {reason}",
                )
            else:
                final[shipped.host] = replace(
                    shipped,
                    outcome="failed",
                    after=back.after,
                    detail=f"shipped {shipped.after}; going back to "
                    f"{shipped.before or 'not installed'} failed: {back.detail}",
                )
    bad = [h for h in hosts if final[h].outcome != "reverted"]
    fleet_event(
        "revert",
        "fail" if bad else "ok",
        f"reverted {len(hosts) - len(bad)} of {len(hosts)} host(s)" + (f"; failed: {', '.join(bad)}" if bad else ""),
        {"hosts": hosts, "failed": bad},
    )
    return [final.get(r.host, r) for r in results]


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
    from ..config import REPO_URL_RE
    from ..gpg import read_key
    from ..repo import sources_deb822

    if not url or key_file is None:
        raise UsageError("--via-repo and --repo-key go together: pass the repository's URL and its public key")
    if not REPO_URL_RE.match(url):
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
    """0 all hosts fine; 3 every failed host was rolled back to its previous version (and any
    host a halted run reverted is back at its own); 1 otherwise (a host failed, or was skipped)."""
    bad = [r for r in results if not r.ok]
    if not bad:
        return 0
    return 3 if all(r.outcome in ("rolled-back", "reverted") for r in bad) else 1
