#!/usr/bin/env python3
"""List the import cycles inside a package (default: builder/); exit 1 if there is any.

Every ``import`` and ``from ... import`` counts, relative ones resolved and function-level
(lazy) ones included, so a lazy import cannot hide a cycle.  ``tools/test.sh`` runs it."""

from __future__ import annotations

import ast
import sys
from pathlib import Path


def modules(root: Path) -> dict[str, Path]:
    found = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def edges(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join([*base, *([node.module] if node.module else [])])
            targets = [mod, *(f"{mod}.{a.name}" for a in node.names)]
        else:
            continue
        out.update(t for t in targets if t in known and t != name)
    return out


def cycles(root: Path) -> list[tuple[str, str]]:
    known = modules(root)
    graph = {m: edges(m, p, known) for m, p in known.items()}

    def reaches(a: str, b: str) -> bool:
        seen, todo = set(), [a]
        while todo:
            m = todo.pop()
            if m == b:
                return True
            if m not in seen:
                seen.add(m)
                todo.extend(graph[m])
        return False

    return sorted({tuple(sorted((a, b))) for a in graph for b in graph[a] if reaches(b, a)})


if __name__ == "__main__":
    found = cycles(Path(sys.argv[1] if len(sys.argv) > 1 else "builder").resolve())
    for a, b in found:
        print(f"import cycle: {a} <-> {b}")
    sys.exit(1 if found else 0)
