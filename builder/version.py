"""Debian versions: validation, dpkg's ordering, and conversion from PEP 440,
semver and ``git describe`` output.

Everything here is pure except :func:`git_version` at the bottom.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from builder.errors import ConfigError

_DIGITS = "0123456789"
_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_REVISION_CHARS = frozenset(_DIGITS + _LETTERS + ".+~")
_EPOCH_MAX = 2**31 - 1  # dpkg stores the epoch in an int
_CONFIG_FIX = "set [tool.debship].version to something like 1.2.3"

# The patterns stay text: ``re`` compiles each (and keeps it) the first time it is used,
# and a build whose version needs no converting uses none of them.
# PEP 440's VERSION_PATTERN (from `packaging`), without the leading "v".
_PEP440 = r"""(?xi)(?:(?P<epoch>[0-9]+)!)?(?P<release>[0-9]+(?:\.[0-9]+)*)
    (?P<pre>[-_.]?(?P<pre_l>alpha|a|beta|b|preview|pre|c|rc)[-_.]?(?P<pre_n>[0-9]+)?)?
    (?P<post>-(?P<post_n1>[0-9]+)|[-_.]?(?P<post_l>post|rev|r)[-_.]?(?P<post_n2>[0-9]+)?)?
    (?P<dev>[-_.]?(?P<dev_l>dev)[-_.]?(?P<dev_n>[0-9]+)?)?
    (?:\+(?P<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?"""
_PRE_LABELS = {"alpha": "a", "beta": "b", "c": "rc", "pre": "rc", "preview": "rc"}
_IDENT = r"[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*"
_SEMVER = rf"(?P<core>\d+\.\d+\.\d+)-(?P<pre>{_IDENT})(?:\+(?P<build>{_IDENT}))?"
_PEP_MARKER = r"(?i)(?:dev|post|rev|r)\d*"
_DESCRIBE = r"(?P<tag>.+)-(?P<n>\d+)-g(?P<hash>[0-9a-f]{4,})(?P<dirty>-dirty)?"
_BARE_HASH = r"(?P<hash>[0-9a-f]{4,})(?P<dirty>-dirty)?"
_RUN = r"([^0-9]*)([0-9]*)"  # a non-digit run, then a digit run


def _split(v: str) -> tuple[str, str, str, bool, bool]:
    """(epoch, upstream, revision, has_epoch, has_revision), split like dpkg."""
    epoch, colon, rest = v.partition(":")
    if not colon:
        epoch, rest = "", v
    upstream, hyphen, revision = rest.rpartition("-")
    if not hyphen:
        upstream, revision = rest, ""
    return epoch, upstream, revision, bool(colon), bool(hyphen)


def _problem(v: str) -> str | None:
    """Why ``v`` is not a valid Debian version, or None if it is."""
    if not v:
        return "it is empty"
    if any(c.isspace() for c in v):
        return "it contains whitespace"
    epoch, upstream, revision, has_epoch, has_rev = _split(v)
    if has_epoch and not (epoch and all(c in _DIGITS for c in epoch)):
        return f"epoch {epoch!r} before ':' must be a number"
    if has_epoch and int(epoch) > _EPOCH_MAX:
        return f"epoch {epoch} is too large"
    if has_rev and not revision:
        return "revision after the last '-' is empty"
    if not upstream or upstream[0] not in _DIGITS:
        return "upstream part must start with a digit"
    allowed = _REVISION_CHARS | set("-" if has_rev else "") | set(":" if has_epoch else "")
    bad = [c for c in upstream if c not in allowed]
    if bad:
        return f"character {bad[0]!r} is not allowed in the upstream part"
    bad = [c for c in revision if c not in _REVISION_CHARS]
    if bad:
        return f"character {bad[0]!r} is not allowed in the revision part"
    return None


def _check(v: str, fix: str, what: str = "version") -> str:
    problem = _problem(v)
    if problem:
        raise ConfigError(f"{what} {v!r}: not a valid Debian version ({problem}); {fix}")
    return v


def validate(v: str) -> str:
    """Return ``v`` if it is a valid Debian version (deb-version(7)), else raise ConfigError."""
    return _check(v, _CONFIG_FIX)


# --- comparison: a transcription of dpkg's lib/dpkg/version.c ---------------


def _order(c: str) -> int:
    if c == "" or c in _DIGITS:
        return 0
    if c in _LETTERS:
        return ord(c)
    if c == "~":
        return -1
    return ord(c) + 256


def _cmp_part(a: str, b: str) -> int:
    """dpkg's verrevcmp(): alternate non-digit runs (by _order) and digit runs (as numbers)."""
    while a or b:
        (na, da), (nb, db) = re.match(_RUN, a).groups(), re.match(_RUN, b).groups()
        for i in range(max(len(na), len(nb))):
            diff = _order(na[i : i + 1]) - _order(nb[i : i + 1])
            if diff:
                return -1 if diff < 0 else 1
        ia, ib = int(da or 0), int(db or 0)
        if ia != ib:
            return -1 if ia < ib else 1
        a, b = a[len(na) + len(da) :], b[len(nb) + len(db) :]
    return 0


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` sorts before, equal to or after ``b``, exactly like
    ``dpkg --compare-versions``. A missing epoch is 0; a missing revision is "",
    which dpkg treats as equal to "0" (so ``1.0 == 1.0-0 == 0:1.0``)."""
    fix = "Debian versions look like [epoch:]upstream[-revision], e.g. 1:1.2.3-1"
    ea, ua, ra, _, _ = _split(_check(a, fix))
    eb, ub, rb, _, _ = _split(_check(b, fix))
    if int(ea or 0) != int(eb or 0):
        return -1 if int(ea or 0) < int(eb or 0) else 1
    return _cmp_part(ua, ub) or _cmp_part(ra, rb)


def _sort_order(a: str, b: str) -> int:
    if not a or not b:  # an empty version (a file nobody could read) sorts first
        return bool(a) - bool(b)
    try:
        return compare(a, b)
    except ConfigError:  # a malformed one: by its text
        return (a > b) - (a < b)


# Sorts versions in dpkg's order, oldest first: ``sorted(versions, key=sort_key)``.
sort_key = functools.cmp_to_key(_sort_order)


def keys_for(versions) -> callable:
    """A key function ordering ``versions`` (all well-formed) exactly as :func:`compare` does, for
    sorting many at once without a comparison per pair (``sort_key`` above compares pairs, and
    takes empty and malformed versions too) (equal versions, like ``1.0`` and ``1.00``, get
    equal keys).  dpkg compares two parts run by run, the shorter padded with empty runs:
    each part's runs are padded here to the longest among ``versions``."""
    fix = "Debian versions look like [epoch:]upstream[-revision], e.g. 1:1.2.3-1"
    split = {v: _split(_check(v, fix)) for v in versions}
    runs = {v: (_runs(u), _runs(r)) for v, (_, u, r, _, _) in split.items()}
    width_u = max((len(u) for u, _ in runs.values()), default=0)
    width_r = max((len(r) for _, r in runs.values()), default=0)
    pad = ((0,), 0)
    keys = {
        v: (int(split[v][0] or 0), tuple(u) + (pad,) * (width_u - len(u)), tuple(r) + (pad,) * (width_r - len(r)))
        for v, (u, r) in runs.items()
    }
    return keys.__getitem__


def _runs(part: str) -> list:
    """``part`` as dpkg's verrevcmp() walks it: (non-digit run as _order values ending in 0, number)."""
    out = []
    while part:
        nd, d = re.match(_RUN, part).groups()
        out.append((tuple(_order(c) for c in nd) + (0,), int(d or 0)))
        part = part[len(nd) + len(d) :]
    return out


# --- conversion ---------------------------------------------------------------


def _from_pep440(m: re.Match) -> str:
    """Render a PEP 440 match so dpkg orders it like PEP 440:
    X.devN < XaN < XbN < XrcN < X < X.postN (dev is ``~~devN``). A local label is
    kept as ``+label``; dpkg compares it as text, so one sorting after "post"
    (``+ubuntu``) lands above ``+post1`` where PEP 440 puts it below."""
    out = f"{m['epoch']}:" if m["epoch"] else ""
    out += m["release"]
    if m["pre_l"]:
        label = m["pre_l"].lower()
        out += f"~{_PRE_LABELS.get(label, label)}{int(m['pre_n'] or 0)}"
    if m["post"]:
        out += f"+post{int(m['post_n1'] or m['post_n2'] or 0)}"
    if m["dev"]:
        out += f"~~dev{int(m['dev_n'] or 0)}"
    if m["local"]:
        out += "+" + re.sub(r"[-_]", ".", m["local"])
    return out


def _from_semver(s: str) -> str | None:
    """``1.3.0-rc.1+b.5`` -> ``1.3.0~rc.1+b.5``, when the pre-release starts with a
    letter and has no PEP 440 dev/post marker; else None."""
    m = re.fullmatch(_SEMVER, s)
    if not m or m["pre"][0] not in _LETTERS:
        return None
    if any(re.fullmatch(_PEP_MARKER, t) for t in re.split(r"[.-]", m["pre"])):
        return None
    build = f"+{m['build'].replace('-', '.')}" if m["build"] else ""
    return f"{m['core']}~{m['pre'].replace('-', '.')}{build}"


def to_debian(v: str) -> str:
    """Convert a PEP 440 or semver version to a Debian version with the same order.

    ``v1.2.3`` -> ``1.2.3``; ``1.3.0rc1`` -> ``1.3.0~rc1`` (alpha/beta/c/pre/preview
    become a/b/rc/rc); ``1.3.0-rc.1`` (semver) -> ``1.3.0~rc.1``; ``1.3.0.dev4`` ->
    ``1.3.0~~dev4`` (before every ``~a``/``~b``/``~rc``); ``1.3.0.post1`` ->
    ``1.3.0+post1``; ``1!2.0`` -> ``1:2.0``; a local label ``1.2+abc`` is kept as
    ``+abc`` (``-``/``_`` become ``.``). A plain ``X-N`` is read as a Debian revision,
    and a string that is already a valid Debian version (``1.0~rc1``, ``2:1.0-3``)
    passes through. Raises ConfigError otherwise.
    """
    s = v.strip()
    if s[:1] in ("v", "V") and s[1:2].isdigit():
        s = s[1:]
    fix = f"{_CONFIG_FIX} or 1.3.0rc1"
    digits = s.replace(".", "")
    if digits.isascii() and digits.isdigit() and _problem(s) is None:
        return s  # a plain 1.2.3 is the same in every scheme: no pattern needed
    semver = _from_semver(s)
    if semver:
        return _check(semver, fix)
    m = re.fullmatch(_PEP440, s)
    if m and (m["epoch"] or m["pre_l"] or m["post_l"] or m["dev_l"]):
        return _check(_from_pep440(m), fix)
    if _problem(s) is None:
        return s
    if m:
        return _check(_from_pep440(m), fix)
    return _check(v, fix)


def from_git_describe(desc: str) -> str:
    """Debian version from ``git describe --tags --long [--always] [--dirty]`` output.

    ``v1.2.3-0-gabcdef1`` -> ``1.2.3`` (on the tag); ``v1.2.3-5-gabcdef1`` ->
    ``1.2.3+git5.gabcdef1`` (after 1.2.3, before 1.2.3.1 and 1.2.4; the commit
    count is compared as a number); ``v1.3.0rc1-2-gabc1234`` ->
    ``1.3.0~rc1+git2.gabc1234`` (the tag goes through :func:`to_debian`).
    No tag (``--always`` gives a bare hash ``abcdef1``) -> ``0~git.gabcdef1``, below
    any real release; two such builds are ordered by hash only, i.e. arbitrarily.
    ``-dirty`` appends ``.dirty`` and always keeps the ``+gitN`` part, so
    ``v1.2.3-0-gabc1234-dirty`` -> ``1.2.3+git0.gabc1234.dirty`` (just after the
    clean commit).
    """
    s = desc.strip()
    bare = re.fullmatch(_BARE_HASH, s)
    if bare:
        return validate(f"0~git.g{bare['hash']}{'.dirty' if bare['dirty'] else ''}")
    m = re.fullmatch(_DESCRIBE, s)
    if not m:
        raise ConfigError(
            f"git describe output {desc!r}: expected TAG-N-gHASH or a bare hash; "
            "tag releases like v1.2.3 or set [tool.debship].version"
        )
    try:
        base = to_debian(m["tag"])
    except ConfigError as e:
        raise ConfigError(
            f"git tag {m['tag']!r}: not a version number; tag releases like v1.2.3 or set [tool.debship].version"
        ) from e
    if m["n"] == "0" and not m["dirty"]:
        return base
    return validate(f"{base}+git{int(m['n'])}.g{m['hash']}{'.dirty' if m['dirty'] else ''}")


# --- the only I/O in this module -------------------------------------------


def git_version(project_dir: Path) -> str | None:
    """Debian version from ``git describe --tags --long --always --dirty`` run in
    ``project_dir``, or None when it is not a git repository or git is missing."""
    import subprocess  # only for a version that comes from git

    try:
        out = subprocess.run(
            ["git", "describe", "--tags", "--long", "--always", "--dirty"],
            cwd=project_dir,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0 or not out.stdout.strip():
        return None
    return from_git_describe(out.stdout)
