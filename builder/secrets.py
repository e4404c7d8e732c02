"""Does a bundle file look like a secret?  A pure check, named patterns, no I/O
beyond reading the head of one file.

A private key or a cloud credential committed next to the scripts would be
installed world-readable on every host the package reaches, and kept in each
host's store of old versions.  ``plan.py`` refuses such files unless the
project lists them in ``allow-secrets``.

Names are checked first (``id_rsa``, ``.env``, ``*.p12`` …); the contents of
text files are searched only in their first ``SCAN_BYTES``, and only after a
cheap substring test, so that scanning costs little next to compressing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SCAN_BYTES = 1 << 20  # only the head of a file is searched
_TEXT_PROBE = 8192  # a NUL byte in the first 8 KiB: binary, contents not searched

# File names that are secrets whatever they hold.
_SSH_KEY_NAMES = re.compile(r"^id_(rsa|dsa|ecdsa|ed25519)(_sk)?$|^id_ecdsa_sk$|^id_ed25519_sk$")
_ENV_NAME = re.compile(r"^\.env(\.[A-Za-z0-9_-]+)?$")
_ENV_TEMPLATES = (".example", ".sample", ".template", ".dist", ".defaults")
_KEYSTORE_SUFFIXES = (".p12", ".pfx", ".jks", ".keystore")

# (kind, cheap substrings one of which must be present, regex), searched in bytes.
# The most specific first.  AWS's documented example ids (AKIA…EXAMPLE) are not secrets.
# The patterns stay text: ``re`` compiles one (and keeps it) only when a file has a probe.
_CONTENT_RULES: tuple[tuple[str, tuple[bytes, ...], bytes], ...] = (
    (
        "a GCP service-account key",
        (b"service_account",),
        rb"\"type\"\s*:\s*\"service_account\"(?s:.*)\"private_key\"|\"private_key\"(?s:.*)\"type\"\s*:\s*"
        rb"\"service_account\"",
    ),
    ("a private key", (b"PRIVATE KEY",), rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"),
    (
        "an AWS access key id",
        (b"AKIA", b"ASIA"),
        rb"(?<![A-Z0-9])(?:AKIA|ASIA)(?![0-9A-Z]{9}EXAMPLE)[0-9A-Z]{16}(?![A-Z0-9])",
    ),
    (
        "an AWS secret access key",
        (b"ecret", b"ECRET"),
        rb"(?i)aws_?secret_?access_?key[\"']?\s*[:=]\s*[\"']?[A-Za-z0-9/+]{30,}={0,2}",
    ),
)


@dataclass(frozen=True)
class Finding:
    """Why one file looks like a secret."""

    path: Path
    kind: str  # "a private key", "an AWS access key id" …


def by_name(name: str) -> str | None:
    """The kind of secret a file name alone says it is, or None."""
    if _SSH_KEY_NAMES.match(name):
        return "an SSH private key (by its name)"
    if _ENV_NAME.match(name) and not name.endswith(_ENV_TEMPLATES):
        return "a .env file"
    if name.lower().endswith(_KEYSTORE_SUFFIXES):
        return "a key store (PKCS#12/Java)"
    return None


def by_content(head: bytes) -> str | None:
    """The kind of secret the first bytes of a file hold, or None (binary files are not searched)."""
    if b"\0" in head[:_TEXT_PROBE]:
        return None
    for kind, probes, pattern in _CONTENT_RULES:
        if any(p in head for p in probes) and re.search(pattern, head):
            return kind
    return None


def scan(path: Path) -> Finding | None:
    """Read the head of ``path`` and say whether it looks like a secret."""
    kind = by_name(path.name)
    if kind is None:
        with open(path, "rb") as f:
            kind = by_content(f.read(SCAN_BYTES))
    return Finding(path, kind) if kind else None
