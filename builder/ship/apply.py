"""``debship apply``: a host installs its own package with everything ``ship`` does (lock, facts,
plan, simulate, install, verify, health, automatic rollback, record, pin), over the local
connection instead of SSH: the same executor and actions, so every decision is shared.

What to apply is a ``.deb`` path, or ``NAME=VERSION`` from the host's store (a version ship or
apply kept there) or, with ``--repo URL --repo-key FILE``, from that signed repository.  A
version from the repository is first downloaded into a temporary folder with apt pointed at
a temporary source and lists (no shared host state is touched before the lock is taken), so
the plan can read its manifest and conffiles like ship reads an uploaded file.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Callable

from ..debinfo import PackageInfo, read_package
from ..errors import ShipError, UsageError
from ..layout import Layout
from .executor import Event, HostResult, ship_host
from .options import ShipOptions
from .sshconfig import HostSpec

_NAME_VERSION = re.compile(r"^([a-z0-9][a-z0-9+.-]+)=([0-9][A-Za-z0-9.+~:-]*)$")


def apply(target: str, opts: ShipOptions, emit: Callable[[Event], None]) -> tuple[PackageInfo, HostResult]:
    """Ship ``target`` to this host, over the local connection; the package and the host's result."""
    from . import fleet, local

    with package_file(target, opts) as deb:
        pkg = read_package(deb)
        return pkg, fleet.run_fleet(pkg, [HostSpec("localhost")], opts, emit, ship_host, connector=local.connect)[0]


@contextlib.contextmanager
def package_file(target: str, opts: ShipOptions) -> Iterator[Path]:
    """The .deb ``target`` names, on this machine."""
    if target.endswith(".deb"):
        path = Path(target)
        if not path.is_file():
            raise ShipError(f"{target}: no such .deb; give the path of a .deb, or NAME=VERSION")
        yield path
        return
    m = _NAME_VERSION.match(target)
    if not m:
        raise UsageError(f"{target!r}: not a .deb path or NAME=VERSION (e.g. fleet-agent=1.2.0)")
    name, version = m.groups()
    if opts.via_repo is None:
        yield from_store(name, version)
        return
    with tempfile.TemporaryDirectory(prefix="debship-apply.") as tmp:
        yield from_repo(name, version, opts, Path(tmp))


def from_store(name: str, version: str) -> Path:
    """A version kept in this host's store (``Layout(name).store``)."""
    store = Path(Layout(name).store)
    kept = []
    for deb in sorted(store.glob("*.deb")):
        found = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], capture_output=True, text=True)
        if found.returncode == 0:
            kept.append(found.stdout.strip())
            if found.stdout.strip() == version:
                return deb
    raise ShipError(
        f"{name} {version} is not kept in {store} (kept: {', '.join(kept) or 'none'}); "
        "give its .deb, or --repo URL --repo-key FILE"
    )


def from_repo(name: str, version: str, opts: ShipOptions, tmp: Path, apt: list[str] | None = None) -> Path:
    """``apt-get download name=version`` from the repository alone, with its own lists in ``tmp``
    (``apt``: the options of lists already fetched into ``tmp``, not fetched again)."""
    repo = opts.via_repo
    if apt is None:
        apt = _own_lists(repo, tmp)
        _apt(["apt-get", *apt, "update", "-qq"], tmp, f"cannot get {name} {version} from {repo.url}")
    _apt(["apt-get", *apt, "download", "-qq", f"{name}={version}"], tmp, f"cannot get {name} {version} from {repo.url}")
    debs = sorted(tmp.glob(f"{name}_*.deb"))
    if not debs:
        raise ShipError(f"apt downloaded no .deb of {name} {version} from {repo.url}")
    return debs[0]


def _apt(argv: list[str], tmp: Path, what: str, env: dict | None = None) -> str:
    r = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env)
    problems = [l.strip() for l in (r.stdout + r.stderr).splitlines() if l.startswith(("E:", "Err:"))]
    if r.returncode != 0 or problems:
        why = " | ".join(problems[:2]) or f"exit {r.returncode}"
        raise ShipError(f"{what} ({why}); check the URL, --repo-key and that the repository has this version")
    return r.stdout


def _own_lists(repo, tmp: Path) -> list[str]:
    """apt options that read only ``repo``, with lists and downloads of its own in ``tmp``
    (no shared host state is touched before the host lock is taken)."""
    tmp.mkdir(parents=True, exist_ok=True)
    key = tmp / "key.asc"
    key.write_text(repo.key)
    sources = tmp / "repo.sources"
    sources.write_text(re.sub(r"(?m)^Signed-By: .*$", f"Signed-By: {key}", repo.sources))
    (tmp / "lists" / "partial").mkdir(parents=True)
    (tmp / "archives" / "partial").mkdir(parents=True)
    return [
        "-o",
        f"Dir::Etc::sourcelist={sources}",
        "-o",
        "Dir::Etc::sourceparts=-",
        "-o",
        f"Dir::State::Lists={tmp / 'lists'}",
        "-o",
        f"Dir::Cache::Archives={tmp / 'archives'}",
        "-o",
        "Dir::Cache::pkgcache=",
        "-o",
        "Dir::Cache::srcpkgcache=",
        "-o",
        "APT::Sandbox::User=root",
    ]


# --- following the repository (apply --follow) ---------------------------------------------
_INST = re.compile(r"^Inst (\S+) \[([^\]]+)\] \((\S+) ")


def follow(
    name: str, opts: ShipOptions, emit: Callable[[Event], None]
) -> tuple[PackageInfo | None, HostResult | None, str]:
    """Take the version of ``name`` apt's phasing offers this machine from the repository it
    follows, with everything ``apply`` does; (package, result, "") or (None, None, why not)."""
    from . import fleet, local

    check_not_pushed(name, opts.take_over)
    repo = opts.via_repo or followed_repo(name)
    opts = replace(opts, via_repo=repo, follow=True)
    with tempfile.TemporaryDirectory(prefix="debship-follow.") as tmp:
        version, why, now, apt = phased_candidate(name, repo, Path(tmp))
        lay = Layout(name)
        if version is None and now is not None and (Path(lay.apt_pin).exists() or not Path(lay.follow_marker).exists()):
            version = now  # nothing new to take, but the host starts following: unpinned, the marker written
        if version is None:
            return None, None, why
        deb = from_repo(name, version, opts, Path(tmp) / "follow", apt)  # the lists phased_candidate read
        pkg = read_package(deb)
        result = fleet.run_fleet(pkg, [HostSpec("localhost")], opts, emit, ship_host, connector=local.connect)[0]
        return pkg, result, ""


def check_not_pushed(name: str, take_over: bool) -> None:
    """A push-managed host (debship's pin, no follow marker) follows only with ``--take-over``
    (the same rule ``plan.plan_managed`` applies under the lock, checked here before anything)."""
    from .pin import parse_pin
    from .plan import push_managed

    lay = Layout(name)
    try:
        pinned = parse_pin(Path(lay.apt_pin).read_text())
    except OSError:
        pinned = None
    if pinned and not take_over and not Path(lay.follow_marker).exists():
        raise ShipError(push_managed(name, pinned))


def followed_repo(name: str):
    """The repository this host follows for ``name``: the source and key ``apply --follow
    --repo`` (or cloud-init) left in place."""
    from .options import ViaRepo

    lay = Layout(name)
    try:
        sources, key = Path(lay.repo_source).read_text(), Path(lay.repo_keyring).read_text()
    except OSError as e:
        raise UsageError(
            f"{name} follows no repository on this host ({e.filename} is missing); give --repo URL --repo-key FILE once"
        ) from e
    url = next((l.split(":", 1)[1].strip() for l in sources.splitlines() if l.startswith("URIs:")), "")
    return ViaRepo(url, key, sources)


def phased_candidate(name: str, repo, tmp: Path) -> tuple[str | None, str, str | None, list[str]]:
    """(version to take, "", installed, apt) or (None, why not, installed, apt): what apt's own upgrade offers this machine
    (its phasing: the bucket from /etc/machine-id), from the repository's lists alone and this
    host's preferences (the refused versions among them) less debship's pin; ``apt``, the options
    that read those lists (in ``tmp/follow``).  Not installed:
    the candidate (apt phases upgrades only).  A version halted at 0 % is never taken
    (apt's draw runs 0..100: at 0 % it would still let one machine in 101 through)."""
    lists = tmp / "follow"
    lists.mkdir()
    prefs = lists / "preferences.d"
    prefs.mkdir()
    lay = Layout(name)
    for p in sorted(Path("/etc/apt/preferences.d").glob("*")):
        if p.is_file() and str(p) != lay.apt_pin:
            (prefs / p.name).write_bytes(p.read_bytes())
    apt = [*_own_lists(repo, lists), "-o", f"Dir::Etc::PreferencesParts={prefs}"]
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}  # it turns apt's phasing off
    _apt(["apt-get", *apt, "update", "-qq"], lists, f"cannot read {repo.url}", env)
    policy = _apt(["apt-cache", *apt, "policy", name], lists, f"cannot read {repo.url}", env)
    installed = re.search(r"Installed: (\S+)", policy)
    candidate = re.search(r"Candidate: (\S+)", policy)
    if candidate is None or candidate.group(1) == "(none)":
        return None, f"{repo.url} offers no version of {name} this host may take", None, apt
    now = installed.group(1) if installed and installed.group(1) != "(none)" else None
    version = candidate.group(1)
    if now is not None:
        sim = _apt(["apt-get", *apt, "-s", "-q", "upgrade"], lists, "cannot simulate apt-get upgrade", env)
        took = [m.group(3) for m in map(_INST.match, sim.splitlines()) if m and m.group(1) == name]
        if not took:
            table = policy.split("Version table:", 1)[-1]
            rows = re.findall(r"^\s+(?:\*\*\* )?(\S+) (-?\d+)(.*)$", table, re.M)
            newest, _, rest = next(((v, p, r) for v, p, r in rows if int(p) >= 0), (now, "", ""))  # -1: refused
            if newest == now:
                why = f"{name} is at {now}, the newest version {repo.url} offers it that this host may take"
            elif "(phased" in rest:
                why = f"{name} stays at {now}: {newest} is phased and this machine's bucket is not under its percentage"
            else:
                why = f"{name} stays at {now}: apt-get upgrade keeps {newest} back (see apt-get -s upgrade)"
            return None, why, now, apt
        version = took[0]
    show = _apt(["apt-cache", *apt, "show", f"{name}={version}"], lists, f"cannot read {repo.url}", env)
    phase = re.search(r"^Phased-Update-Percentage: (\d+)", show, re.M)
    if phase is not None and int(phase.group(1)) == 0:
        return None, f"{name} {version} is halted (phased at 0 %); {name} stays at {now or 'nothing'}", now, apt
    return version, "", now, apt
