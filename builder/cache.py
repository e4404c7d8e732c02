"""A small on-disk cache for work whose result depends only on its inputs: rendered and
compiled templates, and ``systemd-analyze verify``'s verdict on a set of units.

It never changes what is built.  An entry is found by a hash of everything its result
depends on, so a stale entry is never used; a missing, unreadable or corrupt one (each
entry starts with the sha256 of the rest) means the work is done again; entries are
written to a temp file and renamed; a cache that cannot be written is skipped.  It lives in ``$XDG_CACHE_HOME/debship`` (default
``~/.cache/debship``); ``DEBSHIP_CACHE=off`` turns it off.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path

from . import __version__

FORMAT = 2  # entries start with the sha256 of the rest; part of every key, so no older entry is read


def directory(kind: str) -> Path | None:
    """``<cache>/<kind>``, created; ``None`` when the cache is off or cannot be created."""
    if os.environ.get("DEBSHIP_CACHE", "").lower() in ("off", "0", "no"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = Path(base) / "debship" / kind
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError:
        return None
    return path


def key(*parts: bytes | str) -> str:
    """A hex digest of ``parts`` (length-prefixed, so no two lists of parts share one)."""
    h = hashlib.sha256(f"{__version__}|{FORMAT}".encode())
    for p in parts:
        b = p.encode() if isinstance(p, str) else p
        h.update(len(b).to_bytes(8, "little") + b)
    return h.hexdigest()


def read(kind: str, name: str) -> bytes | None:
    """The entry ``name`` as written, or ``None`` when it is missing, unreadable or corrupt."""
    folder = directory(kind)
    if folder is None:
        return None
    try:
        stored = (folder / name).read_bytes()
    except OSError:
        return None
    digest, data = stored[:32], stored[32:]
    return data if len(digest) == 32 and hashlib.sha256(data).digest() == digest else None


def write(kind: str, name: str, data: bytes) -> None:
    folder = directory(kind)
    if folder is None:
        return
    from .reproducible import atomic_file  # here: reading the cache (every start) needs no writer

    with contextlib.suppress(OSError):  # a cache that cannot be written is no cache, not an error
        with atomic_file(folder / name, suffix="", mode=0o600) as f:
            f.write(hashlib.sha256(data).digest() + data)


def templates():
    """A jinja2 bytecode cache for compiled templates, or ``None`` when the cache is off.

    jinja2 checks each entry against a hash of the template's source and its own and
    Python's versions; the key adds the environment's syntax settings and debship's version.
    """
    folder = directory("jinja2")
    if folder is None:
        return None
    import jinja2

    class TemplateCache(jinja2.FileSystemBytecodeCache):
        def get_bucket(self, environment, name, filename, source):
            return super().get_bucket(environment, f"{_syntax(environment)}|{name}", filename, source)

        def load_bytecode(self, bucket) -> None:
            try:
                super().load_bytecode(bucket)
            except Exception:  # a truncated or foreign file (jinja2 lets pickle's errors through)
                bucket.reset()

    return TemplateCache(str(folder))


def _syntax(env) -> str:
    """Everything of an Environment that changes the code a template compiles to."""
    import jinja2

    settings = (
        jinja2.__version__,
        env.block_start_string,
        env.block_end_string,
        env.variable_start_string,
        env.variable_end_string,
        env.comment_start_string,
        env.comment_end_string,
        env.line_statement_prefix,
        env.line_comment_prefix,
        env.trim_blocks,
        env.lstrip_blocks,
        env.newline_sequence,
        env.keep_trailing_newline,
        sorted(env.extensions),
        env.optimized,
        env.autoescape,
        env.is_async,
        env.finalize is not None,
    )
    return key(repr(settings))
