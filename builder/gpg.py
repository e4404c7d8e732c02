"""Talking to GnuPG for the apt repository: export a public key, sign a Release file.

The real ``gpg`` command runs as a subprocess in batch mode; ``GNUPGHOME`` is
whatever the caller's environment says (gpg's own default otherwise).  Keys
without a passphrase sign with no prompt; a protected key needs a running
gpg-agent that already holds its passphrase.  Also here: OpenPGP ASCII armor
(RFC 4880 section 6) in pure Python, so a binary key file can be embedded in
cloud-init user-data without gpg.
"""

from __future__ import annotations

import base64
import os
import subprocess
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from .errors import RepoError

ARMOR_BEGIN = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
ARMOR_END = "-----END PGP PUBLIC KEY BLOCK-----"
_DIGEST = "SHA512"  # apt refuses SHA1 signatures; be explicit for old RSA keys


def _gpg(args: list[str], data: bytes | None = None, what: str = "gpg") -> bytes:
    argv = ["gpg", "--batch", "--no-tty", "--quiet", *args]
    try:
        proc = subprocess.run(argv, input=data if data is not None else b"", capture_output=True, timeout=300)
    except FileNotFoundError as e:
        raise RepoError("gpg is not installed; install it (apt-get install gpg) to sign the repository") from e
    except subprocess.TimeoutExpired as e:
        raise RepoError(f"{what}: gpg did not answer within 300 s (is gpg-agent waiting for a passphrase?)") from e
    if proc.returncode != 0:
        lines = [l for l in proc.stderr.decode(errors="replace").splitlines() if l.strip()]
        raise RepoError(f"{what} failed: {lines[-1] if lines else f'gpg exit {proc.returncode}'} (GNUPGHOME={_home()})")
    return proc.stdout


def _home() -> str:
    return os.environ.get("GNUPGHOME") or "~/.gnupg"


def export_public(key_id: str, armor: bool = False) -> bytes:
    """The public key ``key_id`` as gpg exports it (binary, or ASCII-armored)."""
    if not key_id.strip() or key_id.startswith("-"):
        raise RepoError(f"signing key {key_id!r} is not a key id; pass --sign-key with a fingerprint or e-mail")
    data = _gpg([*(["--armor"] if armor else []), "--export", "--", key_id], what=f"exporting key {key_id}")
    if not data.strip():
        raise RepoError(
            f"no public key {key_id!r} in GNUPGHOME={_home()}; list keys with gpg --list-keys or import the key"
        )
    return data


# Debian 13's apt verifies with sqv under apt's policy (debian/default-sequoia.config in apt 3.0,
# installed as /usr/share/apt/default-sequoia.config): signatures by these public-key algorithms are
# rejected from the given date.  Sequoia's own standard policy already rejects RSA and DSA keys of
# 1024 bits and less.  docs/package-checks.md cites both.
APT_SQV_CUTOFFS = {"dsa": "2024-02-01", "brainpool": "2028-02-01", "rsa2048": "2030-02-01"}
MIN_RSA_BITS = 3072
_ALGOS = {"1": "rsa", "2": "rsa", "3": "rsa", "17": "dsa", "19": "ecdsa", "22": "eddsa"}


@dataclass(frozen=True)
class SigningKey:
    fingerprint: str
    algorithm: str  # rsa, dsa, ecdsa, eddsa or the algorithm number
    bits: int
    curve: str  # ed25519, nistp256, brainpoolP256r1 ... ('' for rsa/dsa)


def signing_keys(key_id: str) -> list[SigningKey]:
    """The primary key of ``key_id`` and its valid signing subkeys (``gpg --with-colons``)."""
    if not key_id.strip() or key_id.startswith("-"):
        raise RepoError(f"signing key {key_id!r} is not a key id; pass --sign-key with a fingerprint or e-mail")
    try:
        out = _gpg(
            ["--with-colons", "--fixed-list-mode", "--with-fingerprint", "--list-keys", "--", key_id],
            what=f"listing key {key_id}",
        ).decode(errors="replace")
    except RepoError as e:
        if "No public key" not in str(e):
            raise
        raise RepoError(
            f"no public key {key_id!r} in GNUPGHOME={_home()}; list keys with gpg --list-keys or import the key"
        ) from e
    found: list[SigningKey] = []
    pending: list[str] | None = None
    for line in out.splitlines():
        fields = line.split(":")
        if fields[0] in ("pub", "sub"):
            usable = fields[1] not in ("r", "e", "i", "d") and (fields[0] == "pub" or "s" in fields[11])
            pending = fields if usable else None
        elif fields[0] == "fpr" and pending is not None:
            found.append(
                SigningKey(
                    fields[9],
                    _ALGOS.get(pending[3], pending[3]),
                    int(pending[2] or 0),
                    pending[16] if len(pending) > 16 else "",
                )
            )
            pending = None
    return found


def check_key_policy(key_id: str, today: date | None = None) -> list[str]:
    """Refuse a signing key Debian 13's apt rejects or that is too weak to start with (DSA, RSA under
    3072 bits); return warnings for a key apt's policy retires within two years of ``today``."""
    today = today or date.today()
    warnings = []
    for key in signing_keys(key_id):
        name = (
            f"signing key {key_id} ({key.algorithm}{key.bits or ''}{' ' + key.curve if key.curve else ''}, "
            f"{key.fingerprint[-16:]})"
        )
        fix = (
            "make a new one with gpg --quick-gen-key 'Archive <you@example.com>' ed25519 sign never "
            "(or rsa4096) and publish with it"
        )
        if key.algorithm == "dsa":
            raise RepoError(f"{name}: DSA keys are rejected by Debian 13's apt since {APT_SQV_CUTOFFS['dsa']}; {fix}")
        if key.algorithm == "rsa" and key.bits < MIN_RSA_BITS:
            raise RepoError(
                f"{name}: RSA keys under {MIN_RSA_BITS} bits are refused (Debian 13's apt rejects "
                f"1024 bits and retires 2048 on {APT_SQV_CUTOFFS['rsa2048']}); {fix}"
            )
        if key.curve.lower().startswith("brainpool"):
            cutoff = date.fromisoformat(APT_SQV_CUTOFFS["brainpool"])
            if cutoff <= today:
                raise RepoError(f"{name}: Debian 13's apt rejects brainpool keys since {cutoff}; {fix}")
            if cutoff <= _two_years_after(today):
                warnings.append(f"{name}: Debian 13's apt rejects brainpool keys from {cutoff}; {fix}")
    return warnings


def _two_years_after(day: date) -> date:
    try:
        return day.replace(year=day.year + 2)
    except ValueError:  # 29 February
        return day.replace(year=day.year + 2, day=28)


def clearsign(text: bytes, key_id: str) -> bytes:
    """``text`` signed inline, as apt reads an ``InRelease`` file."""
    return _gpg(
        ["--local-user", key_id, "--digest-algo", _DIGEST, "--clearsign", "--output", "-"],
        text,
        what=f"signing with key {key_id}",
    )


def detach_sign(text: bytes, key_id: str) -> bytes:
    """An armored detached signature of ``text``, as apt reads ``Release.gpg``."""
    return _gpg(
        ["--local-user", key_id, "--digest-algo", _DIGEST, "--armor", "--detach-sign", "--output", "-"],
        text,
        what=f"signing with key {key_id}",
    )


def _crc24(data: bytes) -> int:
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def armored_key(data: bytes, what: str) -> str:
    """An OpenPGP public key as ASCII armor: armored input is returned as it is (checked),
    a binary key (``gpg --export``, a ``.gpg`` keyring) is armored the way ``gpg --armor`` does."""
    text = data.decode("ascii", errors="replace").strip()
    if text.startswith(ARMOR_BEGIN):
        if ARMOR_END not in text:
            raise RepoError(f"{what}: the armored key has no {ARMOR_END!r} line; export it again")
        return text[: text.index(ARMOR_END) + len(ARMOR_END)] + "\n"
    if not data or (data[0] & 0x80) == 0 or _packet_tag(data[0]) != 6:
        raise RepoError(
            f"{what} is not an OpenPGP public key; export one with gpg --export KEYID (or --armor --export)"
        )
    body = base64.b64encode(data).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    crc = base64.b64encode(_crc24(data).to_bytes(3, "big")).decode()
    return "\n".join([ARMOR_BEGIN, "", *lines, "=" + crc, ARMOR_END]) + "\n"


def _packet_tag(first: int) -> int:
    """The packet tag of a first octet: new format (bit 6 set) or old format."""
    return first & 0x3F if first & 0x40 else (first >> 2) & 0x0F


def read_key(path: Path) -> str:
    """The armored public key in ``path`` (armored, or binary as ``gpg --export`` writes it)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise RepoError(
            f"--repo-key {path}: cannot read it ({e.strerror or e}); pass the repository's "
            f"debship-archive-keyring.asc or .gpg"
        ) from e
    return armored_key(data, f"--repo-key {path}")
