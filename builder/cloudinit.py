"""cloud-init user-data that makes a new instance install packages from a debship repository.

The output is a ``#cloud-config`` document for cloud-init's ``apt`` module
(``apt: sources:`` with the repository's armored key under ``key:`` and
``signed-by=$KEY_FILE``, so the key trusts this one source and nothing else)
and its ``packages`` module (``package_update: true`` first, so apt sees the
new source).  cloud-init turns the key into a keyring under
``/etc/apt/cloud-init.gpg.d/`` with ``gpg --dearmor``: the image needs gpg.
Every scalar is written as a JSON string, which YAML reads as the same string.
"""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from . import gpg
from .errors import RepoError
from .version import validate

_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def parse_package(spec: str) -> tuple[str, str | None]:
    """``NAME`` or ``NAME=VERSION`` (a Debian version, as apt-get install takes it)."""
    name, sep, version = spec.partition("=")
    if not _PACKAGE.match(name):
        raise RepoError(f"--package {spec!r}: {name!r} is not a Debian package name; use NAME or NAME=VERSION")
    if sep:
        validate(version)
    return name, (version if sep else None)


def read_key(path: Path) -> str:
    """The armored public key in ``path`` (armored, or binary as ``gpg --export`` writes it)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise RepoError(f"--repo-key {path}: cannot read it ({e.strerror or e}); pass the repository's "
                        f"debship-archive-keyring.asc or .gpg") from e
    return gpg.armored_key(data, f"--repo-key {path}")


def user_data(url: str, key: str, packages: list[tuple[str, str | None]], suite: str = "stable",
              component: str = "main", name: str = "debship", trust_key=None) -> str:
    """The ``#cloud-config`` text (``key`` is the armored public key)."""
    if not re.match(r"^(https?|file)://\S+$", url):
        raise RepoError(f"--repo {url!r} is not an http(s):// or file:// URL without spaces; "
                        "give the URL instances reach the repository at")
    if not _SOURCE_NAME.match(name):
        raise RepoError(f"source name {name!r} is not a plain name (letters, digits, . _ -); choose another")
    for what, value in (("suite", suite), ("component", component)):
        if not _SOURCE_NAME.match(value):
            raise RepoError(f"{what} {value!r} is not a plain name (letters, digits, . _ -); choose another")
    q = json.dumps
    lines = ["#cloud-config",
             f"# apt source {name}: {url} {suite} {component}, signed; written by debship cloud-init",
             "package_update: true",
             "apt:",
             "  preserve_sources_list: true",
             "  sources:",
             f"    {q(name + '.list')}:",
             f"      source: {q(f'deb [signed-by=$KEY_FILE] {url} {suite} {component}')}",
             "      key: |",
             *[f"        {line}".rstrip() for line in key.strip().splitlines()]]
    if trust_key is not None:  # pkgsig.TrustedKey: later ships install only packages it signed
        from .pkgsig import KEYS_DIR
        lines += ["write_files:", f"  - path: {q(f'{KEYS_DIR}/{trust_key.filename}')}", "    encoding: b64",
                  "    owner: root:root", '    permissions: "0644"',
                  f"    content: {base64.b64encode(trust_key.data).decode()}"]
    if packages:
        lines.append("packages:")
        lines += [f"  - [{q(n)}, {q(v)}]" if v else f"  - {q(n)}" for n, v in packages]
    return "\n".join(lines) + "\n"
