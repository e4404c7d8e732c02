"""A signed apt repository as data: pool layout, Packages and Release via python-debian,
signing through gpg, an atomic switch.

Layout (the one Debian's archive uses, so any apt reads it)::

    pool/<component>/<p>/<name>/<name>_<version>_<arch>.deb     p: first letter, lib + letter for lib*
    dists/<suite>/Release, InRelease, Release.gpg
    dists/<suite>/<component>/binary-<arch>/Packages{,.gz,.xz}
    dists/<suite>/<component>/binary-<arch>/by-hash/SHA256/<sha256>
    debship-archive-keyring.gpg, debship-archive-keyring.asc     the public key, for Signed-By

Every published version stays in the pool and in the index.  The indexes are
rebuilt from the pool files at each publish (the previous index only says
which pool files belong to the suite).  A reader never sees an index naming a
missing file nor a Release whose signature does not match: pool files first,
indexes under new content-addressed names (by-hash), then ``InRelease`` (what
apt fetches first), ``Release.gpg`` and ``Release`` each switched with
``os.replace``; the plain ``Packages`` names last.  ``DIR/.debship-publish.lock``
(flock) keeps two publishers from interleaving.  Knows nothing about SSH.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import gzip
import hashlib
import io
import lzma
import os
import re
import tempfile
import time
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

from debian import deb822
from debian.debfile import DebFile

from . import gpg
from .errors import RepoError
from .version import compare

# Hosts of every one of these find the Architecture: all packages (as Debian does,
# each binary-<arch>/Packages lists them too); other architectures come from the packages.
ARCHITECTURES = ("amd64", "arm64", "armel", "armhf", "i386", "mips64el", "ppc64el", "riscv64", "s390x")
KEYRING = "debship-archive-keyring"
LOCK = ".debship-publish.lock"
INDEX_NAMES = ("Packages", "Packages.gz", "Packages.xz")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+_-]*$")


@dataclass(frozen=True)
class PoolPackage:
    """One .deb: where it lives in the pool, its control paragraph and digests."""

    filename: str        # pool path relative to the repository root (the Packages Filename field)
    name: str
    version: str
    architecture: str
    sha256: str
    md5: str
    size: int
    control: str         # the control file's paragraph, as dpkg-deb -f prints it
    source: Path         # where its bytes are now


@dataclass(frozen=True)
class PublishResult:
    repo_dir: Path
    suite: str
    component: str
    added: tuple[str, ...]        # pool paths new in the index
    unchanged: tuple[str, ...]    # given .debs the index already had, byte for byte
    packages: int                 # .debs in the suite's index after publishing
    architectures: tuple[str, ...]
    keyring: Path                 # the binary public key, for Signed-By

    @property
    def changed(self) -> bool:
        return bool(self.added)


def publish(debs: list[Path], repo_dir: Path, suite: str = "stable", component: str = "main", *,
            sign_key: str, origin: str = "debship", label: str = "debship", warn=None,
            publish_secrets: bool = False) -> PublishResult:
    """Add ``debs`` to ``component`` of ``suite`` in ``repo_dir`` and sign the new index.

    Publishing a .deb the index already has (same sha256) is a no-op; another .deb
    with a name, version and architecture already published is refused; so is a .deb that
    carries admitted secrets, unless ``publish_secrets``.  A signing key Debian 13's apt
    rejects is refused before anything is written; ``warn`` hears of one it will retire soon."""
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
        members = current_members(repo, dist, old)
        added, unchanged = merge(members.setdefault(component, []), incoming, repo)
        keyring = repo / f"{KEYRING}.gpg"
        if added or not (dist / "InRelease").exists():
            _publish_locked(repo, dist, members, added, old, suite, sign_key, origin, label)
    archs = architectures(members)
    return PublishResult(repo, suite, component, tuple(p.filename for p in added),
                         tuple(p.filename for p in unchanged), len(members[component]), archs, keyring)


def _publish_locked(repo, dist, members, added, old, suite, sign_key, origin, label) -> None:
    public = gpg.export_public(sign_key)  # fails early, before anything is written
    for pkg in added:
        _copy_into_pool(pkg, repo / pkg.filename)
        _copy_signature(pkg, repo / pkg.filename)
    indexes = build_indexes(members, architectures(members))
    for rel, blob in indexes.items():
        _write_by_hash(dist / rel, blob)
    release = release_text(indexes, suite, architectures(members), sorted(members), origin, label,
                           _release_date()).encode()
    inrelease, detached = gpg.clearsign(release, sign_key), gpg.detach_sign(release, sign_key)
    _write_atomic(repo / f"{KEYRING}.gpg", public)
    _write_atomic(repo / f"{KEYRING}.asc", gpg.armored_key(public, "the signing key").encode())
    # The switch: apt fetches InRelease first; Release.gpg then Release, back to back (see README).
    _write_atomic(dist / "InRelease", inrelease)
    _write_atomic(dist / "Release.gpg", detached)
    _write_atomic(dist / "Release", release)
    for rel, blob in indexes.items():
        _write_atomic(dist / rel, blob)
    _prune_by_hash(dist, set(_hashes(release)) | set(_hashes(old)))


def read_deb(path: Path, component: str) -> PoolPackage:
    """A .deb's control paragraph and digests, and where it goes in ``component``'s pool."""
    try:
        control = DebFile(str(path)).debcontrol()
        data = path.read_bytes()
    except OSError as e:
        raise RepoError(f"{path}: cannot read the package ({e.strerror or e}); check the path") from e
    except Exception as e:  # python-debian's ArError/DebError and tarfile errors for a broken file
        raise RepoError(f"{path} is not a readable .deb ({e}); rebuild it") from e
    fields = {k: control.get(k, "").strip() for k in ("Package", "Version", "Architecture")}
    missing = [k for k, v in fields.items() if not v]
    if missing:
        raise RepoError(f"{path}: the control file has no {', '.join(missing)}; rebuild the package")
    name, version, arch = fields["Package"], fields["Version"], fields["Architecture"]
    return PoolPackage(pool_path(component, name, version, arch), name, version, arch,
                       hashlib.sha256(data).hexdigest(), hashlib.md5(data).hexdigest(), len(data),
                       control.dump(), path)


def refuse_secrets(pkgs: list[PoolPackage]) -> None:
    """A repository is readable by every host and everyone else who reaches its URL: a package
    with an admitted secret (a file installed 0600) would hand the secret to all of them."""
    from .debsecrets import admitted_secrets
    for pkg in pkgs:
        found = admitted_secrets(pkg.source)
        if found:
            raise RepoError(f"{pkg.source}: carries admitted secrets ({', '.join(found)}); anyone who can reach "
                            "the repository can download the package and read them: ship it to the hosts "
                            "directly, or pass --publish-secrets if publishing them is meant")


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
                raise RepoError(f"{pkg.source}: {pkg.name} {pkg.version} ({pkg.architecture}) is already "
                                f"published with other contents ({known.filename}); give the package a new version")
            unchanged.append(pkg)
            continue
        target = repo / pkg.filename
        if target.exists() and _sha256(target) != pkg.sha256:
            raise RepoError(f"{pkg.source}: {pkg.filename} exists with other contents (left by an interrupted "
                            "publish?); give the package a new version or remove that file")
        by_key[(pkg.name, pkg.version, pkg.architecture)] = pkg
        members.append(pkg)
        added.append(pkg)
    return added, unchanged


def current_members(repo: Path, dist: Path, release: deb822.Release | None) -> dict[str, list[PoolPackage]]:
    """The pool files each component of the suite lists now, read again from the pool
    (control and digests come from the files; a file gone from the pool drops out)."""
    members: dict[str, list[PoolPackage]] = {}
    if release is None:
        return members
    for component in release.get("Components", "").split():
        seen: dict[str, PoolPackage] = {}
        for text in _component_indexes(dist, release, component):
            for para in deb822.Packages.iter_paragraphs(text, fields=["Filename"], use_apt_pkg=False):
                path = repo / para["Filename"]
                if para["Filename"] not in seen and path.is_file():
                    seen[para["Filename"]] = read_deb(path, component)
        members[component] = list(seen.values())
    return members


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


def _order(a: PoolPackage, b: PoolPackage) -> int:
    return ((a.name > b.name) - (a.name < b.name) or compare(a.version, b.version)
            or (a.architecture > b.architecture) - (a.architecture < b.architecture))


def paragraph(pkg: PoolPackage) -> str:
    """A package's stanza of a Packages file: its control paragraph plus Filename, Size, MD5sum, SHA256."""
    para = deb822.Packages(pkg.control)
    para["Filename"], para["Size"] = pkg.filename, str(pkg.size)
    para["MD5sum"], para["SHA256"] = pkg.md5, pkg.sha256
    return para.dump()


def packages_index(pkgs: list[PoolPackage], rendered: dict[str, str] | None = None) -> str:
    """A Packages file of ``pkgs`` (``rendered``: stanzas already made, by pool path)."""
    rendered = rendered or {}
    return "\n".join(rendered.get(p.filename) or paragraph(p)
                     for p in sorted(pkgs, key=functools.cmp_to_key(_order)))


def build_indexes(members: dict[str, list[PoolPackage]], archs: tuple[str, ...]) -> dict[str, bytes]:
    """Every index of the suite, by path under ``dists/<suite>``: binary-all (the
    Architecture: all packages) and binary-<arch> (that arch's plus the all ones)."""
    indexes = {}
    for component, pkgs in sorted(members.items()):
        rendered = {p.filename: paragraph(p) for p in pkgs}
        for arch in ("all", *archs):
            chosen = [p for p in pkgs if p.architecture in (arch, "all")]
            text = packages_index(chosen, rendered).encode()
            base = f"{component}/binary-{arch}/Packages"
            indexes[base] = text
            indexes[base + ".gz"] = _gzip(text)
            indexes[base + ".xz"] = lzma.compress(text, preset=6)
    return indexes


def _gzip(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0, filename="") as f:
        f.write(data)
    return buf.getvalue()


def release_text(indexes: dict[str, bytes], suite: str, archs: tuple[str, ...], components: list[str],
                 origin: str, label: str, date: str) -> str:
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
    for field, algo in (("MD5Sum", "md5"), ("SHA256", "sha256")):
        rel[field] = [{algo if algo == "sha256" else "md5sum": hashlib.new(algo, blob).hexdigest(),
                       "size": str(len(blob)), "name": name} for name, blob in sorted(indexes.items())]
    return rel.dump()


def _release_date() -> str:
    """RFC 2822 date, UTC: SOURCE_DATE_EPOCH when set (a reproducible Release), else now."""
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env is not None and not env.isdigit():
        raise RepoError(f"SOURCE_DATE_EPOCH={env!r} is not a whole number of seconds; unset or fix it")
    return formatdate(int(env) if env is not None else time.time(), usegmt=True)


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


def _write_by_hash(index: Path, blob: bytes) -> None:
    target = index.parent / "by-hash" / "SHA256" / hashlib.sha256(blob).hexdigest()
    if not target.exists():
        _write_atomic(target, blob)


def _prune_by_hash(dist: Path, keep: set[str]) -> None:
    """Drop by-hash files that neither the new nor the previous Release names: a reader
    that fetched the previous InRelease can still fetch its indexes."""
    for path in dist.glob("*/binary-*/by-hash/SHA256/*"):
        if path.name not in keep and not path.name.startswith("."):
            path.unlink()


def _copy_into_pool(pkg: PoolPackage, target: Path) -> None:
    if target.exists():  # same bytes (checked by merge): left by an interrupted publish
        return
    _write_atomic(target, pkg.source.read_bytes())


def _copy_signature(pkg: PoolPackage, target: Path) -> None:
    """The package's detached signature (``debship sign``), if it has one, beside it in the pool:
    hosts that trust the package key fetch ``<pool file>.sig`` and check it (docs/security.md)."""
    from .pkgsig import sig_path
    sig = sig_path(pkg.source)
    if sig.is_file():
        _write_atomic(sig_path(target), sig.read_bytes())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a hidden temp file next to ``path``, flush it to disk, rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
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
