"""Command lines ship runs on a host, each written once (like pyinfra's ``noninteractive_apt``).

Pure functions returning argv lists; ``hostrun`` runs them over the connection.
Facts (what is on the host) are in ``facts``; the store's index in ``store``.
"""
from __future__ import annotations

NONINTERACTIVE = ["env", "DEBIAN_FRONTEND=noninteractive"]
KEEP_ADMIN_CONFFILES = ["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"]


def _lock(lock_timeout: int) -> list[str]:
    """apt waits this long for a dpkg lock held by another process (plain dpkg never waits)."""
    return ["-o", f"DPkg::Lock::Timeout={lock_timeout}"]


def apt_install(target: str, lock_timeout: int, downgrade: bool = False, reinstall: bool = False) -> list[str]:
    """Install a stored .deb path or ``name=version`` from a configured source: never prompts,
    keeps an admin's edited conffiles (the new default lands as .dpkg-dist)."""
    argv = [*NONINTERACTIVE, "apt-get", "install", "-y", "-q", "--no-install-recommends", *_lock(lock_timeout),
            *KEEP_ADMIN_CONFFILES]
    argv += ["--allow-downgrades"] if downgrade else []
    argv += ["--reinstall"] if reinstall else []
    return [*argv, target]


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


STAGE = ["mktemp", "-d", "/var/tmp/debship.XXXXXXXX"]


def keep_in_store(store: str, staged: str, stored: str) -> list[str]:
    """Move an uploaded, checked file from staging into the root-owned store."""
    return ["sh", "-c", 'install -d -m 0755 "$1" && install -o root -g root -m 0644 "$2" "$3"',
            "sh", store, staged, stored]


def append_line(path: str) -> list[str]:
    """Append stdin to ``path``, creating its folder (deploy log, ship history)."""
    return ["sh", "-c", 'install -d -m 0755 "${1%/*}" && cat >> "$1"', "sh", path]


def write_file(path: str, mode: str = "0644") -> list[str]:
    """Write stdin to ``path`` atomically (temp file, then rename), creating its folder."""
    return ["sh", "-c", 'install -d -m 0755 "${1%/*}" && cat > "$1.new" && chmod "$2" "$1.new" && mv "$1.new" "$1"',
            "sh", path, mode]


def tail(path: str, lines: int = 5) -> list[str]:
    return ["tail", "-n", str(lines), path]


def remove_dir(path: str) -> list[str]:
    return ["rm", "-rf", "--", path]
