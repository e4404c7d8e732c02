"""The package store on each host: kept .debs as a flat, local apt repository.

``Layout(name).store`` holds the shipped .debs, a ``Packages`` index and
a ``Release`` file written here (the host needs no dpkg-dev), registered as
``deb [trusted=yes] file:<store> ./`` in ``Layout(name).apt_source``; so ``apt list -a <name>`` and
``apt install <name>=<old>`` work on the host with no network.  The index is
always rebuilt from the files, never trusted.  The list of kept files is one of
the host facts (``facts.HOST_FACTS_SCRIPT``); here: pure parsers, decisions and
the commands that change the store.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..layout import Layout
from ..version import compare, sort_key
from .commands import apt_update_source


@dataclass(frozen=True)
class Kept:
    filename: str
    version: str


def parse_list(stdout: str) -> list[Kept]:
    """Kept packages, oldest first; a file dpkg-deb cannot read has no version and sorts first."""
    kept = []
    for line in stdout.splitlines():
        filename, _, version = line.partition("\t")
        if filename.strip():
            kept.append(Kept(filename.strip(), version.strip()))
    return sorted(kept, key=lambda k: sort_key(k.version))


def to_prune(kept: list[Kept], keep: int, installed: str | None) -> list[str]:
    """Files to delete so that the newest ``keep`` versions plus the installed one remain;
    unreadable files go too."""
    readable = [k for k in kept if k.version]
    newest = {k.filename for k in readable[-keep:]}
    return [
        k.filename
        for k in kept
        if k.filename not in newest and not (installed and k.version == installed and k.version)
    ]


# Rebuilds Packages and Release from the .debs present, atomically, registers
# the source, then runs the rest of its arguments (``commands.apt_update_source``:
# refresh apt's lists for this one source only).
# $1 store folder, $2 package name, $3 sources.list.d file, $4... the refresh.
INDEX_SCRIPT = r"""set -eu
cd "$1"
: > Packages.new
for f in *.deb; do
    [ -f "$f" ] && [ ! -L "$f" ] || continue
    dpkg-deb -f "$f" >> Packages.new
    printf 'Filename: ./%s\nSize: %s\nMD5sum: %s\nSHA256: %s\n\n' "$f" "$(stat -c %s "$f")" \
        "$(md5sum < "$f" | cut -d' ' -f1)" "$(sha256sum < "$f" | cut -d' ' -f1)" >> Packages.new
done
mv Packages.new Packages
{
    printf 'Origin: debship\nLabel: debship %s\nSuite: debship\nCodename: debship\nDate: %s\n' "$2" "$(date -Ru)"
    printf 'SHA256:\n %s %s Packages\n' "$(sha256sum < Packages | cut -d' ' -f1)" "$(stat -c %s Packages)"
} > Release.new
mv Release.new Release
printf 'deb [trusted=yes] file:%s ./\n' "$1" > "$3.new"
mv "$3.new" "$3"
shift 3
exec "$@"
"""


def index_command(layout: Layout) -> list[str]:
    return [
        "sh",
        "-c",
        INDEX_SCRIPT,
        "sh",
        layout.store,
        layout.name,
        layout.apt_source,
        *apt_update_source(layout.apt_source),
    ]


def prune_command(layout: Layout, filenames: list[str]) -> list[str]:
    """Delete the kept files and their detached signatures (``<file>.sig``)."""
    return [
        "sh",
        "-c",
        'cd "$1" && shift && for f in "$@"; do rm -f -- "$f" "$f.sig" || exit 1; done',
        "sh",
        layout.store,
        *filenames,
    ]


def history_line(stamp: str, action: str, version: str, before: str | None = None, by: str | None = None) -> str:
    """One line of the ship history: ``<time> ship|rollback <version> [from <before>] [by <who>]``
    (lines written before ``from``/``by`` existed have only the first three words)."""
    tail = (f" from {before or 'nothing'}" if before is not None or by else "") + (f" by {by}" if by else "")
    return f"{stamp} {action} {version}{tail}\n"


@dataclass(frozen=True)
class Shipped:
    """One line of the ship history, parsed."""

    when: str
    action: str  # ship | rollback
    version: str
    before: str | None = None  # "nothing" for a first install; None when the line does not say
    by: str | None = None

    def as_dict(self) -> dict:
        return {"when": self.when, "action": self.action, "version": self.version, "from": self.before, "by": self.by}


def parse_history(history: str) -> list[Shipped]:
    """Every well-formed line of the ship history, oldest first."""
    entries = []
    for line in history.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        extra = dict(zip(parts[3::2], parts[4::2]))
        entries.append(Shipped(parts[0], parts[1], parts[2], extra.get("from"), extra.get("by")))
    return entries


def unfinished(history: str) -> tuple[str, str | None] | None:
    """``(version, the version before it or None)`` when the history ends in a ``begin`` line
    (``<time> begin <version> from <before>``, written just before a ship's install; an older
    form has the bare ``<before>``): a ship installed (or began to install) ``version`` and was
    cut off before verifying it."""
    lines = [l.split() for l in history.splitlines() if len(l.split()) >= 3]
    if not lines or lines[-1][1] != "begin":
        return None
    rest = lines[-1][3:]
    before = rest[1] if rest[:1] == ["from"] and len(rest) > 1 else (rest[0] if rest else "-")
    return lines[-1][2], None if before in ("-", "nothing") else before


def version_stack(history: str) -> list[str]:
    """The versions a host went through, oldest first, with rolled-back ones popped:
    ship 1, ship 2, ship 3, rollback 2 gives [1, 2]."""
    stack: list[str] = []
    for line in history.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        action, version = parts[1], parts[2]
        if action == "begin":  # an intent; the ship's own line follows once it is verified
            continue
        if action == "rollback" and version in stack:
            del stack[stack.index(version) + 1 :]
        elif not stack or stack[-1] != version:
            stack.append(version)
    return stack


def previous_version(history: str, current: str | None, kept: list[Kept]) -> str | None:
    """The version installed before ``current`` that is still kept: from the history when it
    knows one, else the newest kept version below ``current``."""
    available = {k.version for k in kept if k.version}
    stack = version_stack(history)
    if current in stack:
        del stack[stack.index(current) :]
    for version in reversed(stack):
        if version in available and version != current:
            return version
    older = [k.version for k in kept if k.version and current and compare(k.version, current) < 0]
    return older[-1] if older else None
