"""The one exception tree of debship.

Every message names the thing at fault (file, key, host) and how to fix it.
Only ``cli.py`` turns these into a message and an exit code.
"""


class DebshipError(Exception):
    """Base of every foreseen failure; ``str(e)`` is the one-line message."""

    exit_code = 1


class UsageError(DebshipError):
    """The command line is wrong (a malformed --host, an unreadable --hosts-file)."""

    exit_code = 2


class ConfigError(DebshipError):
    """The project's configuration is missing, malformed or invalid."""

    exit_code = 2


class PlanError(DebshipError):
    """The bundle folders cannot be packaged as they are."""

    exit_code = 3


class BuildError(DebshipError):
    """Writing the .deb failed."""

    exit_code = 4


class RemoteError(DebshipError):
    """An SSH connection or a remote command failed."""

    exit_code = 5


class ShipError(DebshipError):
    """A ship step failed on a host."""

    exit_code = 6


class PackageError(DebshipError):
    """A file given as a package cannot be read as one (not a .deb, damaged)."""

    exit_code = 7


class PackageNotFound(DebshipError):
    """An argument names no package: no such file, or NAME=VERSION not in dist/."""

    exit_code = 2


class RepoError(DebshipError):
    """Publishing to, or describing, a signed apt repository failed."""

    exit_code = 7


class UnitFailed(ShipError):
    """A unit of the package failed on a host (not active, restarting, failing its soak);
    ``diagnosis`` holds what the host said of it: the journal's last lines, ``systemctl status``."""

    def __init__(self, message: str, diagnosis: dict | None = None):
        super().__init__(message)
        self.diagnosis = diagnosis or {}
