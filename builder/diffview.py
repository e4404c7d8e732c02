"""A ``Diff`` as text for a terminal: grouped, in a stable order, nothing computed here."""

from __future__ import annotations

import difflib
import json

from .debdiff import Change, Diff, Directive

CONFFILE_NOTE = (
    "a host where nobody edited one gets the new file; where an admin did, ship keeps the "
    "edit and dpkg leaves the new file beside it as <path>.dpkg-dist"
)

# Fields holding comma-separated relations: shown as the relations removed (-) and added (+).
RELATIONS = (
    "depends",
    "pre-depends",
    "recommends",
    "suggests",
    "enhances",
    "breaks",
    "conflicts",
    "provides",
    "replaces",
)


def render(d: Diff) -> list[str]:
    """The lines ``debship diff`` prints."""
    lines = _header(d)
    if d.empty:
        same = (
            "the files are byte-identical"
            if d.old.sha256 == d.new.sha256
            else "they differ only in what is not compared: mtimes, compression, member order"
        )
        return lines + [f"no differences ({same})"]
    for title, count, body in _sections(d):
        if count:
            lines += ["", f"{title} ({count}):", *body]
    return lines


def _header(d: Diff) -> list[str]:
    new = d.new.version if d.new.name == d.old.name else f"{d.new.name} {d.new.version}"
    return [
        f"{d.old.name} {d.old.version} -> {new}",
        f"  old  {d.old.path}  sha256 {d.old.sha256[:16]}",
        f"  new  {d.new.path}  sha256 {d.new.sha256[:16]}",
    ]


def _sections(d: Diff) -> list[tuple[str, int, list[str]]]:
    """(title, how many items, lines) per group; groups without items are not printed."""
    conffiles = [f for f in d.changed if f.path in d.conffiles_changed]
    return [
        ("control fields", len(d.control), [line for c in d.control for line in _field(c)]),
        ("files added", len(d.added), [f"  + {p}" for p in d.added]),
        ("files removed", len(d.removed), [f"  - {p}" for p in d.removed]),
        ("files changed", len(d.changed), [_file(f, f in conffiles) for f in d.changed]),
        (
            "conffiles changed",
            len(conffiles),
            [f"  {CONFFILE_NOTE}"]
            + [
                line
                for f in conffiles
                for line in [
                    f"  {f.path}",
                    *(["    an admitted secret changed: contents not shown"] if f.secret else _indent(f.diff, 4)),
                ]
            ],
        ),
        ("units", len(d.units), [line for u in d.units for line in _unit(u)]),
        ("maintainer scripts", len(d.scripts), [line for s in d.scripts for line in _script(s)]),
        ("debship manifest", len(d.manifest), [f"  {c.name}: {_value(c.old)} -> {_value(c.new)}" for c in d.manifest]),
    ]


def _field(c: Change) -> list[str]:
    if c.name == "Installed-Size" and str(c.old).isdigit() and str(c.new).isdigit():
        delta = int(c.new) - int(c.old)
        return [f"  Installed-Size: {c.old} -> {c.new} KiB ({delta:+d})"]
    if c.name.lower() in RELATIONS and c.old and c.new:
        a, b = _relations(c.old), _relations(c.new)
        return [f"  {c.name}: " + ", ".join([f"-{r}" for r in a if r not in b] + [f"+{r}" for r in b if r not in a])]
    if "\n" in f"{c.old}{c.new}":
        lines = difflib.unified_diff(str(c.old or "").splitlines(), str(c.new or "").splitlines(), lineterm="")
        return [f"  {c.name}:"] + [f"    {line}" for line in list(lines)[2:]]
    return [f"  {c.name}: {_value(c.old)} -> {_value(c.new)}"]


def _relations(value: object) -> list[str]:
    return [" ".join(r.split()) for r in str(value).split(",") if r.strip()]


def _file(f, conffile: bool) -> str:
    parts = []
    for c in f.changes:
        if c.name == "content" and f.secret:
            parts.append("content (an admitted secret: not shown)")
        elif c.name == "content":
            parts.append("content (version number only)" if f.version_only else "content")
        elif c.name == "size":
            parts.append(f"{c.old} -> {c.new} bytes")
        else:
            parts.append(f"{c.name} {_value(c.old)} -> {_value(c.new)}")
    return f"  ~ {f.path}  {', '.join(parts)}" + ("  [conffile]" if conffile else "")


def _unit(u) -> list[str]:
    options = " ".join(f"{c.name}={_value(c.new if u.status == 'added' else c.old)}" for c in u.options)
    if u.status != "changed":
        return [f"  {'+' if u.status == 'added' else '-'} {u.name} {u.status}" + (f"  {options}" if options else "")]
    lines = [f"  ~ {u.name}"]
    lines += [line for d in u.directives for line in _directive(d)]
    lines += [f"      {c.name}: {_value(c.old)} -> {_value(c.new)}" for c in u.options]
    return lines + _indent(u.diff, 6)


def _directive(d: Directive) -> list[str]:
    where = f"      [{d.section}] "
    if len(d.old) == 1 and len(d.new) == 1:
        return [f"{where}{d.key}={d.old[0]} -> {d.new[0]}"]
    return [f"{where}-{d.key}={v}" for v in d.old] + [f"{where}+{d.key}={v}" for v in d.new]


def _script(s) -> list[str]:
    mark = {"added": "+", "removed": "-", "changed": "~"}[s.status]
    if s.version_only:
        return [f"  {mark} {s.name} {s.status} (the version number only)"]
    return [f"  {mark} {s.name} {s.status}"] + _indent(s.diff, 4)


def _indent(text: str, n: int) -> list[str]:
    return [" " * n + line for line in text.splitlines()]


def _value(v: object) -> str:
    if v is None:
        return "(none)"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return v if isinstance(v, str) else json.dumps(v)
