"""What ``ship`` was asked to do, as plain data: read by the fleet, the executor and the actions."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..pkgsig import TrustedKey
from .sshconfig import ConnectOptions


@dataclass(frozen=True)
class ViaRepo:
    """``ship --via-repo``: the signed repository hosts install from, instead of an upload."""

    url: str
    key: str  # the armored public key the source is Signed-By
    sources: str  # the deb822 .sources text (Signed-By: Layout.repo_keyring)


@dataclass(frozen=True)
class ShipOptions:
    connect: ConnectOptions = field(default_factory=ConnectOptions)
    boot_timeout: float = 600.0
    lock_timeout: int = 300
    settle: float = 3.0  # s between the two looks at a unit's restart count
    start_timeout: float = 60.0  # s for units to become active and health to pass
    force: bool = False
    dry_run: bool = False
    reboot: bool = False
    rollback_on_failure: bool = True  # --no-rollback turns it off
    via_repo: ViaRepo | None = None
    trust_key: TrustedKey | None = None  # --trust-key: installed on each host before anything else
    # Called as the upload goes (host, bytes sent, total): the CLI's progress bar on a terminal.
    progress: Callable[[str, int, int], None] | None = field(default=None, compare=False)
    wait_for_boot: bool = True  # apply: the host runs it itself (from cloud-init's runcmd: never wait for that)
    allow_removals: bool = False  # --allow-removals: an install may remove other packages (Conflicts:)
    follow: bool = False  # apply --follow: the host follows the repository (no pin; a failed version refused)
    take_over: bool = False  # switch a host between push-managed and following the repository
    lists_max_age: float = 3600.0  # s: older package lists are refreshed once when a dependency is missing
