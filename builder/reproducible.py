"""Reproducible, atomic output (DESIGN Conventions 1 and 2): the one reader of
SOURCE_DATE_EPOCH and the one atomic file writer, shared by the .deb writer, the
build cache and (after the publish branch merges) the repository."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from .errors import ConfigError, DebshipError


def epoch_from_env(error: type[DebshipError] = ConfigError) -> int | None:
    """SOURCE_DATE_EPOCH as a whole number of seconds, None when unset; ``error`` when malformed."""
    env = os.environ.get("SOURCE_DATE_EPOCH")
    if env is not None and not env.isdigit():
        raise error(f"SOURCE_DATE_EPOCH={env!r} is not a whole number of seconds; unset or fix it")
    return int(env) if env is not None else None


@contextlib.contextmanager
def atomic_file(path: Path, *, suffix: str = ".part", mode: int = 0o644) -> Iterator[IO[bytes]]:
    """A hidden temp file beside ``path`` to write; on success it gets ``mode`` and is renamed
    onto ``path``, on any failure (KeyboardInterrupt too) it is removed.  Flushing to disk
    (``os.fsync``) is the caller's choice, before the block ends."""
    import tempfile  # here: it imports random, and only writing needs it

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=suffix, delete=False)
    try:
        with tmp:
            yield tmp
            tmp.flush()
            os.fchmod(tmp.fileno(), mode)  # mkstemp gives 0600
        os.replace(tmp.name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp.name)
        raise
