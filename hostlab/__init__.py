"""Test hosts debship ships to, on this machine: used by the tests, ``bench/`` and ``make demo``.

Three kinds, one surface (``TestHost``), so a test, a benchmark or the demo can take any:

- ``sshhost.SSHHost``: a chroot of a cached Debian root with its own sshd on
  127.0.0.1 (no init: fast, for packages and SSH plumbing);
- ``nspawn.NspawnHost``: that root booted with ``systemd-nspawn`` (systemd as
  PID 1: services really run, reboots reboot; optionally cloud-init);
- ``vm.VMGuest``: a qemu guest booted like a cloud instance (kernel, cloud-init).

Each holds the client side of its SSH login in ``client.ClientSide`` (key pair,
known_hosts, empty ssh_config).  ``rootfs`` makes and caches the Debian roots.
Not installed with debship: the repository's own tooling.
"""

from __future__ import annotations

from typing import Protocol

from builder.ship.ssh import SSHConnection
from builder.ship.sshconfig import ConnectOptions, HostSpec


class TestHost(Protocol):
    """What every test host offers: where it is, how to log in, and its lifecycle."""

    user: str
    port: int

    @property
    def spec(self) -> HostSpec: ...

    @property
    def address(self) -> str: ...  # what `ship --host` takes

    def options(self, **overrides) -> ConnectOptions: ...

    def connect(self, **overrides) -> SSHConnection: ...

    def ship_args(self) -> list[str]: ...  # -i KEY --known-hosts … --ssh-config …

    def start(self) -> None: ...

    def close(self) -> None: ...
