"""Command lines ship runs on a host, each written once (like pyinfra's ``noninteractive_apt``).

Pure functions returning argv lists; ``actions`` run them over the connection.
Facts (what is on the host) are in ``facts``; the store's index in ``store``.
"""

from __future__ import annotations

import shlex

from .. import hostguard, pkgsig

NONINTERACTIVE = ["env", "DEBIAN_FRONTEND=noninteractive"]
KEEP_ADMIN_CONFFILES = ["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"]


def _lock(lock_timeout: int) -> list[str]:
    """apt waits this long for a dpkg lock held by another process (plain dpkg never waits)."""
    return ["-o", f"DPkg::Lock::Timeout={lock_timeout}"]


def apt_install(
    target: str,
    lock_timeout: int,
    downgrade: bool = False,
    reinstall: bool = False,
    log: str | None = None,
    intent: tuple[str, str] | None = None,
) -> list[str]:
    """Install a stored .deb path or ``name=version`` from a configured source: never prompts,
    keeps an admin's edited conffiles (the new default lands as .dpkg-dist).  With ``log``,
    apt's output goes to that file first and is shown after: a connection that drops
    mid-install then does not kill apt with SIGPIPE, and dpkg finishes on its own.  ``intent``
    ``(file, line)``: append that line to that file first (the ship history's ``begin``), in
    the same command, so a run killed from here on leaves a note the next run finds."""
    argv = [
        *NONINTERACTIVE,
        "apt-get",
        "install",
        "-y",
        "-q",
        "--no-install-recommends",
        *_lock(lock_timeout),
        *KEEP_ADMIN_CONFFILES,
    ]
    argv += ["--allow-downgrades"] if downgrade else []
    argv += ["--reinstall"] if reinstall else []
    argv = [*argv, target]
    if log is None:
        return argv
    note = ""
    if intent is not None:
        path = shlex.quote(intent[0])
        note = f'install -d -m 0755 "$(dirname {path})" && printf %s {shlex.quote(intent[1])} >> {path} || exit 1; '
    return [
        "sh",
        "-c",
        note + 'log=$1; shift; install -d -m 0755 "${log%/*}"; rm -f -- "$log"; '
        '(umask 027; "$@" > "$log" 2>&1 < /dev/null); rc=$?; chgrp adm -- "$log" 2>/dev/null; '
        'cat "$log"; exit $rc',
        "sh",
        log,
        *argv,
    ]


def apt_remove(name: str, lock_timeout: int) -> list[str]:
    """Remove (not purge): conffiles and the deploy log stay for the admin to read."""
    return [*NONINTERACTIVE, "apt-get", "remove", "-y", "-q", *_lock(lock_timeout), name]


def apt_update_source(source_file: str, lists_prefix: str | None = None) -> list[str]:
    """Refresh one apt source only (the other sources' lists stay as they are).  With
    ``lists_prefix`` (how the names of the source's list files begin) its signature is verified
    again: its Release files are dropped first, for apt verifies only a Release file it downloads
    and a server answers "not modified" for one apt has, so a new key (``--repo-key``) would not
    be checked until the repository changes.  The Packages files stay: apt keeps those whose
    hashes the new Release lists."""
    update = [
        "apt-get",
        "update",
        "-qq",
        "-o",
        f"Dir::Etc::sourcelist={source_file}",
        "-o",
        "Dir::Etc::sourceparts=-",
        "-o",
        "APT::Get::List-Cleanup=0",
    ]
    if lists_prefix is None:
        return update
    forget = 'rm -f -- /var/lib/apt/lists/"$1"*Release /var/lib/apt/lists/"$1"*Release.gpg; shift; exec "$@"'
    return ["sh", "-c", forget, "sh", lists_prefix, *update]


def configure_pending(lock_timeout: int) -> list[str]:
    """Finish what an interrupted dpkg left unconfigured, waiting for the lock like apt does."""
    return [
        *NONINTERACTIVE,
        "sh",
        "-c",
        "deadline=$(( $(date +%s) + $1 )); "
        "until dpkg --force-confdef --force-confold --configure -a; do "
        '  [ "$(date +%s)" -lt "$deadline" ] || exit 1; sleep 2; done',
        "sh",
        str(lock_timeout),
    ]


def write_file(path: str, mode: str = "0644") -> list[str]:
    """Write stdin to ``path`` atomically (temp file, then rename), creating its folder."""
    return [
        "sh",
        "-c",
        'install -d -m 0755 "${1%/*}" && cat > "$1.new" && chmod "$2" "$1.new" && mv "$1.new" "$1"',
        "sh",
        path,
        mode,
    ]


def tail(path: str, lines: int = 5) -> list[str]:
    return ["tail", "-n", str(lines), path]


def remove_dir(path: str) -> list[str]:
    return ["rm", "-rf", "--", path]


def remove_file(path: str) -> list[str]:
    return ["rm", "-f", "--", path]


# Takes the host's ship lock for one package and holds it while stdin stays open: the
# connection ending (ship done, or the controller killed) releases it.  The lock lives in
# /run/debship (0700 root: no other user can plant or hold a file there).  Prints "BUSY <holder>"
# when another ship holds it, then waits up to $4 s; exit 75 when that runs out.  Under the
# lock: the store and log folders are checked (root's, not symlinks; else UNSAFE, exit 77) and
# the modes an earlier debship left on kept packages and logs are made root-only.
HOST_LOCK_SCRIPT = hostguard.script(r"""lock=$1 info=$2 who=$3 wait=$4 store=$5 logdir=$6
root_dir "${lock%/*}" 0700
exec 9>>"$lock"
if ! flock -n 9; then
    printf 'BUSY %s\n' "$(cat "$info" 2>/dev/null || echo 'another ship') (lock file $lock, owned by $(stat -c %U "$lock"))"
    flock -w "$wait" 9 || exit 75
fi
printf '%s\n' "$who" > "$info.new" && mv -f "$info.new" "$info"
root_dir "${store%/*}" 0755
root_dir "$store" 0755
if [ -e "$logdir" ] || [ -L "$logdir" ]; then root_dir "$logdir" 0755; fi
secure_store "$store" "$logdir"
echo LOCKED
exec cat >/dev/null
""")
LOCKED, LOCK_TIMED_OUT = "LOCKED", 75


def host_lock(lock: str, holder_file: str, who: str, wait: int, store: str, log_dir: str) -> list[str]:
    return ["sh", "-c", HOST_LOCK_SCRIPT, "sh", lock, holder_file, who, str(wait), store, log_dir]


def stage(name: str, user: str) -> list[str]:
    """A fresh staging folder (mode 0700) for ``user`` to upload into (run with sudo, under the
    host lock); staging folders of ``name`` a cut connection left behind are removed first, but
    only real folders ``user`` or root owns (/var/tmp is world-writable: others' are left alone)."""
    return [
        "sh",
        "-c",
        'find /var/tmp -mindepth 1 -maxdepth 1 -name "debship-$1.*" -type d \\( -user "$2" -o -user 0 \\) '
        '-exec rm -rf -- {} + ; d=$(mktemp -d /var/tmp/debship-"$1".XXXXXXXX) && chmod 0700 "$d" && '
        'chown "$2" "$d" && echo "$d"',
        "sh",
        name,
        user,
    ]


DAMAGED = 3


def check_and_keep(
    staging: str, staged: str, stored: str, sha256: str, user: str = "", signature: str = ""
) -> list[str]:
    """Copy the upload into the root-owned store (0600) first, then check its sha256 there, where
    the login user can no longer change it, and, on a host that trusts package keys, its detached
    ``signature`` (staged beside it; kept as ``<stored>.sig``) with gpgv; only then move it into
    place.  Drops the staging folder.  Exit DAMAGED (printing the digest found) when the bytes
    differ, UNSAFE when the staging folder or a file is not what ``stage`` made (a symlink,
    another owner), ``pkgsig.REFUSED`` (with gpgv's status lines, or UNSIGNED) when the
    signature does not verify: the package is then not kept at all."""
    script = hostguard.script(
        pkgsig.GPGV_SH
        + r"""staging=$1 staged=$2 stored=$3 sha=$4 user=$5 sig=$6 keys=$7
if [ -L "$staging" ] || [ ! -d "$staging" ] || [ "$(stat -c %U -- "$staging")" != "$user" ]; then
    unsafe "$staging" "is not the staging folder made for $user"
fi
if [ -L "$staged" ] || [ ! -f "$staged" ]; then unsafe "$staged" "is not a regular file"; fi
root_dir "${stored%/*/*}" 0755; root_dir "${stored%/*}" 0755
tmp=$(mktemp "${stored%/*}/.incoming.XXXXXXXX") || exit 1
cat < "$staged" > "$tmp" || { rm -f -- "$tmp"; exit 1; }
if [ -n "$sig" ]; then
    if [ -L "$sig" ] || [ ! -f "$sig" ]; then rm -f -- "$tmp"; unsafe "$sig" "is not a regular file"; fi
    cat < "$sig" > "$tmp.sig" || { rm -f -- "$tmp" "$tmp.sig"; exit 1; }
fi
rm -rf -- "$staging"
got=$(sha256sum < "$tmp" | cut -d" " -f1)
if [ "$got" != "$sha" ]; then rm -f -- "$tmp" "$tmp.sig"; echo "$got"; exit 3; fi
chmod 0600 -- "$tmp"
if has_keys; then
    if [ ! -f "$tmp.sig" ]; then rm -f -- "$tmp"; echo UNSIGNED; exit 78; fi
    if ! (gpgv_check "$tmp.sig" "$tmp"); then rm -f -- "$tmp" "$tmp.sig"; exit 78; fi
else
    echo NOKEYS
fi
rm -f -- "$stored.sig"
mv -f -- "$tmp" "$stored"
if [ -f "$tmp.sig" ]; then mv -f -- "$tmp.sig" "$stored.sig"; fi
"""
    )
    return ["sh", "-c", script, "sh", staging, staged, stored, sha256, user or "root", signature, pkgsig.KEYS_DIR]


def append_lines(*pairs: str) -> list[str]:
    """Append each text to its file (path, text, path, text …), creating the folders."""
    script = (
        'umask 027; while [ "$#" -ge 2 ]; do install -d -m 0755 "${1%/*}" && printf \'%s\' "$2" >> "$1" '
        "|| exit 1; shift 2; done"
    )
    return ["sh", "-c", script, "sh", *pairs]
