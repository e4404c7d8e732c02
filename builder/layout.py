"""Where a debship package and ``ship`` keep things on a host: every host path, spelled once.

``Layout(name)`` is used by the control files (maintainer-script context, the
manifest path, the reserved doc paths), by the store and by ``ship``; tests read
it too.  See the table "What lands where on the host" in the README.
"""

from __future__ import annotations

from dataclasses import dataclass

DEBSHIP_STATE = "/var/lib/debship"  # one store folder per package below it
LOCK_DIR = "/run/debship"  # 0700 root: the ship locks (tmpfs: a reboot frees them)

# Where units go: debhelper's folder from Debian 13 on (on a merged /usr, /lib is an alias of
# /usr/lib, and Debian 13's lintian flags units under /lib as aliased-location).  Packages built
# by debship before used UNIT_DIR_OLD; the maintainer scripts read both.
UNIT_DIR = "/usr/lib/systemd/system"
UNIT_DIR_OLD = "/lib/systemd/system"

# Folders every Debian host has that no package lists (base-files' postinst makes them, FHS 3.0):
# a package that listed one would own it, and dpkg would remove it on purge once empty.  The
# data.tar of a debship package never lists them (dpkg unpacks into the existing folder).
HOST_DIRS = frozenset(
    {
        "opt",
        "srv",
        "mnt",
        "media",
        "etc/opt",
        "var/opt",
        "var/mail",
        "usr/local",
        *(f"usr/local/{d}" for d in ("bin", "etc", "games", "include", "lib", "sbin", "share", "share/man", "src")),
    }
)

# Trees reserved for the local administrator (Debian Policy 9.1.2, FHS 3.0): no package may install
# there; each maps to the place a package's files of that kind fit instead.
ADMIN_DIRS = {"/usr/local": '"/usr/lib/{name}" or "/opt/{name}"', "/srv": '"/var/lib/{name}" or "/opt/{name}"'}


@dataclass(frozen=True)
class Layout:
    name: str

    @property
    def state_dir(self) -> str:
        """The package's own state (startup.py writes here); created by postinst, gone on purge."""
        return f"/var/lib/{self.name}"

    @property
    def log_dir(self) -> str:
        return f"/var/log/{self.name}"

    @property
    def deploy_log(self) -> str:
        """What every maintainer script and ship did, timestamped."""
        return f"{self.log_dir}/deploy.log"

    @property
    def store(self) -> str:
        """ship's store: the kept .debs as a flat apt repository, and the history."""
        return f"{DEBSHIP_STATE}/{self.name}"

    @property
    def history(self) -> str:
        return f"{self.store}/history"

    @property
    def apt_source(self) -> str:
        """The ``file:`` source of the store (direct ship)."""
        return f"/etc/apt/sources.list.d/debship-{self.name}.list"

    @property
    def repo_source(self) -> str:
        """The deb822 source of a published repository (``ship --via-repo``)."""
        return f"/etc/apt/sources.list.d/debship-{self.name}.sources"

    @property
    def repo_keyring(self) -> str:
        """The public key the repository source is ``Signed-By``."""
        return f"/etc/apt/keyrings/debship-{self.name}.asc"

    @property
    def apt_pin(self) -> str:
        """The apt preference that holds the host at the version debship installed last (apt reads
        only names of letters, digits, ``-_.`` ending in ``.pref`` here: a ``+`` becomes ``_``)."""
        return f"/etc/apt/preferences.d/debship-{self.name.replace('+', '_')}.pref"

    @property
    def follow_marker(self) -> str:
        """Present (holding the repository's URL) while the host follows the published repository
        (``debship apply --follow``) instead of being push-managed; removed by a ``--take-over``."""
        return f"/etc/debship/follow/{self.name}"

    @property
    def refused(self) -> str:
        """The apt preference (priority -1) naming the versions this host rolled back from while
        following the repository: neither apt-get upgrade nor the next ``apply --follow`` takes them."""
        return f"/etc/apt/preferences.d/debship-{self.name.replace('+', '_')}-refused.pref"

    @property
    def lock(self) -> str:
        """Held by a ship for as long as it writes to this host (on tmpfs: a reboot frees it), in a
        folder only root can create entries in (not the world-writable /run/lock)."""
        return f"{LOCK_DIR}/{self.name}.lock"

    @property
    def lock_holder(self) -> str:
        """Who holds the lock: user@controller, pid, since when, what."""
        return f"{LOCK_DIR}/{self.name}.holder"

    @property
    def install_log(self) -> str:
        """apt's output of the last install ship ran (kept if the connection dropped mid-way)."""
        return f"{self.store}/last-install.log"

    @property
    def manifest(self) -> str:
        """What ship reads about the installed version: units, health command, keep-versions."""
        return f"/usr/share/debship/{self.name}.json"

    @property
    def dropped(self) -> str:
        """What the preinst of an upgrade found the old version shipped and the new one drops
        (units, conffiles): read by postinst (clean up) and postrm abort-upgrade (restore)."""
        return f"{self.store}/dropped"

    @property
    def lintian_overrides(self) -> str:
        return f"/usr/share/lintian/overrides/{self.name}"

    @property
    def doc_dir(self) -> str:
        return f"/usr/share/doc/{self.name}"

    def doc_files(self) -> tuple[str, ...]:
        """Files debship generates in the doc folder; a bundle may not install over them."""
        return tuple(f"{self.doc_dir}/{f}" for f in ("copyright", "changelog.gz", "changelog.Debian.gz"))

    def script_context(self) -> dict:
        """The paths the maintainer-script templates are given."""
        return {
            "state_dir": self.state_dir,
            "log_dir": self.log_dir,
            "deploy_log": self.deploy_log,
            "store_dir": self.store,
            "apt_source": self.apt_source,
            "repo_source": self.repo_source,
            "repo_keyring": self.repo_keyring,
            "apt_pin": self.apt_pin,
            "refused_pref": self.refused,
            "follow_marker": self.follow_marker,
            "debship_state": DEBSHIP_STATE,
            "dropped_file": self.dropped,
            "unit_dirs": [UNIT_DIR, UNIT_DIR_OLD],
        }
