"""Command lines ship runs on a host, each written once (like pyinfra's ``noninteractive_apt``).

Pure functions returning argv lists; ``actions`` run them over the connection.
Facts (what is on the host) are in ``facts``; the store's index in ``store``.
"""
from __future__ import annotations

import shlex

NONINTERACTIVE = ["env", "DEBIAN_FRONTEND=noninteractive"]
KEEP_ADMIN_CONFFILES = ["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"]


def _lock(lock_timeout: int) -> list[str]:
    """apt waits this long for a dpkg lock held by another process (plain dpkg never waits)."""
    return ["-o", f"DPkg::Lock::Timeout={lock_timeout}"]


def apt_install(target: str, lock_timeout: int, downgrade: bool = False, reinstall: bool = False,
                log: str | None = None, intent: tuple[str, str] | None = None) -> list[str]:
    """Install a stored .deb path or ``name=version`` from a configured source: never prompts,
    keeps an admin's edited conffiles (the new default lands as .dpkg-dist).  With ``log``,
    apt's output goes to that file first and is shown after: a connection that drops
    mid-install then does not kill apt with SIGPIPE, and dpkg finishes on its own.  ``intent``
    ``(file, line)``: append that line to that file first (the ship history's ``begin``), in
    the same command, so a run killed from here on leaves a note the next run finds."""
    argv = [*NONINTERACTIVE, "apt-get", "install", "-y", "-q", "--no-install-recommends", *_lock(lock_timeout),
            *KEEP_ADMIN_CONFFILES]
    argv += ["--allow-downgrades"] if downgrade else []
    argv += ["--reinstall"] if reinstall else []
    argv = [*argv, target]
    if log is None:
        return argv
    note = ""
    if intent is not None:
        path = shlex.quote(intent[0])
        note = (f'install -d -m 0755 "$(dirname {path})" && printf %s {shlex.quote(intent[1])} >> {path} '
                '|| exit 1; ')
    return ["sh", "-c", note + 'log=$1; shift; install -d -m 0755 "${log%/*}"; "$@" > "$log" 2>&1 < /dev/null; '
            'rc=$?; cat "$log"; exit $rc', "sh", log, *argv]


def apt_remove(name: str, lock_timeout: int) -> list[str]:
    """Remove (not purge): conffiles and the deploy log stay for the admin to read."""
    return [*NONINTERACTIVE, "apt-get", "remove", "-y", "-q", *_lock(lock_timeout), name]


def apt_update_source(source_file: str) -> list[str]:
    """Refresh one apt source only (the other sources' lists stay as they are)."""
    return ["apt-get", "update", "-qq", "-o", f"Dir::Etc::sourcelist={source_file}",
            "-o", "Dir::Etc::sourceparts=-", "-o", "APT::Get::List-Cleanup=0"]


def configure_pending(lock_timeout: int) -> list[str]:
    """Finish what an interrupted dpkg left unconfigured, waiting for the lock like apt does."""
    return [*NONINTERACTIVE, "sh", "-c",
            'deadline=$(( $(date +%s) + $1 )); '
            'until dpkg --force-confdef --force-confold --configure -a; do '
            '  [ "$(date +%s)" -lt "$deadline" ] || exit 1; sleep 2; done', "sh", str(lock_timeout)]


def write_file(path: str, mode: str = "0644") -> list[str]:
    """Write stdin to ``path`` atomically (temp file, then rename), creating its folder."""
    return ["sh", "-c", 'install -d -m 0755 "${1%/*}" && cat > "$1.new" && chmod "$2" "$1.new" && mv "$1.new" "$1"',
            "sh", path, mode]


def tail(path: str, lines: int = 5) -> list[str]:
    return ["tail", "-n", str(lines), path]


def remove_dir(path: str) -> list[str]:
    return ["rm", "-rf", "--", path]


# Takes the host's ship lock for one package and holds it while stdin stays open: the
# connection ending (ship done, or the controller killed) releases it.  Prints "BUSY <holder>"
# when another ship holds it, then waits up to $4 s; exit 75 when that runs out.
HOST_LOCK_SCRIPT = r"""lock=$1 info=$2 who=$3 wait=$4
install -d -m 0755 "${lock%/*}"
exec 9>>"$lock"
if ! flock -n 9; then
    printf 'BUSY %s\n' "$(cat "$info" 2>/dev/null || echo 'another ship')"
    flock -w "$wait" 9 || exit 75
fi
printf '%s\n' "$who" > "$info"
echo LOCKED
exec cat >/dev/null
"""
LOCKED, LOCK_TIMED_OUT = "LOCKED", 75


def host_lock(lock: str, holder_file: str, who: str, wait: int) -> list[str]:
    return ["sh", "-c", HOST_LOCK_SCRIPT, "sh", lock, holder_file, who, str(wait)]


def stage(name: str, user: str) -> list[str]:
    """A fresh staging folder for ``user`` to upload into (run with sudo, under the host lock);
    staging folders of ``name`` a cut connection left behind are removed first."""
    return ["sh", "-c", 'rm -rf -- /var/tmp/debship-"$1".* && d=$(mktemp -d /var/tmp/debship-"$1".XXXXXXXX) && '
            'chown "$2" "$d" && echo "$d"', "sh", name, user]


DAMAGED = 3


def check_and_keep(staging: str, staged: str, stored: str, sha256: str) -> list[str]:
    """Check the upload's sha256 on the host, move it into the store and drop the staging folder;
    exit DAMAGED (printing the digest found) when the bytes differ."""
    script = ('got=$(sha256sum < "$2" | cut -d" " -f1); '
              'if [ "$got" != "$4" ]; then rm -rf -- "$1"; echo "$got"; exit 3; fi; '
              'install -d -m 0755 "${3%/*}" && install -o root -g root -m 0644 "$2" "$3" && rm -rf -- "$1"')
    return ["sh", "-c", script, "sh", staging, staged, stored, sha256]


def append_lines(*pairs: str) -> list[str]:
    """Append each text to its file (path, text, path, text …), creating the folders."""
    script = ('while [ "$#" -ge 2 ]; do install -d -m 0755 "${1%/*}" && printf \'%s\' "$2" >> "$1" || exit 1; '
              'shift 2; done')
    return ["sh", "-c", script, "sh", *pairs]
