"""Which files of a .deb are admitted secrets: how a package records them, read back.

``build-deb`` installs a file listed in ``allow-secrets`` ``0600 root:root`` and every other
file ``0644`` or ``0755`` (see ``plan.py``), so a regular file others may not read is an
admitted secret; this holds for any package, debship's or not, old or new.  ``publish`` refuses
such a package unless told it is meant (a repository is readable by everyone who reaches it),
and ``debdiff`` never shows such a file's contents.
"""

from __future__ import annotations

import tarfile
from pathlib import Path


def is_secret(mode: int) -> bool:
    """A regular file's mode that keeps others from reading it."""
    return not mode & 0o004


def admitted_secrets(path: Path) -> tuple[str, ...]:
    """The host paths of the regular files in the .deb at ``path`` that others may not read."""
    from debian.debfile import DebFile

    with DebFile(str(path)) as deb:
        tar: tarfile.TarFile = deb.data.tgz()
        return tuple(sorted("/" + m.name.lstrip("./") for m in tar if m.isfile() and is_secret(m.mode)))
