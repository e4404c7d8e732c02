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
import re
import subprocess
import tempfile
from collections.abc import Iterator
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


def from_repo(name: str, version: str, opts: ShipOptions, tmp: Path) -> Path:
    """``apt-get download name=version`` from the repository alone, with its own lists in ``tmp``."""
    repo = opts.via_repo
    key = tmp / "key.asc"
    key.write_text(repo.key)
    sources = tmp / "repo.sources"
    sources.write_text(re.sub(r"(?m)^Signed-By: .*$", f"Signed-By: {key}", repo.sources))
    (tmp / "lists" / "partial").mkdir(parents=True)
    (tmp / "archives" / "partial").mkdir(parents=True)
    apt = [
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
    for argv in (["apt-get", *apt, "update", "-qq"], ["apt-get", *apt, "download", "-qq", f"{name}={version}"]):
        r = subprocess.run(argv, cwd=tmp, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        problems = [l.strip() for l in (r.stdout + r.stderr).splitlines() if l.startswith(("E:", "Err:"))]
        if r.returncode != 0 or problems:
            why = " | ".join(problems[:2]) or f"exit {r.returncode}"
            raise ShipError(
                f"cannot get {name} {version} from {repo.url} ({why}); "
                "check the URL, --repo-key and that the repository has this version"
            )
    debs = sorted(tmp.glob(f"{name}_*.deb"))
    if not debs:
        raise ShipError(f"apt downloaded no .deb of {name} {version} from {repo.url}")
    return debs[0]
