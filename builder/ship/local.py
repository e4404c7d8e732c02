"""The local connector: the same ``Connection`` protocol as ``ssh``, on this machine.

``run`` is a subprocess (through ``sudo -n`` when asked and not already root), ``put`` a copy
then an atomic rename, ``hold`` a child process left running until ``close()``.  This is what
``debship apply`` (a host installing its own package: first boot, an Ansible module) uses, so
the executor and the actions are the same as for ``ship``.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import selectors
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Callable

from ..errors import RemoteError
from .connection import Result
from .sshconfig import ConnectOptions, HostSpec


def connect(spec: HostSpec | None = None, opts: ConnectOptions | None = None) -> LocalConnection:
    """A connector (see ``executor.Connector``): ``spec`` and ``opts`` name no one to reach here."""
    return LocalConnection(str(spec) if spec is not None else "localhost")


class LocalConnection:
    """Commands run on this machine as the current user (and root through ``sudo -n``)."""

    def __init__(self, name: str = "localhost"):
        self.name = name
        self.user = getpass.getuser()
        self._held: list[LocalHeld] = []

    def _argv(self, argv: Sequence[str], sudo: bool, env: dict | None = None) -> list[str]:
        full = [*(["env", *(f"{k}={v}" for k, v in env.items())] if env else []), *argv]
        return ["sudo", "-n", "--", *full] if sudo and os.geteuid() != 0 else full

    def run(
        self,
        argv: Sequence[str],
        *,
        sudo: bool = False,
        timeout: float | None = None,
        stdin: bytes | None = None,
        env: dict | None = None,
    ) -> Result:
        """Run ``argv``; a non-zero exit is a Result, a missing program or a timeout a RemoteError."""
        full = self._argv(argv, sudo, env)
        try:
            p = subprocess.run(full, input=stdin or b"", capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise RemoteError(
                f"host {self.name}: `{' '.join(full)}` still running after {timeout:g} s; "
                "raise the timeout or look at what it waits for"
            ) from e
        except OSError as e:
            raise RemoteError(f"host {self.name}: cannot run {full[0]}: {e.strerror or e}; install it") from e
        return Result(tuple(argv), p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace"))

    def put(self, local: Path, remote: str, *, progress: Callable[[int, int], None] | None = None) -> None:
        """Copy ``local`` to ``remote.part``, then rename it to ``remote`` (never a half-written file)."""
        local = Path(local)
        if not local.is_file():
            raise RemoteError(f"host {self.name}: cannot upload {local}: no such local file")
        part = f"{remote}.part"
        try:
            shutil.copyfile(local, part)
            os.replace(part, remote)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.unlink(part)
            raise RemoteError(
                f"host {self.name}: copy of {local} to {remote} failed ({e.strerror or e}); check that "
                f"{os.path.dirname(remote) or '.'} exists and {self.user} may write there"
            ) from e
        if progress:
            size = local.stat().st_size
            progress(size, size)

    def hold(
        self,
        argv: Sequence[str],
        *,
        until: str,
        sudo: bool = False,
        timeout: float = 600.0,
        on_line: Callable[[str], None] | None = None,
    ) -> LocalHeld | Result:
        """Start ``argv`` and return once it prints the line ``until``, leaving it running until
        ``close()``; lines before it go to ``on_line``.  If it exits first, its ``Result``."""
        full = self._argv(argv, sudo)
        try:
            p = subprocess.Popen(full, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as e:
            raise RemoteError(f"host {self.name}: cannot run {full[0]}: {e.strerror or e}; install it") from e
        try:
            seen = _read_until(p, until, time.monotonic() + timeout, on_line)
        except TimeoutError as e:
            raise RemoteError(
                f"host {self.name}: `{' '.join(full)}` did not answer within {timeout:g} s; look at what it waits for"
            ) from e
        if seen is None:
            held = LocalHeld(p)
            self._held.append(held)
            return held
        code = p.wait()
        err = p.stderr.read().decode(errors="replace")
        p.stdin.close()
        p.stdout.close()
        p.stderr.close()
        return Result(tuple(argv), code, seen, err)

    def reconnect(self) -> LocalConnection:
        return self

    def close(self) -> None:
        """End every command still held."""
        for held in self._held:
            held.close()
        self._held = []

    def __enter__(self) -> LocalConnection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalHeld:
    """A child left running (see ``LocalConnection.hold``); ``close()`` ends its stdin and waits."""

    def __init__(self, proc: subprocess.Popen):
        self._proc = proc

    def close(self) -> None:
        p = self._proc
        if p.returncode is not None:
            return
        with contextlib.suppress(OSError):
            p.stdin.close()  # a `cat` holding a lock exits
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()


def _read_until(p: subprocess.Popen, until: str, deadline: float, on_line) -> str | None:
    """Read stdout lines until ``until`` (None: seen) or the command exits (its stdout so far)."""
    seen: list[str] = []
    fd = p.stdout.fileno()
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                p.kill()
                p.wait()
                raise TimeoutError(until)
            if not sel.select(min(left, 0.2)):
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:  # it exited (or closed its stdout) before saying ``until``
                return "\n".join([*seen, buf.decode(errors="replace")] if buf else seen)
            *lines, buf = (buf + chunk).split(b"\n")
            for line in lines:
                text = line.decode(errors="replace")
                if text == until:
                    return None
                seen.append(text)
                if on_line is not None:
                    on_line(text)
