"""A signed apt repository as data: pool layout, Packages and Release via python-debian,
signing through gpg, an atomic switch.

Layout (the one Debian's archive uses, so any apt reads it)::

    pool/<component>/<p>/<name>/<name>_<version>_<arch>.deb     p: first letter, lib + letter for lib*
    dists/<suite>/Release, InRelease, Release.gpg
    dists/<suite>/<component>/binary-<arch>/Packages{,.gz,.xz}
    dists/<suite>/<component>/binary-<arch>/by-hash/SHA256/<sha256>
    debship-archive-keyring.gpg, debship-archive-keyring.asc     the public key, for Signed-By

Every published version stays in the pool and in the index.  The signed index
says which pool files belong to the suite and what their bytes are (size,
sha256); ``DIR/.debship-pool.json`` keeps, per pool file, its control paragraph,
its rendered Packages stanza and its (size, mtime_ns) when debship last read it,
so a publish reads only the new .debs: a pool file whose size or mtime changed
is read again, and one whose bytes no longer match the signed index is refused
(``verify=True`` reads every pool file).  A missing or stale cache costs time,
never different indexes.  See docs/publish.md.  A reader never sees an index naming a
missing file nor a Release whose signature does not match: pool files first,
indexes under new content-addressed names (by-hash), then ``InRelease`` (what
apt fetches first), ``Release.gpg`` and ``Release`` each switched with
``os.replace``; the plain ``Packages`` names last.  ``DIR/.debship-publish.lock``
(flock) keeps two publishers from interleaving.  Knows nothing about SSH.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import lzma
import os
import re
import stat
import tempfile
import time
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from pathlib import Path

from debian.debfile import DebFile

import debian
from debian import deb822

from . import gpg
from .errors import RepoError
from .reproducible import epoch_from_env
from .version import keys_for

# Hosts of every one of these find the Architecture: all packages (as Debian does,
# each binary-<arch>/Packages lists them too); other architectures come from the packages.
ARCHITECTURES = ("amd64", "arm64", "armel", "armhf", "i386", "mips64el", "ppc64el", "riscv64", "s390x")
KEYRING = "debship-archive-keyring"
LOCK = ".debship-publish.lock"
CACHE = ".debship-pool.json"
# The stanzas in the cache were rendered by python-debian: another version of it renders them again.
_CACHE_FORMAT = f"debship-pool 1 python-debian {getattr(debian, '__version__', '')}"
INDEX_NAMES = ("Packages", "Packages.gz", "Packages.xz")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_-]*$")


@dataclass(frozen=True)
class PoolPackage:
    """One .deb: where it lives in the pool, its control paragraph and digests."""

    filename: str  # pool path relative to the repository root (the Packages Filename field)
    name: str
    version: str
    architecture: str
    sha256: str
    md5: str
    size: int
    control: str  # the control file's paragraph, as dpkg-deb -f prints it
    source: Path  # where its bytes are now
    stanza: str = field(default="", compare=False, repr=False)  # its Packages stanza, once rendered
    data: bytes | None = field(default=None, compare=False, repr=False)  # the bytes of a .deb read from outside
    identity: tuple | None = field(default=None, compare=False, repr=False)  # (size, mtime_ns) of the pool file


@dataclass(frozen=True)
class PublishResult:
    repo_dir: Path
    suite: str
    component: str
    added: tuple[str, ...]  # pool paths new in the index
    unchanged: tuple[str, ...]  # given .debs the index already had, byte for byte
    packages: int  # .debs in the suite's index after publishing
    architectures: tuple[str, ...]
    keyring: Path  # the binary public key, for Signed-By
    repaired: tuple[str, ...] = ()  # pool files whose damaged bytes a given .deb restored

    @property
    def changed(self) -> bool:
        return bool(self.added)


def publish(
    debs: list[Path],
    repo_dir: Path,
    suite: str = "stable",
    component: str = "main",
    *,
    sign_key: str,
    origin: str = "debship",
    label: str = "debship",
    warn=None,
    publish_secrets: bool = False,
    verify: bool = False,
    phase: int | None = None,
) -> PublishResult:
    """Add ``debs`` to ``component`` of ``suite`` in ``repo_dir`` and sign the new index.

    Publishing a .deb the index already has (same sha256) is a no-op; another .deb
    with a name, version and architecture already published is refused; so is a .deb that
    carries admitted secrets, unless ``publish_secrets``.  A signing key Debian 13's apt
    rejects is refused before anything is written; ``warn`` hears of one it will retire soon.
    The pool files already published are taken from the cache when their size and mtime
    are the ones it recorded; ``verify`` reads and hashes every one of them.  ``phase``
    (0-99): the .debs added now are published at that percentage of hosts (apt's
    ``Phased-Update-Percentage``; see ``set_phase``); versions already published keep theirs."""
    check_percent(phase)
    for what, value in (("suite", suite), ("component", component)):
        if not _NAME.match(value) or value in (".", ".."):
            raise RepoError(f"{what} {value!r} is not a plain name (letters, digits, . + _ -); choose another")
    incoming = [read_deb(Path(d), component) for d in debs]
    for message in gpg.check_key_policy(sign_key):
        if warn is not None:
            warn(message)
    if not publish_secrets:
        refuse_secrets(incoming)
    repo = Path(repo_dir)
    repo.mkdir(parents=True, exist_ok=True)
    with _locked(repo):
        dist = repo / "dists" / suite
        old = _read_release(dist)
        cache_text, cache = _read_cache(repo)
        members, damaged, read = held(repo, dist, old, cache, verify)
        incoming, repaired = _repairs(members.setdefault(component, []), incoming, damaged)
        if damaged:
            raise RepoError(_damaged_message(damaged))
        added, unchanged = merge(members[component], incoming, repo)
        keyring = repo / f"{KEYRING}.gpg"
        members = {c: [p if p.stanza else replace(p, stanza=paragraph(p)) for p in pkgs] for c, pkgs in members.items()}
        phases = read_phases(dist, old)
        if phase is not None and phase < 100:
            phases.update({p.filename: phase for p in added})
        if added or repaired or not (dist / "InRelease").exists():
            _publish_locked(repo, dist, members, added + repaired, old, suite, sign_key, origin, label, phases)
        if added or repaired or read:
            _write_cache(repo, cache_text, cache, members)
    archs = architectures(members)
    return PublishResult(
        repo,
        suite,
        component,
        tuple(p.filename for p in added),
        tuple(p.filename for p in unchanged),
        len(members[component]),
        archs,
        keyring,
        tuple(p.filename for p in repaired),
    )


def _publish_locked(repo, dist, members, added, old, suite, sign_key, origin, label, phases=None) -> None:
    public = gpg.export_public(sign_key)  # fails early, before anything is written
    for pkg in added:
        _copy_into_pool(pkg, repo / pkg.filename)
        _copy_signature(pkg, repo / pkg.filename)
    indexes = build_indexes(members, architectures(members), phases)
    written: dict[str, Path] = {}  # the arch indexes are mostly the same bytes: one file, linked
    for rel, blob in indexes.items():
        _write_by_hash(dist / rel, blob, written)
    release = release_text(
        indexes, suite, architectures(members), sorted(members), origin, label, _release_date()
    ).encode()
    inrelease, detached = gpg.clearsign(release, sign_key), gpg.detach_sign(release, sign_key)
    _write_if_changed(repo / f"{KEYRING}.gpg", public)
    _write_if_changed(repo / f"{KEYRING}.asc", gpg.armored_key(public, "the signing key").encode())
    # The switch: apt fetches InRelease first; Release.gpg then Release, back to back (see README).
    _write_atomic(dist / "InRelease", inrelease)
    _write_atomic(dist / "Release.gpg", detached)
    _write_atomic(dist / "Release", release)
    for rel, blob in indexes.items():
        _write_atomic(dist / rel, blob, written.get(hashlib.sha256(blob).hexdigest()))
    _prune_by_hash(dist, set(_hashes(release)) | set(_hashes(old)))


def read_deb(path: Path, component: str) -> PoolPackage:
    """A .deb's control paragraph and digests, and where it goes in ``component``'s pool."""
    try:
        data = path.read_bytes()  # read once: hashed, parsed and copied into the pool from memory
        control = DebFile(fileobj=io.BytesIO(data)).debcontrol()
    except OSError as e:
        raise RepoError(f"{path}: cannot read the package ({e.strerror or e}); check the path") from e
    except Exception as e:  # python-debian's ArError/DebError and tarfile errors for a broken file
        raise RepoError(f"{path} is not a readable .deb ({e}); rebuild it") from e
    fields = {k: control.get(k, "").strip() for k in ("Package", "Version", "Architecture")}
    missing = [k for k, v in fields.items() if not v]
    if missing:
        raise RepoError(f"{path}: the control file has no {', '.join(missing)}; rebuild the package")
    name, version, arch = fields["Package"], fields["Version"], fields["Architecture"]
    return PoolPackage(
        pool_path(component, name, version, arch),
        name,
        version,
        arch,
        hashlib.sha256(data).hexdigest(),
        hashlib.md5(data).hexdigest(),
        len(data),
        control.dump(),
        path,
        data=data,
    )


def refuse_secrets(pkgs: list[PoolPackage]) -> None:
    """A repository is readable by every host and everyone else who reaches its URL: a package
    with an admitted secret (a file installed 0600) would hand the secret to all of them."""
    from .debsecrets import admitted_secrets

    for pkg in pkgs:
        found = admitted_secrets(pkg.source)
        if found:
            raise RepoError(
                f"{pkg.source}: carries admitted secrets ({', '.join(found)}); anyone who can reach "
                "the repository can download the package and read them: ship it to the hosts "
                "directly, or pass --publish-secrets if publishing them is meant"
            )


def pool_path(component: str, name: str, version: str, arch: str) -> str:
    """``pool/<component>/<p>/<name>/<name>_<version without epoch>_<arch>.deb``."""
    prefix = name[:4] if name.startswith("lib") and len(name) > 3 else name[0]
    return f"pool/{component}/{prefix}/{name}/{name}_{version.split(':', 1)[-1]}_{arch}.deb"


def merge(members: list[PoolPackage], incoming: list[PoolPackage], repo: Path):
    """Add ``incoming`` to ``members`` (in place); return (added, unchanged).

    Refuses another .deb under a name, version and architecture already published,
    or a pool file (left by an interrupted publish) with other contents."""
    by_key = {(p.name, p.version, p.architecture): p for p in members}
    added, unchanged = [], []
    for pkg in incoming:
        known = by_key.get((pkg.name, pkg.version, pkg.architecture))
        if known is not None:
            if known.sha256 != pkg.sha256:
                raise RepoError(
                    f"{pkg.source}: {pkg.name} {pkg.version} ({pkg.architecture}) is already "
                    f"published with other contents ({known.filename}); give the package a new version"
                )
            unchanged.append(pkg)
            continue
        target = repo / pkg.filename
        if target.exists() and _sha256(target) != pkg.sha256:
            raise RepoError(
                f"{pkg.source}: {pkg.filename} exists with other contents (left by an interrupted "
                "publish?); give the package a new version or remove that file"
            )
        by_key[(pkg.name, pkg.version, pkg.architecture)] = pkg
        members.append(pkg)
        added.append(pkg)
    return added, unchanged


def current_members(repo: Path, dist: Path, release: deb822.Release | None) -> dict[str, list[PoolPackage]]:
    """The pool files each component of the suite lists now, each read again from the pool
    (a file gone from the pool drops out; one whose bytes changed is refused)."""
    members, damaged, _ = held(repo, dist, release, {}, verify=True)
    if damaged:
        raise RepoError(_damaged_message(damaged))
    return members


def held(repo: Path, dist: Path, release: deb822.Release | None, cache: dict, verify: bool = False):
    """(members, damaged, read): the pool files each component of the suite lists now, and those
    whose bytes no longer are the ones the signed index lists (pool path -> (published
    sha256, what is wrong)), and how many pool files were read.  A pool file is read only
    when ``verify`` or when the cache has no entry for it with its current size and mtime
    and the index's sha256; a file gone from the pool drops out."""
    members: dict[str, list[PoolPackage]] = {}
    damaged: dict[str, tuple[str, str]] = {}
    read = 0
    if release is None:
        return members, damaged, read
    root = str(repo)
    for component in release.get("Components", "").split():
        seen: dict[str, PoolPackage] = {}
        for text in _component_indexes(dist, release, component):
            for filename, size, sha256 in _listed(text):
                if filename in seen or filename in damaged:
                    continue
                try:
                    st = os.stat(os.path.join(root, filename))
                except (FileNotFoundError, NotADirectoryError):
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue
                path = repo / filename
                pkg = None if verify else _cached(cache.get(filename), filename, st, size, sha256, path)
                if pkg is None:
                    read += 1
                    try:
                        pkg = read_deb(path, component)
                    except RepoError as e:
                        damaged[filename] = (sha256, f"now not a readable .deb: {e}")
                        continue
                    if pkg.sha256 != sha256:
                        damaged[filename] = (sha256, f"its sha256 is now {pkg.sha256}")
                        continue
                    if pkg.filename != filename:
                        damaged[filename] = (sha256, f"it now holds {pkg.filename}")
                        continue
                    pkg = replace(pkg, identity=(st.st_size, st.st_mtime_ns))
                seen[filename] = pkg
        members[component] = list(seen.values())
    return members, damaged, read


def _listed(text: str):
    """(Filename, Size, SHA256) of each stanza of a Packages file (the fields debship writes)."""
    for stanza in text.split("\n\n"):
        got = {}
        for line in stanza.splitlines():
            key, sep, value = line.partition(": ")
            if sep and key in ("Filename", "Size", "SHA256"):
                got[key] = value.strip()
        if "Filename" in got:
            yield got["Filename"], int(got.get("Size") or -1), got.get("SHA256", "")


def _cached(
    entry: dict | None, filename: str, st: os.stat_result, size: int, sha256: str, path: Path
) -> PoolPackage | None:
    """The cache's record of a pool file, if the file still has the size and mtime it had
    when debship read it and the record has the digest the signed index lists."""
    if (
        entry is None
        or entry.get("size") != st.st_size
        or entry.get("mtime_ns") != st.st_mtime_ns
        or entry.get("size") != size
        or entry.get("sha256") != sha256
    ):
        return None
    try:
        return PoolPackage(
            filename,
            entry["name"],
            entry["version"],
            entry["architecture"],
            sha256,
            entry["md5"],
            size,
            entry["control"],
            path,
            stanza=entry.get("stanza", ""),
            identity=(st.st_size, st.st_mtime_ns),
        )
    except (KeyError, TypeError):
        return None


def _repairs(members: list[PoolPackage], incoming: list[PoolPackage], damaged: dict):
    """Take from ``incoming`` each .deb with the bytes a damaged pool file was published
    with: it restores that file.  Returns (the rest of incoming, the restoring ones)."""
    rest, repaired = [], []
    for pkg in incoming:
        published = damaged.get(pkg.filename)
        if published is not None and published[0] == pkg.sha256:
            del damaged[pkg.filename]
            members.append(pkg)
            repaired.append(pkg)
        else:
            rest.append(pkg)
    return rest, repaired


def _damaged_message(damaged: dict) -> str:
    filename, (sha256, what) = sorted(damaged.items())[0]
    more = f" (and {len(damaged) - 1} more pool file(s))" if len(damaged) > 1 else ""
    return (
        f"{filename} is not the file the signed index lists (sha256 {sha256}; {what}){more}; "
        "publish the original .deb again with --verify to restore it, or delete the pool file to drop "
        "that version"
    )


def _read_cache(repo: Path) -> tuple[bytes, dict]:
    """The cache's bytes as read, and its entries by pool path ({} when missing, damaged or
    written by another format)."""
    try:
        text = (repo / CACHE).read_bytes()
        data = json.loads(text)
    except (OSError, ValueError):
        return b"", {}
    if not isinstance(data, dict) or data.get("format") != _CACHE_FORMAT or not isinstance(data.get("files"), dict):
        return text, {}
    return text, data["files"]


def _write_cache(repo: Path, before: bytes, cache: dict, members: dict[str, list[PoolPackage]]) -> None:
    """Record what every pool file of ``members`` held, keeping other suites' entries
    whose file is still there; written only when it changed (a no-op writes nothing)."""
    files, root = {}, str(repo)
    mine = {p.filename: p for pkgs in members.values() for p in pkgs}
    for filename, entry in cache.items():
        try:
            if (
                filename not in mine
                and isinstance(entry, dict)
                and os.stat(os.path.join(root, filename)).st_mtime_ns == entry.get("mtime_ns")
            ):
                files[filename] = entry
        except OSError:
            continue
    for p in mine.values():
        if p.identity is not None:
            size, mtime_ns = p.identity
        else:  # written by this publish
            try:
                st = os.stat(os.path.join(root, p.filename))
            except OSError:
                continue
            size, mtime_ns = st.st_size, st.st_mtime_ns
        files[p.filename] = {
            "size": size,
            "mtime_ns": mtime_ns,
            "sha256": p.sha256,
            "md5": p.md5,
            "name": p.name,
            "version": p.version,
            "architecture": p.architecture,
            "control": p.control,
            "stanza": p.stanza or paragraph(p),
        }
    text = json.dumps({"format": _CACHE_FORMAT, "files": dict(sorted(files.items()))}, separators=(",", ":")).encode()
    if text != before:
        _write_atomic(repo / CACHE, text)


def _component_indexes(dist: Path, release: deb822.Release, component: str) -> list[str]:
    """The distinct Packages texts the Release names for ``component``, by hash, so that
    they match the Release (the binary-<arch> ones are mostly the same text)."""
    texts = {}
    for entry in release.get("SHA256", []):
        name = entry["name"]
        if name.startswith(f"{component}/binary-") and name.endswith("/Packages") and entry["sha256"] not in texts:
            index = dist / name
            blob = index.parent / "by-hash" / "SHA256" / entry["sha256"]
            data = blob.read_bytes() if blob.exists() else (index.read_bytes() if index.exists() else b"")
            texts[entry["sha256"]] = data.decode()
    return list(texts.values())


def architectures(members: dict[str, list[PoolPackage]]) -> tuple[str, ...]:
    found = {p.architecture for pkgs in members.values() for p in pkgs} - {"all"}
    return tuple(sorted(set(ARCHITECTURES) | found))


def paragraph(pkg: PoolPackage) -> str:
    """A package's stanza of a Packages file: its control paragraph plus Filename, Size, MD5sum, SHA256."""
    para = deb822.Packages(pkg.control)
    para["Filename"], para["Size"] = pkg.filename, str(pkg.size)
    para["MD5sum"], para["SHA256"] = pkg.md5, pkg.sha256
    return para.dump()


def packages_index(pkgs: list[PoolPackage], rendered: dict[str, str] | None = None) -> str:
    """A Packages file of ``pkgs`` (``rendered``: stanzas already made, by pool path)."""
    rendered = rendered or {}
    version = keys_for({p.version for p in pkgs})  # dpkg's order, one key per version
    ordered = sorted(pkgs, key=lambda p: (p.name, version(p.version), p.architecture))
    return "\n".join(rendered.get(p.filename) or paragraph(p) for p in ordered)


PHASE_FIELD = "Phased-Update-Percentage"


def check_percent(percent: int | None) -> None:
    if percent is not None and not (isinstance(percent, int) and 0 <= percent <= 100):
        raise RepoError(f"phase {percent!r} is not a percentage of hosts; give a whole number from 0 to 100")


def with_phase(stanza: str, percent: int | None) -> str:
    """``stanza`` with ``Phased-Update-Percentage: percent`` (none for None or 100: every host)."""
    if percent is None or percent >= 100:
        return stanza
    return stanza.rstrip("\n") + f"\n{PHASE_FIELD}: {percent}\n"


def read_phases(dist: Path, release: deb822.Release | None) -> dict[str, int]:
    """The phase of each pool file the suite's signed index lists with one (pool path -> %)."""
    phases: dict[str, int] = {}
    if release is None:
        return phases
    for component in release.get("Components", "").split():
        for text in _component_indexes(dist, release, component):
            for stanza in text.split("\n\n"):
                got = dict(
                    line.split(": ", 1) for line in stanza.splitlines() if line.startswith(("Filename: ", PHASE_FIELD))
                )
                if "Filename" in got and PHASE_FIELD in got:
                    with contextlib.suppress(ValueError):
                        phases[got["Filename"].strip()] = int(got[PHASE_FIELD])
    return phases


@dataclass(frozen=True)
class PhaseResult:
    name: str
    version: str
    before: int  # the percentage before (100: every host)
    after: int
    files: tuple[str, ...]  # the pool files of that version (one per architecture)

    @property
    def changed(self) -> bool:
        return self.before != self.after


def set_phase(
    repo_dir: Path,
    name: str,
    version: str,
    percent: int,
    suite: str = "stable",
    component: str = "main",
    *,
    sign_key: str,
    origin: str = "debship",
    label: str = "debship",
) -> PhaseResult:
    """Publish ``name`` ``version`` to ``percent`` of the hosts that follow the repository
    (0: halt, 100: complete, the field removed), re-rendering and re-signing the suite's
    indexes with publish's lock, atomic switch and dates.  Nothing is written when the
    version already has that percentage."""
    check_percent(percent)
    repo = Path(repo_dir)
    dist = repo / "dists" / suite
    if not (dist / "InRelease").exists() and not (dist / "Release").exists():
        raise RepoError(f"{repo}: no suite {suite!r} published there; check --repo and --suite")
    with _locked(repo):
        old = _read_release(dist)
        cache_text, cache = _read_cache(repo)
        members, damaged, read = held(repo, dist, old, cache)
        if damaged:
            raise RepoError(_damaged_message(damaged))
        pkgs = members.get(component)
        if pkgs is None:
            raise RepoError(f"{suite} has no component {component!r}; check --component")
        files = tuple(sorted(p.filename for p in pkgs if p.name == name and p.version == version))
        if not files:
            known = sorted({p.version for p in pkgs if p.name == name}, key=keys_for({p.version for p in pkgs}))
            listed = f"published versions: {', '.join(known)}" if known else f"no package {name} is published there"
            raise RepoError(f"{name} {version} is not published in {suite}/{component} ({listed}); check the version")
        phases = read_phases(dist, old)
        olds = [phases.get(f, 100) for f in files]
        before = min(olds)
        for f in files:
            if percent >= 100:
                phases.pop(f, None)
            else:
                phases[f] = percent
        members = {c: [p if p.stanza else replace(p, stanza=paragraph(p)) for p in ps] for c, ps in members.items()}
        if any(o != percent for o in olds):
            _publish_locked(repo, dist, members, [], old, suite, sign_key, origin, label, phases)
        if read:
            _write_cache(repo, cache_text, cache, members)
    return PhaseResult(name, version, before, percent, files)


def build_indexes(
    members: dict[str, list[PoolPackage]], archs: tuple[str, ...], phases: dict[str, int] | None = None
) -> dict[str, bytes]:
    """Every index of the suite, by path under ``dists/<suite>``: binary-all (the
    Architecture: all packages) and binary-<arch> (that arch's plus the all ones).
    Each distinct list is rendered and compressed once (with only Architecture: all
    packages, every binary-<arch> index is the same text).  ``phases``: pool path ->
    percentage, written as that stanza's ``Phased-Update-Percentage``."""
    indexes = {}
    phases = phases or {}
    for component, pkgs in sorted(members.items()):
        key = keys_for({p.version for p in pkgs})
        ordered = sorted(pkgs, key=lambda p: (p.name, key(p.version), p.architecture))
        rendered = {p.filename: with_phase(p.stanza or paragraph(p), phases.get(p.filename)) for p in ordered}
        done: dict[tuple, tuple[bytes, bytes, bytes]] = {}
        for arch in ("all", *archs):
            chosen = tuple(p.filename for p in ordered if p.architecture in (arch, "all"))
            if chosen not in done:
                text = "\n".join(rendered[f] for f in chosen).encode()
                done[chosen] = (text, _gzip(text), lzma.compress(text, preset=6))
            base = f"{component}/binary-{arch}/Packages"
            indexes[base], indexes[base + ".gz"], indexes[base + ".xz"] = done[chosen]
    return indexes


def _gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0, filename="") as f:
        f.write(data)
    return buf.getvalue()


def release_text(
    indexes: dict[str, bytes],
    suite: str,
    archs: tuple[str, ...],
    components: list[str],
    origin: str,
    label: str,
    date: str,
) -> str:
    """The Release file: what the suite is, and the size and digests of every index."""
    rel = deb822.Release()
    rel["Origin"], rel["Label"], rel["Suite"], rel["Codename"] = origin, label, suite, suite
    rel["Date"] = date
    rel["Architectures"] = " ".join(("all", *archs))
    rel["Components"] = " ".join(components)
    rel["Description"] = f"{label} packages published by debship"
    rel["Acquire-By-Hash"] = "yes"
    # The binary-<arch> indexes list the Architecture: all packages too: apt need not fetch binary-all.
    rel["No-Support-for-Architecture-all"] = "Packages"
    for key, algo in (("MD5Sum", "md5"), ("SHA256", "sha256")):
        rel[key] = [
            {
                algo if algo == "sha256" else "md5sum": hashlib.new(algo, blob).hexdigest(),
                "size": str(len(blob)),
                "name": name,
            }
            for name, blob in sorted(indexes.items())
        ]
    return rel.dump()


def _release_date() -> str:
    """RFC 2822 date, UTC: SOURCE_DATE_EPOCH when set (a reproducible Release), else now."""
    epoch = epoch_from_env(RepoError)
    return formatdate(epoch if epoch is not None else time.time(), usegmt=True)


def _read_release(dist: Path) -> deb822.Release | None:
    """The suite's current Release, from InRelease (what apt reads, and the first file switched;
    python-debian drops the signature) or else Release."""
    for name in ("InRelease", "Release"):
        try:
            return deb822.Release((dist / name).read_text())
        except FileNotFoundError:
            continue
    return None


def _hashes(release) -> list[str]:
    if release is None:
        return []
    if isinstance(release, bytes):
        release = deb822.Release(release.decode())
    return [entry["sha256"] for entry in release.get("SHA256", [])]


def _write_by_hash(index: Path, blob: bytes, written: dict[str, Path]) -> None:
    """Write ``blob`` under its sha256 (``written``: the files of this publish by sha256, to link to)."""
    digest = hashlib.sha256(blob).hexdigest()
    target = index.parent / "by-hash" / "SHA256" / digest
    if not target.exists():
        _write_atomic(target, blob, written.get(digest))
    written.setdefault(digest, target)


def _write_if_changed(path: Path, data: bytes) -> None:
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        pass
    _write_atomic(path, data)


def _prune_by_hash(dist: Path, keep: set[str]) -> None:
    """Drop by-hash files that neither the new nor the previous Release names: a reader
    that fetched the previous InRelease can still fetch its indexes."""
    for path in dist.glob("*/binary-*/by-hash/SHA256/*"):
        if path.name not in keep and not path.name.startswith("."):
            path.unlink()


def _copy_into_pool(pkg: PoolPackage, target: Path) -> None:
    """Write the .deb into the pool, unless it is there with these bytes already (left by an
    interrupted publish, checked by merge); a damaged pool file is replaced."""
    if target.exists() and target.stat().st_size == pkg.size and _sha256(target) == pkg.sha256:
        return
    _write_atomic(target, pkg.data if pkg.data is not None else pkg.source.read_bytes())


def _copy_signature(pkg: PoolPackage, target: Path) -> None:
    """The package's detached signature (``debship sign``), if it has one, beside it in the pool:
    hosts that trust the package key fetch ``<pool file>.sig`` and check it (docs/security.md)."""
    from .pkgsig import sig_path

    sig = sig_path(pkg.source)
    if sig.is_file():
        _write_atomic(sig_path(target), sig.read_bytes())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_atomic(path: Path, data: bytes, same: Path | None = None) -> None:
    """Write to a hidden temp file next to ``path``, flush it to disk, rename it into place.
    ``same``: a file of this publish already on disk with these bytes, hard-linked instead."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if same is not None:
        tmp = str(path.parent / f".{path.name}.{os.getpid()}.link.tmp")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        try:
            os.link(same, tmp)
        except OSError:  # another filesystem, or links not allowed: write the bytes
            return _write_atomic(path, data)
        try:
            _later_than(path, tmp)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        _later_than(path, tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _later_than(old: Path, new: str) -> None:
    """Date ``new`` at least a whole second after the file it replaces.  Web servers send
    Last-Modified in whole seconds and apt, holding the old InRelease, asks If-Modified-Since:
    a second publish within the same second would be answered 304 Not Modified, and clients
    would keep the old indexes until the next publish."""
    try:
        before = int(os.stat(old).st_mtime)
    except FileNotFoundError:
        return
    if int(os.stat(new).st_mtime) <= before:
        os.utime(new, (before + 1, before + 1))


@contextlib.contextmanager
def _locked(repo: Path):
    """Hold ``DIR/.debship-publish.lock`` (flock): a second publisher waits for the first."""
    with open(repo / LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def sources_deb822(url: str, suite: str, component: str, keyring_path: str, name: str = "debship") -> str:
    """The deb822 stanza of ``/etc/apt/sources.list.d/<name>.sources`` for this repository."""
    para = deb822.Deb822()
    para["Types"], para["URIs"], para["Suites"] = "deb", url, suite
    para["Components"], para["Signed-By"] = component, keyring_path
    return f"# {name}: signed apt repository published by debship\n" + para.dump()
