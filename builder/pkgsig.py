"""Signed packages: a detached OpenPGP signature beside the .deb, checked on the host with gpgv.

``sign`` writes ``<file>.deb.sig`` (binary, ``gpg --detach-sign``): the .deb's bytes do not
change, so a reproducible build stays byte-identical and its sha256 stays the one ``ship`` and
the repository index check.  A host that holds keys in ``KEYS_DIR`` (``ship --trust-key``, or
cloud-init ``write_files``) installs only a package whose signature ``gpgv`` verifies against
one of them (Debian 13 has no gpgv, its apt depends on sqv: there ``sqv`` checks it); a host
without keys behaves as before.  gpgv or sqv is on every Debian host (apt depends on one of them),
where debsig-verify is one more package, with XML policy files per key, and reads a
signature *inside* the .deb's ar archive (``_gpgorigin``): adding it changes the .deb's bytes.
Why, and what it covers: docs/security.md.

The check on the host is one command (``verify_command``, ``verify_repo_command``) and a pure
parser (``verdict``): a local run on the host (``debship apply``) can run the same command.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import gpg, hostguard
from .errors import RepoError, UsageError

SIG_SUFFIX = ".sig"
KEYS_DIR = "/etc/debship/keys"  # root's; one binary OpenPGP public key per *.gpg file
REFUSED = 78  # exit status of a verify command that refuses the package


def sig_path(deb: Path) -> Path:
    """Where the detached signature of ``deb`` lives: beside it, ``<file>.deb.sig``."""
    return Path(deb).with_name(Path(deb).name + SIG_SUFFIX)


def sign(deb: Path, key_id: str) -> Path:
    """Write the detached signature of ``deb`` by ``key_id`` beside it (atomically); the .deb is
    only read."""
    deb = Path(deb)
    if not deb.is_file():
        raise UsageError(f"{deb}: no such .deb to sign; build it first (debship build-deb)")
    if not key_id.strip() or key_id.startswith("-"):
        raise RepoError(f"signing key {key_id!r} is not a key id; pass --sign-key with a fingerprint or e-mail")
    sig = gpg._gpg(
        ["--local-user", key_id, "--digest-algo", "SHA512", "--detach-sign", "--output", "-"],
        deb.read_bytes(),
        what=f"signing {deb.name} with key {key_id}",
    )
    target = sig_path(deb)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(sig)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def dearmor(data: bytes, what: str) -> bytes:
    """A public key as gpgv reads it (binary): armored input is decoded, binary kept."""
    try:
        return _dearmor(data, what)
    except RepoError as e:
        raise UsageError(str(e)) from e


def _dearmor(data: bytes, what: str) -> bytes:
    text = data.decode("ascii", errors="replace").strip()
    if text.startswith(gpg.ARMOR_BEGIN):
        armored = gpg.armored_key(data, what)  # checks the END line
        body = armored.split("\n\n", 1)[1] if "\n\n" in armored else ""
        lines = [l for l in body.splitlines() if l and not l.startswith(("=", "-----"))]
        try:
            return base64.b64decode("".join(lines), validate=True)
        except ValueError as e:
            raise UsageError(f"{what}: the armored key is damaged ({e}); export it again") from e
    gpg.armored_key(data, what)  # checks it is an OpenPGP public key
    return data


@dataclass(frozen=True)
class TrustedKey:
    """A public key for hosts to trust: its binary form and the file name it gets there."""

    data: bytes

    @property
    def filename(self) -> str:
        return f"{hashlib.sha256(self.data).hexdigest()[:16]}.gpg"


def read_trust_key(path: Path) -> TrustedKey:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise UsageError(
            f"--trust-key {path}: cannot read it ({e.strerror or e}); pass the public key the "
            "team signs packages with (gpg --export KEYID > team.gpg)"
        ) from e
    return TrustedKey(dearmor(data, f"--trust-key {path}"))


def trust_command(key: TrustedKey) -> list[str]:
    """Install the key (stdin) as ``KEYS_DIR/<name>.gpg``, in root-owned folders only."""
    script = hostguard.script(
        "keys=$1 name=$2\n"
        'root_dir "${keys%/*}" 0755; root_dir "$keys" 0755\n'
        'cat > "$keys/.$name.new" && chmod 0644 "$keys/.$name.new" && mv -f "$keys/.$name.new" "$keys/$name"\n'
    )
    return ["sh", "-c", script, "sh", KEYS_DIR, key.filename]


# has_keys: the host trusts a key in $keys.  gpgv_check SIG DEB: gpgv's status lines; exit 0 when
# the signature verifies with one of the keys, else 78.  (Also used by commands.check_and_keep.)
# Debian 13 has no gpgv unless something pulls it in (its apt verifies with sqv, Sequoia's): there
# sqv checks, under its own crypto policy, and its answer is told as gpgv's status lines.
GPGV_SH = r"""
has_keys() {
    for k in "$keys"/*.gpg; do if [ -f "$k" ] && [ ! -L "$k" ]; then return 0; fi; done
    return 1
}
gpgv_check() {  # gpgv_check SIG DEB: exit 0 when gpgv (or sqv) verifies it with one of the keys, else 78
    sig=$1 deb=$2
    set --
    for k in "$keys"/*.gpg; do if [ -f "$k" ] && [ ! -L "$k" ]; then set -- "$@" --keyring "$k"; fi; done
    if command -v gpgv >/dev/null 2>&1; then
        home=$(mktemp -d) || exit 1
        gpgv --homedir "$home" --status-fd 1 "$@" "$sig" "$deb" 2>/dev/null
        rc=$?
        rm -rf -- "$home"
    elif command -v sqv >/dev/null 2>&1; then
        out=$(sqv "$@" --signature-file "$sig" -- "$deb" 2>&1)
        rc=$?
        if [ "$rc" -eq 0 ]; then
            for f in $out; do echo "[GNUPG:] VALIDSIG $f"; done
        else
            case $out in
            *"Missing key "*) k=${out#*Missing key }; echo "[GNUPG:] NO_PUBKEY ${k%%[!0-9A-Fa-f]*}";;
            *manipulated*) echo "[GNUPG:] BADSIG";;
            *expired*|*revoked*) echo "[GNUPG:] EXPKEYSIG";;
            esac
            printf '%s\n' "$out" | sed -n 's/^ *\(.\)/SQV \1/p' | head -n 3
        fi
    else
        echo NOVERIFIER; exit 78
    fi
    [ "$rc" -eq 0 ] || exit 78
    exit 0
}
"""

# $1 the .deb, $2 its signature, $3 the keys folder.  NOKEYS (exit 0): the host trusts no key;
# UNSIGNED (exit 78): no signature; else gpgv's status lines.
VERIFY_SCRIPT = (
    GPGV_SH
    + r"""deb=$1 sig=$2 keys=$3
if ! has_keys; then echo NOKEYS; exit 0; fi
if [ ! -f "$sig" ] || [ -L "$sig" ]; then echo UNSIGNED; exit 78; fi
gpgv_check "$sig" "$deb"
"""
)


def verify_command(deb: str, sig: str) -> list[str]:
    """Check ``deb`` against its detached signature ``sig`` with the host's trusted keys (run as
    root on root-owned copies)."""
    return ["sh", "-c", VERIFY_SCRIPT, "sh", deb, sig, KEYS_DIR]


# $1 name=version, $2 the keys folder: download the package apt would install (checked against
# the signed index) and the signature published beside it (the same URI plus .sig).
VERIFY_REPO_SCRIPT = (
    GPGV_SH
    + r"""want=$1 keys=$2
if ! has_keys; then echo NOKEYS; exit 0; fi
dir=$(mktemp -d) || exit 1
trap 'rm -rf -- "$dir"' EXIT
cd "$dir" || exit 1
line=$(apt-get download --print-uris -q -- "$want" 2>/dev/null | head -n 1)
uri=${line%%"' "*}; uri=${uri#"'"}
if [ -z "$uri" ] || ! apt-get download -q -- "$want" >/dev/null 2>&1; then echo NOTFOUND; exit 78; fi
for deb in ./*.deb; do break; done
if ! /usr/lib/apt/apt-helper download-file "$uri.sig" "$dir/package.sig" >/dev/null 2>&1; then
    echo UNSIGNED; exit 78
fi
(gpgv_check "$dir/package.sig" "$deb")
"""
)


def verify_repo_command(name: str, version: str) -> list[str]:
    """Check the package apt would install as ``name=version`` against the signature published
    beside it in the repository (``publish`` copies ``<file>.deb.sig`` into the pool)."""
    return ["sh", "-c", VERIFY_REPO_SCRIPT, "sh", f"{name}={version}", KEYS_DIR]


@dataclass(frozen=True)
class Verdict:
    ok: bool
    detail: str  # "not checked (...)", "signed by <fpr>", or why refused


def verdict(exit_code: int, stdout: str, what: str) -> Verdict:
    """What the verify command's output says about ``what`` (a package and version)."""
    lines = [l.strip() for l in stdout.splitlines() if l.strip()]
    status = {l.split()[1]: l.split()[2:] for l in lines if l.startswith("[GNUPG:] ") and len(l.split()) > 1}
    fix = f"sign it with the team's key (debship sign) and ship again; the host trusts the keys in {KEYS_DIR}"
    if "NOKEYS" in lines:
        return Verdict(True, f"not checked (no trusted keys in {KEYS_DIR})")
    if exit_code == 0 and "VALIDSIG" in status:
        return Verdict(True, f"signature good, key {status['VALIDSIG'][0] if status['VALIDSIG'] else '?'}")
    if "UNSIGNED" in lines:
        return Verdict(False, f"refused {what}: it is not signed (no {SIG_SUFFIX} signature beside it); {fix}")
    if "NOTFOUND" in lines:
        return Verdict(False, f"refused {what}: the repository has no such package to check; publish it first")
    if "BADSIG" in status:
        return Verdict(
            False,
            f"refused {what}: its signature does not match its bytes (altered after signing); "
            "rebuild and sign it again",
        )
    if "NO_PUBKEY" in status or "ERRSIG" in status:
        key = (status.get("NO_PUBKEY") or status.get("ERRSIG") or ["?"])[0]
        return Verdict(False, f"refused {what}: signed by key {key}, which this host does not trust; {fix}")
    if "EXPKEYSIG" in status or "REVKEYSIG" in status:
        return Verdict(False, f"refused {what}: signed by an expired or revoked key; {fix}")
    if "NOVERIFIER" in lines:
        return Verdict(
            False,
            f"refused {what}: the host has neither gpgv nor sqv to check its signature; "
            "install one (apt-get install gpgv) and ship again",
        )
    said = "; ".join(l[4:] for l in lines if l.startswith("SQV ") and not l.endswith(":"))
    if said:
        return Verdict(False, f"refused {what}: sqv could not verify its signature ({said}); {fix}")
    return Verdict(False, f"refused {what}: gpgv could not verify its signature (exit {exit_code}); {fix}")
