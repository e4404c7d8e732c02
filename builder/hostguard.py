"""Checks root runs on a host before it writes into a folder, so that nothing a local user
planted is followed: shell functions prefixed to the commands that take the lock, stage an
upload and keep it, and the parser of what they report.

Every folder ship writes into as root (``/run/debship``, ``/var/lib/debship/<name>``,
``/var/log/<name>``) must be a real directory (not a symlink), owned by root and writable by
root alone; then no other user can create, replace or redirect anything inside it, and the
files root writes there need no further checks.  A folder that is anything else stops the
ship before anything is written, with a line naming the path, what it is and who owns it.
``/var/tmp`` (the staging) is world-writable: there only a fresh ``mktemp -d`` folder is used,
and leftovers of earlier ships are removed only when the login user or root owns them.
See docs/security.md.
"""

from __future__ import annotations

UNSAFE = 77  # exit status of a command that found an unsafe path

# unsafe PATH WHY: report and stop.  root_dir PATH MODE: PATH is (or is made) a root-owned
# folder only root writes to, with MODE.  secure_store STORE LOGDIR: kept packages 0600,
# logs root:adm 0640 (fixing what earlier debship versions left readable to everyone).
GUARD_SH = r"""
unsafe() {
    printf 'UNSAFE\t%s\t%s\t%s\t%s\n' "$1" "$(stat -c %F -- "$1" 2>/dev/null || echo missing)" \
        "$(stat -c %U -- "$1" 2>/dev/null || echo nobody)" "$2"
    exit 77
}
root_dir() {
    if [ ! -e "$1" ] && [ ! -L "$1" ]; then mkdir -m "$2" -- "$1" || unsafe "$1" "cannot be created"; fi
    if [ -L "$1" ] || [ ! -d "$1" ]; then unsafe "$1" "is not a folder"; fi
    [ "$(stat -c %u -- "$1")" = 0 ] || unsafe "$1" "is not owned by root"
    case $(stat -c %A -- "$1") in ?????w????|????????w?) unsafe "$1" "is writable by others than root";; esac
    chmod "$2" -- "$1"
}
secure_store() {
    find "$1" -maxdepth 1 -name '*.deb' -type f -user 0 -perm /077 -exec chmod 0600 {} + 2>/dev/null
    for f in "$1/last-install.log" "$2/deploy.log"; do
        if [ -f "$f" ] && [ ! -L "$f" ] && [ "$(stat -c %u -- "$f")" = 0 ]; then
            chgrp adm -- "$f" 2>/dev/null; chmod 0640 -- "$f"
        fi
    done
    return 0
}
"""


def script(body: str) -> str:
    """``body`` with the guard functions defined before it."""
    return GUARD_SH + body


def unsafe_message(output: str) -> str | None:
    """The one-line message for an ``UNSAFE`` report in ``output``, or None."""
    for line in output.splitlines():
        parts = line.split("\t")
        if parts[0] == "UNSAFE" and len(parts) >= 5:
            path, kind, owner, why = parts[1:5]
            what = "" if kind == "missing" else f" (it is a {kind} owned by {owner})"
            return (
                f"unsafe path on the host: {path} {why}{what}; ship writes "
                f"there as root and refuses to follow it: remove it (or give it to root, mode 0755) "
                f"and ship again"
            )
    return None
