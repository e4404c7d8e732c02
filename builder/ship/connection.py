"""What the executor and the step actions need of a host: the ``Connection`` protocol.

A connector is anything with ``run``, ``put``, ``hold`` and ``close`` (plus the login ``user``
and ``reconnect`` for a reboot).  ``ssh.SSHConnection`` reaches a host over SSH;
``local.LocalConnection`` runs the same steps on this machine (``debship apply``).  Nothing
here imports paramiko, so the planner, the executor and the actions never do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    exit_code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class Held(Protocol):
    """A command left running (a lock holder); ``close()`` ends it."""

    def close(self) -> None: ...


class Connection(Protocol):
    """One host, reached somehow.  A lost host or a timeout raises ``RemoteError``; a command
    that exits non-zero is a ``Result``, not an error."""

    name: str  # the host as the user wrote it, for messages
    user: str  # who the commands run as (before sudo)

    def run(
        self,
        argv: Sequence[str],
        *,
        sudo: bool = False,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: dict | None = None,
    ) -> Result: ...

    def put(self, local: Path, remote: str, *, progress: Callable[[int, int], None] | None = None) -> None: ...

    def hold(
        self,
        argv: Sequence[str],
        *,
        until: str,
        sudo: bool = False,
        timeout: float = 600.0,
        on_line: Callable[[str], None] | None = None,
    ) -> Held | Result: ...

    def reconnect(self) -> Connection: ...

    def close(self) -> None: ...
